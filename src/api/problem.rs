//! Every HTTP error answer, as RFC 9457 `application/problem+json`.
//!
//! Handlers return [`ApiError`]; its one [`IntoResponse`] maps each variant (and each
//! [`LogError`] variant, with no catch-all) to a status, a stable problem `type` and a
//! `{"type","title","status","detail"}` body. Storage failures answer 503 with `Retry-After`,
//! never a success for data that is not durable. Internal details (paths, engine messages) go to
//! the server's log, not to the client. Every body also names the request it answers
//! (`requestId`, the id [`access`](super::access) gave the request), when there is one.
//!
//! Also here: the 404 and 405 fallbacks, and [`Json`], the JSON extractor whose rejections keep
//! this shape (400 malformed or invalid, 413 too large, 415 wrong content type). Any other
//! error answer written as text reaches the client as [`ApiError::Rejected`]
//! ([`http_limits::problem_bodies`](super::http_limits::problem_bodies)).
//!
//! This module does not decide *when* a request is wrong; handlers and extractors do.
//!
//! Problem types are URNs, `urn:tidings:problem:<slug>`:
//! `bad-request`, `unsupported-media-type`, `payload-too-large`, `unauthorized`, `forbidden`,
//! `not-found`, `unknown-route`, `method-not-allowed`, `conflict`, `offset-out-of-range`,
//! `rate-limited`, `overloaded`, `not-ready`, `storage-unavailable`, `storage-full`, `internal`,
//! `request-timeout`, `uri-too-long`, `request-header-too-large`, and `http-error` (a status
//! the router's parts answered with that has no type of its own).

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, MissingJsonContentType, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::access::current_request_id;
use crate::auth::AuthError;
use crate::bus::BusError;
use crate::hub::HubError;
use crate::log::LogError;
use crate::pipeline::PipelineError;
use crate::store::StoreError;

/// The media type of every error body.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// Seconds a client should wait after a 503 caused by a full queue.
const RETRY_OVERLOADED_SECS: u64 = 1;
/// Seconds a client should wait after other 503s (storage failure, starting, stopping).
const RETRY_UNAVAILABLE_SECS: u64 = 5;

/// Everything an HTTP handler can answer with instead of success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ApiError {
    /// No route matches the request's path.
    #[error("there is no resource at {path}")]
    UnknownRoute {
        /// The requested path.
        path: String,
    },
    /// The path exists but does not accept this method.
    #[error("{path} does not accept {method}")]
    MethodNotAllowed {
        /// The requested method.
        method: Method,
        /// The requested path.
        path: String,
    },
    /// The body is malformed or a field is invalid; the text names the field.
    #[error("{0}")]
    BadRequest(String),
    /// The body declares a content type the endpoint does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body, or a part of it, exceeds a configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request carries no valid token (missing, expired, unsigned or wrongly signed).
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    /// The token is valid but lacks a scope the route needs.
    #[error("this needs the {0:?} scope")]
    MissingScope(&'static str),
    /// The server is recovering or shutting down and does not take this request now.
    #[error("the server is not ready: it is starting up or shutting down")]
    NotReady,
    /// The log refused or failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The resource does not exist, or the caller may not know it exists (a conversation it
    /// is not a participant of answers exactly like one that does not exist).
    #[error("{0} not found")]
    NotFound(String),
    /// The caller may see the resource but not change it this way (another user's message).
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with what exists (a taken id).
    #[error("{0}")]
    Conflict(String),
    /// The caller writes faster than its budget; it may retry after `retry_after` seconds.
    #[error("too many writes: the limit is {limit} per second; retry after {retry_after} s")]
    TooManyRequests {
        /// Writes (or frames) per second allowed.
        limit: u32,
        /// Whole seconds until a send is allowed again.
        retry_after: u64,
    },
    /// Writes are refused for a while: the store lags too far behind or a store writer failed.
    #[error("{0}")]
    Overloaded(String),
    /// A server-side task failed (panicked); the details go to the server's log.
    #[error("{0}")]
    Internal(String),
    /// The chat store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The write-behind pipeline refused or failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The consumer-group coordinator refused.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The hub refused a WebSocket session (session limits, shutting down).
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The request's body did not arrive within `http.bodyReadTimeoutMs`.
    #[error("{0}")]
    RequestTimeout(String),
    /// The request target is longer than `http.maxUriBytes`.
    #[error("{0}")]
    UriTooLong(String),
    /// The request head is larger than `http.maxHeaderBytes`.
    #[error("{0}")]
    HeaderTooLarge(String),
    /// An error answer that a part of the router (an axum extractor or fallback) wrote as text;
    /// its status is kept and its text becomes the detail.
    #[error("{detail}")]
    Rejected {
        /// The status it was answered with.
        status: StatusCode,
        /// Its text.
        detail: String,
    },
}

/// An RFC 9457 problem, as serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct Problem {
    /// A URI identifying the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, human-readable summary of the kind.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What happened in this occurrence, for a human.
    pub detail: String,
    /// The id of the request answered (also in the `x-request-id` header and the access log).
    #[serde(rename = "requestId", default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// A problem plus the headers that go with it.
struct Answer {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    retry_after: Option<u64>,
    /// Adds `WWW-Authenticate: Bearer` (RFC 6750) to a 401.
    bearer_challenge: bool,
}

impl Answer {
    fn new(status: StatusCode, slug: &'static str, title: &'static str, detail: String) -> Self {
        Answer {
            status,
            slug,
            title,
            detail,
            retry_after: None,
            bearer_challenge: false,
        }
    }

    fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub(crate) fn status(&self) -> StatusCode {
        self.answer().status
    }

    /// The problem's `detail`: what the client is told (internal details stay in the log).
    /// WebSocket `error` frames carry it too.
    pub(crate) fn detail(&self) -> String {
        self.answer().detail
    }

    fn answer(&self) -> Answer {
        let detail = self.to_string();
        match self {
            ApiError::UnknownRoute { .. } => Answer::new(
                StatusCode::NOT_FOUND,
                "unknown-route",
                "No such resource",
                detail,
            ),
            ApiError::MethodNotAllowed { .. } => Answer::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                detail,
            ),
            ApiError::BadRequest(_) => Answer::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "Bad request",
                detail,
            ),
            ApiError::UnsupportedMediaType(_) => Answer::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                detail,
            ),
            ApiError::PayloadTooLarge(_) => Answer::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
                detail,
            ),
            ApiError::NotReady => Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "Not ready",
                detail,
            )
            .retry_after(RETRY_UNAVAILABLE_SECS),
            ApiError::Unauthorized(error) => auth_answer(error),
            ApiError::MissingScope(_) => {
                Answer::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
            }
            ApiError::Log(error) => log_answer(error),
            ApiError::NotFound(_) => {
                Answer::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
            }
            ApiError::Forbidden(_) => {
                Answer::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
            }
            ApiError::Conflict(_) => {
                Answer::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
            }
            ApiError::TooManyRequests { retry_after, .. } => Answer::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                detail,
            )
            .retry_after(*retry_after),
            ApiError::Overloaded(_) => Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Overloaded",
                detail,
            )
            .retry_after(RETRY_OVERLOADED_SECS),
            ApiError::Internal(_) => internal_answer(),
            ApiError::Store(error) => store_answer(error),
            ApiError::Pipeline(error) => pipeline_answer(error),
            ApiError::Bus(error) => bus_answer(error),
            ApiError::Hub(error) => hub_answer(error),
            ApiError::RequestTimeout(_) => Answer::new(
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Request timeout",
                detail,
            ),
            ApiError::UriTooLong(_) => Answer::new(
                StatusCode::URI_TOO_LONG,
                "uri-too-long",
                "URI too long",
                detail,
            ),
            ApiError::HeaderTooLarge(_) => Answer::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request-header-too-large",
                "Request header fields too large",
                detail,
            ),
            ApiError::Rejected { status, .. } => rejected_answer(*status, detail),
        }
    }
}

/// The problem type of a status some part of the router answered with as text: the type of
/// that status where the API has one, else `http-error` with the status kept.
fn rejected_answer(status: StatusCode, detail: String) -> Answer {
    let (slug, title) = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            ("bad-request", "Bad request")
        }
        StatusCode::NOT_FOUND => ("not-found", "Not found"),
        StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "Method not allowed"),
        StatusCode::REQUEST_TIMEOUT => ("request-timeout", "Request timeout"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload-too-large", "Payload too large"),
        StatusCode::URI_TOO_LONG => ("uri-too-long", "URI too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported-media-type", "Unsupported media type"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "request-header-too-large",
            "Request header fields too large",
        ),
        other => (
            "http-error",
            other.canonical_reason().unwrap_or("HTTP error"),
        ),
    };
    if status.is_server_error() {
        // Never pass a server-side text to the client (the module's rule); `into_response`
        // logs it.
        return Answer::new(
            status,
            slug,
            title,
            "the server failed; its log has the details".into(),
        );
    }
    Answer::new(status, slug, title, detail)
}

/// The answer for each coordinator error. No wildcard: a new variant must be placed on purpose.
/// A group call refused by its coordinator answers as on one node; a coordinator that cannot be
/// reached (another node's, on a cluster) is 503.
impl From<crate::cluster::groups::GroupsError> for ApiError {
    fn from(error: crate::cluster::groups::GroupsError) -> Self {
        match error {
            crate::cluster::groups::GroupsError::Bus(error) => ApiError::Bus(error),
            unavailable => ApiError::Log(LogError::Unavailable(unavailable.to_string())),
        }
    }
}

fn bus_answer(error: &BusError) -> Answer {
    let detail = error.to_string();
    match error {
        BusError::UnknownMember { .. } => {
            Answer::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
        }
        BusError::NotOwner { .. } | BusError::ActiveGroup { .. } => {
            Answer::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
        }
        BusError::SessionTimeout { .. } => Answer::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        ),
    }
}

/// The answer for each hub refusal. No wildcard.
fn hub_answer(error: &HubError) -> Answer {
    let detail = error.to_string();
    match error {
        HubError::Full { .. } => Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Overloaded",
            detail,
        )
        .retry_after(RETRY_OVERLOADED_SECS),
        HubError::UserFull { .. } => Answer::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            detail,
        )
        .retry_after(RETRY_OVERLOADED_SECS),
        HubError::ShuttingDown => Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            detail,
        )
        .retry_after(RETRY_UNAVAILABLE_SECS),
    }
}

/// The answer for each store error. No wildcard: a new variant must be placed here on purpose.
fn store_answer(error: &StoreError) -> Answer {
    let detail = error.to_string();
    match error {
        StoreError::NotFound(_) => {
            Answer::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
        }
        StoreError::Conflict(_) | StoreError::LimitReached(_) => {
            Answer::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
        }
        StoreError::Forbidden(_) => {
            Answer::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
        }
        StoreError::InvalidField { .. } => Answer::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        ),
        StoreError::Storage(_) => Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage-unavailable",
            "Storage unavailable",
            "the server cannot read or write its store right now; try again later".into(),
        )
        .retry_after(RETRY_UNAVAILABLE_SECS),
        StoreError::Corrupt { .. } => internal_answer(),
        StoreError::Log(error) => log_answer(error),
    }
}

/// The answer for each pipeline error. No wildcard.
fn pipeline_answer(error: &PipelineError) -> Answer {
    match error {
        PipelineError::Log(error) => log_answer(error),
        PipelineError::Store(error) => store_answer(error),
        PipelineError::Worker(_) => Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage-unavailable",
            "Storage unavailable",
            "the message store is not running; try again later".into(),
        )
        .retry_after(RETRY_UNAVAILABLE_SECS),
        PipelineError::PartitionMismatch { .. } => internal_answer(),
        PipelineError::NotApplied => Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-applied",
            "Accepted, not applied yet",
            error.to_string(),
        )
        .retry_after(RETRY_UNAVAILABLE_SECS),
    }
}

fn internal_answer() -> Answer {
    Answer::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal error",
        "the server failed; its log has the details".into(),
    )
}

/// 401 for every token problem; the secret's own failures are the server's.
fn auth_answer(error: &AuthError) -> Answer {
    match error {
        AuthError::Missing | AuthError::Expired | AuthError::Invalid(_) => Answer {
            bearer_challenge: true,
            ..Answer::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                error.to_string(),
            )
        },
        AuthError::Secret { .. }
        | AuthError::WeakSecret(_)
        | AuthError::NoSecret { .. }
        | AuthError::Keys(_) => internal_answer(),
    }
}

/// The answer for each log error. No wildcard: a new variant must be placed here on purpose.
fn log_answer(error: &LogError) -> Answer {
    let detail = error.to_string();
    let unavailable = |detail: String| {
        Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage-unavailable",
            "Storage unavailable",
            detail,
        )
        .retry_after(RETRY_UNAVAILABLE_SECS)
    };
    match error {
        LogError::InvalidTopicName { .. }
        | LogError::InvalidGroupName { .. }
        | LogError::InvalidConfig(_)
        | LogError::EmptyAppend => Answer::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        ),
        LogError::UnknownTopic(_) | LogError::UnknownPartition { .. } => {
            Answer::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
        }
        LogError::TopicExists(_)
        | LogError::CommitRegression { .. }
        | LogError::LimitReached(_) => {
            Answer::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
        }
        LogError::OffsetOutOfRange { .. } => Answer::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "offset-out-of-range",
            "Offset out of range",
            detail,
        ),
        LogError::RecordTooLarge { .. } => Answer::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            detail,
        ),
        LogError::StorageFull { .. } | LogError::NoSpace { .. } => Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage-full",
            "Storage full",
            "the server's disk is almost full; writes resume once space is freed".into(),
        )
        .retry_after(RETRY_UNAVAILABLE_SECS),
        LogError::Overloaded => unavailable(detail).retry_after(RETRY_OVERLOADED_SECS),
        LogError::Closed | LogError::Unavailable(_) => unavailable(detail),
        LogError::Poisoned(_) | LogError::Io { .. } | LogError::Storage(_) => {
            unavailable("the server cannot make writes durable right now; try again later".into())
        }
        LogError::Locked { .. } | LogError::ForeignDirectory { .. } | LogError::Corrupt { .. } => {
            internal_answer()
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let answer = self.answer();
        // A 500 is a fault of ours; a 503 is a state (starting, stopping, a full disk, a failed
        // worker) logged once where it begins, not on every request and probe it refuses.
        let request_id = current_request_id();
        if answer.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, request_id, "request failed");
        } else if answer.status.is_server_error() {
            tracing::debug!(error = %self, status = answer.status.as_u16(), request_id, "request refused");
        }
        let problem = Problem {
            kind: format!("urn:tidings:problem:{}", answer.slug),
            title: answer.title.into(),
            status: answer.status.as_u16(),
            detail: answer.detail,
            request_id,
        };
        let mut response = (answer.status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = answer.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if answer.bearer_challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    /// Classified by the rejection's status, since axum may add rejection kinds.
    fn from(rejection: JsonRejection) -> Self {
        let detail = rejection.body_text();
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(detail),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(detail),
            _ => ApiError::BadRequest(detail),
        }
    }
}

/// A JSON body extractor and response whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    /// axum's `Json` checks, with the same rejections; but the body is first parsed plainly,
    /// and only a body that fails is parsed again through axum's own parser, which tracks the
    /// path to the failing field for the problem's detail (that tracking was a tenth of a
    /// one-record publish's instructions).
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers()) {
            return Err(JsonRejection::from(MissingJsonContentType::default()).into());
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(JsonRejection::from)?;
        if let Ok(value) = serde_json::from_slice(&body) {
            return Ok(Json(value));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&body)?;
        Ok(Json(value))
    }
}

/// `application/json` or any `application/*+json`, as axum's `Json` decides it.
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(mime) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<mime::Mime>().ok())
    else {
        return false;
    };
    mime.type_() == "application"
        && (mime.subtype() == "json" || mime.suffix().is_some_and(|suffix| suffix == "json"))
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query-string extractor whose rejections are 400 problems naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    axum::extract::Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
        Ok(Query(value))
    }
}

/// Router fallback: no route matched the path.
pub(crate) async fn unknown_route(uri: Uri) -> ApiError {
    ApiError::UnknownRoute {
        path: uri.path().to_owned(),
    }
}

/// Router fallback: the path matched but the method did not.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method,
        path: uri.path().to_owned(),
    }
}

#[cfg(test)]
mod tests;
