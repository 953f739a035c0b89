//! `/socket.io/`: the chat for Socket.IO clients (`socket.io-client` 4, protocol 5 over
//! Engine.IO 4), on both of its transports, long-polling and WebSocket.
//!
//! One route, as the clients expect it: `GET /socket.io/?EIO=4&transport=polling` opens a
//! connection (the Engine.IO handshake) and later `GET`s long-poll for its packets, `POST`s carry
//! the client's; `GET …&transport=websocket` opens one on a WebSocket from the start, or, with
//! the `sid` of a polling connection, upgrades that one (probe, then switch). The connections
//! and their transports are `connection.rs`.
//!
//! A connection becomes a chat session with the Socket.IO CONNECT to the namespace `/`: its
//! `auth: {token}` (or the handshake's `?token=` / `Authorization: Bearer`) is verified, the
//! session opened in the hub under the same limits as `/ws` (a refusal is a CONNECT_ERROR whose
//! `message` says why and whose `data` holds the HTTP status and detail), and from then on it is
//! an ordinary hub session run by `api::ws` in the Socket.IO [`Dialect`]: the same queue, seq
//! rule, resume, participant checks and flow control as a `/ws` session; only its wire format
//! ([`codec`]) and client packets ([`protocol`]) differ. A connection that does not CONNECT
//! within [`CONNECT_TIMEOUT`] is closed.

pub(crate) mod codec;
mod connection;
pub(crate) mod protocol;
mod websocket;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::problem::{ApiError, Query};
use super::ws::{self, dialect::Dialect};
use super::AppState;
use crate::auth::{AuthError, Identity};
use crate::hub::Session;
use connection::Connection;
pub(crate) use connection::Connections;

/// Where Socket.IO clients connect (their default `path`).
pub(crate) const PATH: &str = "/socket.io/";
/// How long a new connection may take to CONNECT before it is closed.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The query of every Engine.IO request (others, such as the cache buster `t`, are ignored).
#[derive(Debug, Deserialize)]
pub(crate) struct EngineQuery {
    #[serde(rename = "EIO")]
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
    token: Option<String>,
}

/// The transports of Engine.IO 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Polling,
    WebSocket,
}

impl EngineQuery {
    /// The transport asked for; 400 for another protocol version or an unknown transport.
    fn transport(&self) -> Result<Transport, ApiError> {
        if self.eio.as_deref() != Some("4") {
            return Err(ApiError::BadRequest(format!(
                "Engine.IO protocol version {:?} is not supported: Socket.IO v4 clients use EIO=4",
                self.eio.as_deref().unwrap_or("")
            )));
        }
        match self.transport.as_deref() {
            Some("polling") => Ok(Transport::Polling),
            Some("websocket") => Ok(Transport::WebSocket),
            other => Err(ApiError::BadRequest(format!(
                "transport {:?} is unknown: use polling or websocket",
                other.unwrap_or("")
            ))),
        }
    }
}

/// `GET /socket.io/`: a new connection (polling handshake or WebSocket), a long-poll, or an
/// upgrade.
pub(crate) async fn get(
    State(state): State<AppState>,
    Query(query): Query<EngineQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let transport = query.transport()?;
    if state.shutdown().is_cancelled() {
        return Err(ApiError::NotReady);
    }
    state.chat()?;
    let existing = match &query.sid {
        Some(sid) => Some(state.socketio().get(sid)?),
        None => None,
    };
    match (transport, existing) {
        (Transport::Polling, None) => {
            let connection = open(&state, &query, &headers)?;
            let handshake =
                connection.handshake(&["websocket"], state.config().limits.max_body_bytes);
            Ok(packets_response(handshake))
        }
        (Transport::Polling, Some(connection)) => {
            let body = connection.poll(&state).await?;
            Ok(packets_response(body))
        }
        (Transport::WebSocket, existing) => {
            let upgrade =
                upgrade.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
            Ok(match existing {
                Some(connection) => connection::take_over(state, connection, upgrade),
                None => {
                    let token = query.token.clone().or_else(|| bearer(&headers));
                    websocket::accept(state, token, upgrade)?
                }
            })
        }
    }
}

/// `POST /socket.io/?…&sid=`: the client's packets on a polling connection → `ok`.
pub(crate) async fn post(
    State(state): State<AppState>,
    Query(query): Query<EngineQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if query.transport()? != Transport::Polling {
        return Err(ApiError::BadRequest(
            "packets are posted on the polling transport".into(),
        ));
    }
    let sid = query
        .sid
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("a post names its connection: sid".into()))?;
    let connection = state.socketio().get(sid)?;
    let body = std::str::from_utf8(&body).map_err(|_| {
        ApiError::BadRequest("packets are UTF-8 text; binary is not supported".into())
    })?;
    connection.posted(&state, body).await?;
    Ok(([(CONTENT_TYPE, "text/html")], "ok").into_response())
}

/// A new connection, its CONNECT awaited for [`CONNECT_TIMEOUT`].
fn open(
    state: &AppState,
    query: &EngineQuery,
    headers: &HeaderMap,
) -> Result<Arc<Connection>, ApiError> {
    let token = query.token.clone().or_else(|| bearer(headers));
    let max = state.hub().config().max_sessions + connection::MAX_CONNECTING;
    let connection = state.socketio().open(token, max)?;
    connection.close_unless_connected_within(state, CONNECT_TIMEOUT);
    Ok(connection)
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// Packets as a polling response body.
fn packets_response(body: String) -> Response {
    ([(CONTENT_TYPE, "text/plain; charset=UTF-8")], body).into_response()
}

/// The CONNECT of `connection` to `namespace` with `auth`: verifies the token and opens the
/// session, which then runs until it ends; a refusal goes back as CONNECT_ERROR and the
/// connection stays (the client may CONNECT again) until its timeout.
async fn connect(
    state: &AppState,
    connection: &Arc<Connection>,
    namespace: &str,
    auth: Option<Value>,
) {
    if connection.is_connected() {
        return;
    }
    if let Err(refused) = start_session(state, connection, namespace, auth).await {
        let status = refused.status().as_u16();
        tracing::debug!(status, detail = %refused.detail(), "Socket.IO connect refused");
        connection.queue(codec::connect_refused(namespace, status, &refused.detail()));
    }
}

async fn start_session(
    state: &AppState,
    connection: &Arc<Connection>,
    namespace: &str,
    auth: Option<Value>,
) -> Result<(), ApiError> {
    let (caller, session) = authorize(state, namespace, auth, connection.handshake_token()).await?;
    let (sink, stream) = connection.attach_session();
    let handling = state.session_readers().token();
    let run = ws::run_session(
        state.clone(),
        caller,
        session,
        sink,
        stream,
        handling,
        Dialect::SocketIo,
    );
    let (state, connection) = (state.clone(), connection.clone());
    tokio::spawn(async move {
        run.await;
        state.socketio().close(&connection);
    });
    Ok(())
}

/// A CONNECT's caller and its new hub session: the namespace must be `/`, the token (`auth`'s,
/// else the handshake's) valid, the server ready and the session limits not reached.
async fn authorize(
    state: &AppState,
    namespace: &str,
    auth: Option<Value>,
    handshake_token: Option<String>,
) -> Result<(Identity, Session), ApiError> {
    if namespace != "/" {
        return Err(ApiError::NotFound(format!(
            "namespace {namespace:?}: the chat is in the namespace /"
        )));
    }
    let token = match auth.as_ref().and_then(|auth| auth.get("token")) {
        Some(Value::String(token)) => Some(token.clone()),
        Some(_) => return Err(ApiError::BadRequest("auth.token must be a string".into())),
        None => handshake_token,
    };
    let authenticator = state.authenticator()?;
    let caller = match token {
        Some(token) => authenticator.verify_refreshing(&token).await,
        None => Err(AuthError::Missing),
    }
    .inspect_err(|refused| super::access::auth_failed(PATH, refused))?;
    if ws::expiry::has_expired(caller.expires_at) {
        return Err(AuthError::Expired.into());
    }
    if state.shutdown().is_cancelled() {
        return Err(ApiError::NotReady);
    }
    state.chat()?;
    let session = state.hub().open(&caller.user_id)?;
    Ok((caller, session))
}
