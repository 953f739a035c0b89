//! `/chathub`: the chat hub for ASP.NET Core SignalR clients (`@microsoft/signalr`, the .NET
//! client), speaking SignalR's JSON hub protocol (version 1) over WebSockets.
//!
//! Two routes, as the clients expect them, at `signalr.path` (`/chathub` by default):
//! - `POST /chathub/negotiate?negotiateVersion=1` (authenticated) → a connection token and the
//!   one transport offered, WebSockets with text frames. Server-Sent Events and long polling
//!   are not offered, so clients never fall back to them.
//! - `GET /chathub?id=TOKEN` (or without `id`, for clients that skip negotiation) → the
//!   WebSocket upgrade. The token is the `Authorization: Bearer` header (Node and .NET clients)
//!   or `access_token` in the query (browsers). A connection token is good for one socket of
//!   the user it was issued to, within [`TOKEN_LIFETIME`]: unknown or expired → 404, used
//!   already → 409. A user holds at most `ws.maxSessionsPerUser` unexpired tokens (429 beyond).
//!
//! After the upgrade the session is an ordinary hub session run by `api::ws` in the SignalR
//! [`Dialect`]: the same queue, seq rule, resume, participant checks and flow control as a
//! `/ws` session; only its wire format ([`codec`]) and client records ([`protocol`]) differ.

pub(crate) mod codec;
pub(crate) mod protocol;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::problem::{ApiError, Json, Query};
use super::ws::{self, dialect::Dialect};
use super::AppState;

/// Where clients negotiate, below the hub's path (`signalr.path`).
pub(crate) const NEGOTIATE: &str = "/negotiate";
/// How long a negotiated connection token waits for its socket.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Most connection tokens waiting for their socket at once; beyond, negotiation answers 503.
const MAX_PENDING: usize = 10_000;

/// The connection tokens handed out by negotiation and not yet expired.
#[derive(Debug, Default)]
pub(crate) struct Negotiations {
    pending: Mutex<HashMap<String, Pending>>,
}

#[derive(Debug)]
struct Pending {
    user: String,
    issued: Instant,
    used: bool,
}

impl Negotiations {
    /// A new connection token for `user`: 429 when the user holds `per_user` tokens of the
    /// last [`TOKEN_LIFETIME`] already (one client negotiating in a loop must not take the
    /// others' room), 503 when [`MAX_PENDING`] wait in all.
    fn issue(&self, user: &str, per_user: usize, now: Instant) -> Result<String, ApiError> {
        let mut pending = self.pending.lock();
        if pending.len() >= MAX_PENDING {
            pending.retain(|_, p| now.duration_since(p.issued) < TOKEN_LIFETIME);
        }
        if pending.len() >= MAX_PENDING {
            return Err(ApiError::Overloaded(format!(
                "{MAX_PENDING} negotiated connections are waiting for their socket; retry shortly"
            )));
        }
        let held = pending
            .values()
            .filter(|p| p.user == user && now.duration_since(p.issued) < TOKEN_LIFETIME)
            .count();
        if held >= per_user {
            return Err(ApiError::TooManyRequests {
                limit: u32::try_from(per_user).unwrap_or(u32::MAX),
                retry_after: TOKEN_LIFETIME.as_secs(),
            });
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        pending.insert(
            token.clone(),
            Pending {
                user: user.to_owned(),
                issued: now,
                used: false,
            },
        );
        Ok(token)
    }

    /// Takes `token` for a socket of `user`: 404 if it is unknown, expired or another user's,
    /// 409 if a socket used it already.
    fn claim(&self, token: &str, user: &str, now: Instant) -> Result<(), ApiError> {
        let mut pending = self.pending.lock();
        let not_found = || ApiError::NotFound(format!("connection {token:?}"));
        let entry = pending.get_mut(token).ok_or_else(not_found)?;
        if entry.user != user || now.duration_since(entry.issued) >= TOKEN_LIFETIME {
            return Err(not_found());
        }
        if entry.used {
            return Err(ApiError::Conflict(format!(
                "connection {token:?} has its socket already; negotiate again"
            )));
        }
        entry.used = true;
        Ok(())
    }
}

/// The query of a negotiation.
#[derive(Debug, Deserialize)]
pub(crate) struct NegotiateQuery {
    #[serde(rename = "negotiateVersion")]
    negotiate_version: Option<u32>,
}

/// `POST /chathub/negotiate` → the connection token and the transports offered.
pub(crate) async fn negotiate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(query): Query<NegotiateQuery>,
) -> Result<Json<Value>, ApiError> {
    if state.shutdown().is_cancelled() {
        return Err(ApiError::NotReady);
    }
    state.chat()?;
    let per_user = state.config().ws.max_sessions_per_user;
    let token = state
        .signalr()
        .issue(&caller.user_id, per_user, Instant::now())?;
    let transports = json!([{ "transport": "WebSockets", "transferFormats": ["Text"] }]);
    // Version 0 clients connect with the connection id; version 1 ones with the token, and
    // the id is then only a name for the connection.
    let body = if query.negotiate_version.unwrap_or(0) >= 1 {
        json!({
            "negotiateVersion": 1,
            "connectionId": uuid::Uuid::new_v4().simple().to_string(),
            "connectionToken": token,
            "availableTransports": transports,
        })
    } else {
        json!({
            "negotiateVersion": 0,
            "connectionId": token,
            "availableTransports": transports,
        })
    };
    Ok(Json(body))
}

/// The query of the socket.
#[derive(Debug, Deserialize)]
pub(crate) struct ConnectQuery {
    id: Option<String>,
}

/// `GET /chathub` → 101 and a SignalR session, or a problem (401, 404/409 for a bad
/// connection token, 429/503 for the session limits, 400 for a request that is no upgrade:
/// only the WebSockets transport is offered).
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(query): Query<ConnectQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "{}: this hub offers the WebSockets transport only",
            rejection.body_text()
        ))
    })?;
    if let Some(token) = &query.id {
        state
            .signalr()
            .claim(token, &caller.user_id, Instant::now())?;
    }
    ws::accept(state, caller, upgrade, Dialect::Signalr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_token_serves_one_socket_of_its_user_within_its_lifetime() {
        let negotiations = Negotiations::default();
        let now = Instant::now();
        let token = negotiations.issue("ann", 32, now).unwrap();
        let status = |r: Result<(), ApiError>| r.map_err(|e| e.status().as_u16());
        assert_eq!(status(negotiations.claim(&token, "bob", now)), Err(404));
        assert_eq!(status(negotiations.claim("nope", "ann", now)), Err(404));
        assert_eq!(status(negotiations.claim(&token, "ann", now)), Ok(()));
        assert_eq!(status(negotiations.claim(&token, "ann", now)), Err(409));
        let late = negotiations.issue("ann", 32, now).unwrap();
        let after = now + TOKEN_LIFETIME;
        assert_eq!(status(negotiations.claim(&late, "ann", after)), Err(404));
    }

    #[test]
    fn negotiation_is_bounded_and_expired_tokens_make_room() {
        let negotiations = Negotiations::default();
        let now = Instant::now();
        for i in 0..MAX_PENDING {
            negotiations.issue(&format!("u{i}"), 32, now).unwrap();
        }
        let refused = negotiations.issue("ann", 32, now).unwrap_err();
        assert_eq!(refused.status().as_u16(), 503);
        assert!(negotiations.issue("ann", 32, now + TOKEN_LIFETIME).is_ok());
    }

    #[test]
    fn one_user_negotiating_in_a_loop_gets_429_and_leaves_room_for_others() {
        let negotiations = Negotiations::default();
        let now = Instant::now();
        for _ in 0..3 {
            negotiations.issue("mallory", 3, now).unwrap();
        }
        let refused = negotiations.issue("mallory", 3, now).unwrap_err();
        assert_eq!(refused.status().as_u16(), 429);
        assert!(negotiations.issue("ann", 3, now).is_ok());
        assert!(negotiations
            .issue("mallory", 3, now + TOKEN_LIFETIME)
            .is_ok());
    }
}
