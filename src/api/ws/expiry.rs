//! When a session's token expires, and how a client renews it in-band.
//!
//! A session (`/ws`, SignalR, Socket.IO) lives no longer than the token it was opened with: its
//! writer sleeps until the token's `exp` ([`deadline`]) in the select loop it already runs (one
//! timer per session, no task), and its reader refuses to handle a frame once the token has
//! expired ([`has_expired`]), so a frame that races the timer is not handled either. Either way
//! the session closes with [`CloseReason::TokenExpired`](crate::hub::CloseReason) (`/ws`: 4001).
//!
//! Before that, the client may present a fresh token (`/ws` `auth`, SignalR
//! `Authenticate`, Socket.IO `auth`); [`renew`] checks it: invalid or expired → 401, another
//! user's → 403 (both leave the session as it was, with its old expiry), else the session's
//! identity is the new token's and its deadline that token's `exp`.
//!
//! This module writes nothing to the socket and keeps no state: the reader holds the identity,
//! the writer the timer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::api::problem::ApiError;
use crate::api::AppState;
use crate::auth::{AuthError, Identity};
use crate::hub::{Frame, ServerEvent};

/// Farthest a deadline is set ahead (a token may say it expires in the year 2500): far enough
/// to never come, near enough for the timer.
const FAR_FUTURE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How long since the Unix epoch it is now (zero for a clock set before 1970).
fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// True once a token with `exp` = `expires_at` has expired (it is valid while now < `exp`).
/// No leeway: a session ends when its token does.
pub(crate) fn has_expired(expires_at: u64) -> bool {
    since_epoch() >= Duration::from_secs(expires_at)
}

/// The moment, on the runtime's clock, at which a token with `exp` = `expires_at` expires.
/// Computed against the system clock now: a later jump of that clock does not move it.
pub(super) fn deadline(expires_at: u64) -> Instant {
    let left = Duration::from_secs(expires_at).saturating_sub(since_epoch());
    Instant::now() + left.min(FAR_FUTURE)
}

/// The identity of a fresh token presented by the session of `current`: refused with 401 when
/// the token is invalid or already expired, 403 when it speaks for another user.
pub(super) async fn renew(
    state: &AppState,
    current: &Identity,
    token: &str,
) -> Result<Identity, ApiError> {
    let renewed = state.authenticator()?.verify_refreshing(token).await?;
    if has_expired(renewed.expires_at) {
        return Err(AuthError::Expired.into());
    }
    if renewed.user_id != current.user_id {
        return Err(ApiError::Forbidden(format!(
            "the token is for another user than this session's ({:?}): a session keeps its \
             user; open a new one for another",
            current.user_id
        )));
    }
    Ok(renewed)
}

/// The answer to an accepted renewal: an `ack` naming the new expiry (`expiresAt`).
pub(super) fn renewed(reference: Option<Value>, expires_at: u64) -> Frame {
    let mut fields = Map::new();
    fields.insert("expiresAt".into(), Value::from(expires_at));
    Frame::new(ServerEvent::Ack { reference, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_has_expired_from_its_exp_on() {
        let now = since_epoch().as_secs();
        assert!(has_expired(now));
        assert!(has_expired(now - 1));
        assert!(!has_expired(now + 2));
    }

    #[test]
    fn deadlines_follow_exp_and_stay_representable() {
        let now = since_epoch().as_secs();
        let soon = deadline(now + 60) - Instant::now();
        assert!(soon > Duration::from_secs(58) && soon <= Duration::from_secs(60));
        assert!(deadline(now.saturating_sub(10)) <= Instant::now());
        let far = deadline(u64::MAX) - Instant::now();
        assert!(far > Duration::from_secs(365 * 24 * 3600));
    }
}
