//! Who did what, as the operator reads it: request ids, the access log and the session log.
//!
//! [`log_requests`] is the outermost stage of the router's [`edge`](super::edge). It gives every request an id (a sane
//! incoming `x-request-id`, else a new UUIDv7), echoes it in the response's `x-request-id`, makes
//! it [`current_request_id`] while the request is handled (so that every problem body carries it,
//! see [`problem`](super::problem)), and writes one line per request at the tracing target
//! [`TARGET`] (INFO): method, route template (axum's `MatchedPath`, never the raw path, which
//! holds ids, nor the query, which may hold tokens), status, user, latency, response bytes and
//! request id. The user is what the [`Caller`](super::auth::Caller) extractor verified, handed
//! over through [`note_caller`]; it also logs each refused token there ([`auth_failed`]).
//! [`SessionLog`] writes one line when a WebSocket, SignalR or Socket.IO session opens and one
//! when it closes (protocol, user, session id, close code, duration).
//!
//! This module decides nothing about a request: it does not authenticate, refuse or limit.
//! Where the lines go (text or JSON on stderr, which targets are on) is the tracing
//! subscriber's business (`logging.format`, `logging.level`: `tidings::access=off` silences it).

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use hyper::body::Body as _;

use super::metrics::UNMATCHED_ROUTE;
use super::problem::ApiError;
use super::ws::dialect::Dialect;
use crate::auth::{AuthError, Identity};
use crate::hub::{CloseReason, SessionHandle};

/// The tracing target of every line this module writes.
pub(crate) const TARGET: &str = "tidings::access";

/// The header a request id comes in and goes out with.
pub(crate) static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming request id kept; a longer one is replaced, not cut (a cut id would join
/// nothing in the caller's logs).
const MAX_REQUEST_ID_BYTES: usize = 128;

tokio::task_local! {
    /// The id of the request being handled on this task.
    static REQUEST_ID: Arc<str>;
}

/// The id of the request this task is handling, if it handles one (a WebSocket session's
/// tasks outlive their upgrade request and have none).
pub(crate) fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.to_string()).ok()
}

/// The caller a request authenticated as, filled in by the `Caller` extractor and read by the
/// access-log line once the response is ready.
#[derive(Debug, Clone, Default)]
struct CallerSlot(Arc<OnceLock<Arc<str>>>);

/// Edge stage: the request id, and one access-log line per request (see the module doc).
pub(crate) async fn log_requests<Fut: Future<Output = Response>>(
    mut request: Request,
    inner: impl FnOnce(Request) -> Fut,
) -> Response {
    let started = Instant::now();
    let (id, header) = request_id(request.headers());
    let method = request.method().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let caller = CallerSlot::default();
    request.extensions_mut().insert(caller.clone());
    let mut response = REQUEST_ID.scope(id.clone(), inner(request)).await;
    response
        .headers_mut()
        .insert(REQUEST_ID_HEADER.clone(), header);
    tracing::info!(
        target: TARGET,
        method = %method,
        route = route_of(matched.as_ref()),
        status = response.status().as_u16(),
        user = caller.0.get().map(|user| &**user),
        latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        bytes = response.body().size_hint().exact(),
        request_id = %id,
        "request"
    );
    response
}

/// The request's id and its header value: the caller's, when it is a sane one, else a new one.
fn request_id(headers: &HeaderMap) -> (Arc<str>, HeaderValue) {
    if let Some(value) = headers.get(&REQUEST_ID_HEADER) {
        if let Some(id) = value.to_str().ok().filter(|id| is_sane_request_id(id)) {
            return (id.into(), value.clone());
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    let header = HeaderValue::from_str(&id).expect("a UUID is a valid header value");
    (id.into(), header)
}

/// 1 to 128 characters of letters, digits and `-_.:/+=@`: enough for UUIDs, trace ids and
/// proxies' ids, and nothing that could forge a log line or a header.
fn is_sane_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_BYTES).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
}

/// The route template a request matched, or `unmatched` (the same label as the metrics').
fn route_of(matched: Option<&MatchedPath>) -> &str {
    matched.map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
}

/// Called by the `Caller` extractor with what it verified: the user goes to the request's
/// access-log line; a refused token gets its own line ([`auth_failed`]).
pub(crate) fn note_caller(parts: &Parts, verified: Result<&Identity, &ApiError>) {
    match verified {
        Ok(identity) => {
            if let Some(slot) = parts.extensions.get::<CallerSlot>() {
                let _ = slot.0.set(identity.user_id.as_str().into());
            }
        }
        Err(ApiError::Unauthorized(error)) => {
            auth_failed(route_of(parts.extensions.get::<MatchedPath>()), error);
        }
        // Not a verdict on the token (the server is starting, say): nothing to log here.
        Err(_) => {}
    }
}

/// One line for a refused token: where it was presented and why it was refused (the reason
/// never holds the token).
pub(crate) fn auth_failed(route: &str, error: &AuthError) {
    tracing::info!(
        target: TARGET,
        route,
        reason = %error,
        request_id = current_request_id(),
        "auth failure"
    );
}

/// The protocol a session speaks, as the session lines name it.
fn protocol(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Tidings => "ws",
        Dialect::Signalr => "signalr",
        Dialect::SocketIo => "socket.io",
    }
}

/// A session between its "session opened" line and its "session closed" line, written when
/// this is dropped (after the session's reader ended).
#[derive(Debug)]
pub(crate) struct SessionLog {
    protocol: &'static str,
    handle: SessionHandle,
    opened: Instant,
}

impl SessionLog {
    /// Writes the "session opened" line of the session behind `handle`.
    pub(crate) fn opened(dialect: Dialect, handle: &SessionHandle) -> SessionLog {
        let protocol = protocol(dialect);
        tracing::info!(
            target: TARGET,
            protocol,
            user = handle.user_id(),
            session = handle.id(),
            "session opened"
        );
        SessionLog {
            protocol,
            handle: handle.clone(),
            opened: Instant::now(),
        }
    }
}

/// Writes the "session closed" line. On drop, so that a session whose task ends with the
/// server's runtime (its reader still waiting for the client's close handshake) is logged too;
/// by then the hub has set the close reason (the server closes every session before it stops).
impl Drop for SessionLog {
    fn drop(&mut self) {
        let reason = self
            .handle
            .close_reason()
            .unwrap_or(CloseReason::ClientGone);
        let text = match reason.text() {
            "" => "the client left",
            text => text,
        };
        tracing::info!(
            target: TARGET,
            protocol = self.protocol,
            user = self.handle.user_id(),
            session = self.handle.id(),
            code = reason.code(),
            reason = text,
            duration_ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX),
            "session closed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_request_ids_are_kept_and_others_replaced() {
        for kept in [
            "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
            "Root=1-67891233-abcdef012345678912345678",
            "req:42",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(&REQUEST_ID_HEADER, HeaderValue::from_static(kept));
            assert_eq!(&*request_id(&headers).0, kept);
        }
        let long = "a".repeat(MAX_REQUEST_ID_BYTES + 1);
        for replaced in ["", "two words", "quote\"d", "new\tline", long.as_str()] {
            let mut headers = HeaderMap::new();
            headers.insert(&REQUEST_ID_HEADER, HeaderValue::from_str(replaced).unwrap());
            let (id, header) = request_id(&headers);
            assert_ne!(&*id, replaced);
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
            assert_eq!(header.to_str().unwrap(), &*id);
        }
    }

    #[tokio::test]
    async fn the_request_id_is_current_only_while_its_request_is_handled() {
        assert_eq!(current_request_id(), None);
        let seen = REQUEST_ID
            .scope("abc".into(), async { current_request_id() })
            .await;
        assert_eq!(seen.as_deref(), Some("abc"));
    }
}
