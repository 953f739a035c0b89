//! Limits on reading a request, answered as problem+json, and problem+json for every error
//! answer the router's own parts (axum's extractors and fallbacks) write as text.
//!
//! [`enforce`] refuses a request target longer than `http.maxUriBytes` (414) and a head larger
//! than `http.maxHeaderBytes` (431) before any handler runs, and gives the request's body a
//! deadline of `http.bodyReadTimeoutMs` from its head on: a body that has not arrived by then
//! fails the handler's read, and the answer is 408 (the connection is then closed, since the
//! rest of the body is unread). [`problem_bodies`] turns any 4xx/5xx answer that is not
//! problem+json yet (an axum rejection such as a path that is not UTF-8) into one, keeping its
//! status, its headers and its text as the `detail`.
//!
//! This module does not limit body sizes (`DefaultBodyLimit` and the extractors do) and does
//! not see what hyper refuses before the router runs (a head beyond the head buffer of
//! [`connections`](super::connections), a malformed request line): hyper answers those itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use hyper::body::{Body as _, Frame, SizeHint};
use tokio::time::Sleep;

use super::problem::{ApiError, PROBLEM_JSON};
use crate::config::HttpSettings;

/// Longest text of a rejection kept as a problem's `detail`.
const MAX_REJECTION_TEXT: usize = 4096;
/// Bytes of a request line around its target: `GET ` … ` HTTP/1.1\r\n` (the longest method
/// we route, DELETE, plus the version and separators).
const REQUEST_LINE_OVERHEAD: usize = 7 + 11;

/// The limits [`enforce`] applies, from `[http]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestLimits {
    /// Longest request target, in bytes.
    pub max_uri_bytes: usize,
    /// Largest request head (request line and header fields), in bytes.
    pub max_header_bytes: usize,
    /// How long the body may take to arrive.
    pub body_read_timeout: Duration,
}

impl From<&HttpSettings> for RequestLimits {
    fn from(http: &HttpSettings) -> Self {
        RequestLimits {
            max_uri_bytes: http.max_uri_bytes,
            max_header_bytes: http.max_header_bytes,
            body_read_timeout: http.body_read_timeout,
        }
    }
}

/// Edge stage: refuses oversized targets and heads, and answers 408 when the body did not arrive in time.
pub(crate) async fn enforce<Fut: Future<Output = Response>>(
    limits: &RequestLimits,
    request: Request,
    inner: impl FnOnce(Request) -> Fut,
) -> Response {
    if let Err(refusal) = check_head(&request, limits) {
        return refusal.into_response();
    }
    if request.body().is_end_stream() {
        return inner(request).await;
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(limits.body_read_timeout)),
            timed_out: timed_out.clone(),
        })
    });
    let response = inner(request).await;
    if timed_out.load(Ordering::SeqCst) {
        return body_timeout(limits.body_read_timeout);
    }
    response
}

fn check_head(request: &Request, limits: &RequestLimits) -> Result<(), ApiError> {
    let target = target_len(request.uri());
    if target > limits.max_uri_bytes {
        return Err(ApiError::UriTooLong(format!(
            "the request target is {target} bytes; at most {} are accepted",
            limits.max_uri_bytes
        )));
    }
    let head = head_len(target, request.headers());
    if head > limits.max_header_bytes {
        return Err(ApiError::HeaderTooLarge(format!(
            "the request head is about {head} bytes; at most {} are accepted",
            limits.max_header_bytes
        )));
    }
    Ok(())
}

/// The request target's length as sent (origin form; absolute form with its scheme and host).
fn target_len(uri: &Uri) -> usize {
    let path = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + "://".len());
    scheme + authority + path
}

/// The head's length on the wire: request line, `name: value\r\n` per field, final CRLF.
fn head_len(target: usize, headers: &HeaderMap) -> usize {
    let fields: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    REQUEST_LINE_OVERHEAD + target + fields + 2
}

fn body_timeout(limit: Duration) -> Response {
    let mut response = ApiError::RequestTimeout(format!(
        "the request body did not arrive within {} ms",
        limit.as_millis()
    ))
    .into_response();
    // The rest of the body is unread: this connection cannot carry another request.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Why a body read failed: its deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub(crate) struct BodyReadTimeout;

/// A request body that fails with [`BodyReadTimeout`] once its deadline passed.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.timed_out.store(true, Ordering::SeqCst);
            return Poll::Ready(Some(Err(axum::Error::new(BodyReadTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Edge stage: rewrites an error answer that is not problem+json (see the module doc).
pub(crate) async fn problem_bodies<Fut: Future<Output = Response>>(
    request: Request,
    inner: impl FnOnce(Request) -> Fut,
) -> Response {
    let response = inner(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_problem(&response) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REJECTION_TEXT)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut problem = ApiError::Rejected { status, detail }.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem
                .headers_mut()
                .entry(name)
                .or_insert_with(|| value.clone());
        }
    }
    problem
}

fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == PROBLEM_JSON.as_bytes())
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::middleware::Next;
    use axum::routing::{get, post};
    use axum::Router;
    use tower::ServiceExt;

    use super::*;
    use crate::api::problem::Problem;

    fn limits() -> RequestLimits {
        RequestLimits {
            max_uri_bytes: 64,
            max_header_bytes: 1024,
            body_read_timeout: Duration::from_millis(200),
        }
    }

    fn router() -> Router {
        Router::new()
            .route(
                "/text",
                get(|| async { (StatusCode::BAD_REQUEST, "plain words") }),
            )
            .route(
                "/echo",
                post(|body: Bytes| async move { format!("{} bytes", body.len()) }),
            )
            .route(
                "/path/{id}",
                get(|axum::extract::Path(id): axum::extract::Path<String>| async move { id }),
            )
            .layer(axum::middleware::from_fn(
                |request, next: Next| async move {
                    let limits = limits();
                    problem_bodies(request, |request| {
                        enforce(&limits, request, |request| next.run(request))
                    })
                    .await
                },
            ))
    }

    async fn problem(response: Response) -> Problem {
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    async fn call(request: Request) -> Response {
        router().oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn a_long_target_is_a_414_problem_and_a_large_head_a_431_problem() {
        let long = format!("/text?{}", "a".repeat(100));
        let response = call(Request::get(long).body(Body::empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::URI_TOO_LONG);
        assert_eq!(
            problem(response).await.kind,
            "urn:tidings:problem:uri-too-long"
        );
        let response = call(
            Request::get("/text")
                .header("x-big", "b".repeat(2000))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let large = problem(response).await;
        assert_eq!(large.kind, "urn:tidings:problem:request-header-too-large");
        assert!(large.detail.contains("1024"), "{}", large.detail);
    }

    #[tokio::test]
    async fn text_rejections_become_problems_with_their_status_and_text() {
        let response = call(Request::get("/text").body(Body::empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let plain = problem(response).await;
        assert_eq!(plain.kind, "urn:tidings:problem:bad-request");
        assert_eq!(plain.detail, "plain words");
        let response = call(Request::get("/path/%FF").body(Body::empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(problem(response).await.detail.contains("UTF-8"));
    }

    /// A body that stops arriving is cut off with 408 once `body_read_timeout` passed, not
    /// sooner. The clock is paused: it jumps to the deadline as soon as everything waits.
    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_is_a_408_problem() {
        let (mut sender, body) = futures_channel_body();
        sender.send_data(Bytes::from_static(b"half")).await.unwrap();
        let request = Request::post("/echo").body(body).unwrap();
        let started = tokio::time::Instant::now();
        let response = call(request).await;
        assert_eq!(started.elapsed(), limits().body_read_timeout);
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        assert_eq!(
            problem(response).await.kind,
            "urn:tidings:problem:request-timeout"
        );
        drop(sender);
    }

    #[tokio::test]
    async fn a_body_that_arrives_in_time_is_served() {
        let request = Request::post("/echo").body(Body::from("12345")).unwrap();
        let response = call(request).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// A body fed by the test, which never ends while the sender lives.
    fn futures_channel_body() -> (BodySender, Body) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|bytes| (Ok::<_, std::io::Error>(bytes), rx))
        });
        (BodySender(tx), Body::from_stream(stream))
    }

    struct BodySender(tokio::sync::mpsc::Sender<Bytes>);

    impl BodySender {
        async fn send_data(&mut self, bytes: Bytes) -> Result<(), String> {
            self.0.send(bytes).await.map_err(|e| e.to_string())
        }
    }
}
