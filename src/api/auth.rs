//! The authenticated caller as an axum extractor.
//!
//! `Authorization: Bearer T` on every route; `?token=T` additionally on `/ws` and
//! `?access_token=T` on the SignalR hub (`signalr.path`), because browsers cannot set headers on a WebSocket upgrade. Verification itself lives in [`crate::auth`].

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::problem::{ApiError, Json};
use super::AppState;
use crate::auth::{AuthError, Identity};

/// The verified caller of a request.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub Identity);

impl Caller {
    /// Refuses with 403 unless the caller holds `scope` (or `admin`).
    pub(crate) fn require_scope(&self, scope: &'static str) -> Result<(), ApiError> {
        if self.0.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::MissingScope(scope))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let verified = authenticate(parts, state).await;
        // The access log names the user, or logs the refusal.
        super::access::note_caller(parts, verified.as_ref());
        Ok(Caller(verified?))
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Identity, ApiError> {
    let token = bearer_token(parts)
        .or_else(|| query_token(parts, &state.config().signalr.path))
        .ok_or(AuthError::Missing)?;
    // Waits for a JWKS refresh when the token names a key id not yet known.
    Ok(state.authenticator()?.verify_refreshing(&token).await?)
}

/// `GET /api/me` → `{"userId", "name", "scopes"}`: who the presented token speaks for, so a
/// client can check its token.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "auth",
    responses(
        (status = 200, description = "`{userId, name, scopes}` of the token", body = serde_json::Value),
    )
)]
pub(crate) async fn me(Caller(identity): Caller) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "userId": identity.user_id,
        "name": identity.name,
        "scopes": identity.scopes,
    }))
}

fn bearer_token(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// A token in the query is honoured on the WebSocket upgrades only, named as their clients
/// send it: `?token=` on `/ws`, `?access_token=` on the SignalR hub (browser SignalR clients
/// cannot set headers on a WebSocket either).
fn query_token(parts: &Parts, signalr_hub: &str) -> Option<String> {
    let parameter = match parts.uri.path() {
        "/ws" => "token",
        path if path == signalr_hub => "access_token",
        _ => return None,
    };
    parts.uri.query()?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == parameter).then(|| value.to_owned())
    })
}
