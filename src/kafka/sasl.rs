//! SASL on a Kafka connection (KIP-152: SaslHandshake v1, then SaslAuthenticate): PLAIN with
//! a Tidings token as the password, or OAUTHBEARER with the token itself. A verified token
//! gives the connection that token's scopes instead of the anonymous ones; the answer tells
//! the client when the token expires (`session_lifetime_ms`, KIP-368) so that it
//! re-authenticates in time. The connection closes at that moment unless a SaslHandshake and
//! SaslAuthenticate with a fresh token came before (KIP-368 re-authentication: the new token's
//! scopes and expiry replace the old ones; a failed one leaves the old expiry in place).
//!
//! Tokens are checked by [`crate::auth::Authenticator`] (HS256 secret, or an identity provider's
//! keys); this module only unwraps the mechanisms' bytes.

use bytes::Bytes;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::access::{Mechanism, Session};
use super::Broker;

/// Answers SaslHandshake: PLAIN and OAUTHBEARER are enabled.
pub(super) fn handshake(
    session: &mut Session,
    request: &SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    let enabled = vec![
        StrBytes::from_static_str("PLAIN"),
        StrBytes::from_static_str("OAUTHBEARER"),
    ];
    let answer = SaslHandshakeResponse::default().with_mechanisms(enabled);
    match request.mechanism.as_str() {
        "PLAIN" => session.mechanism = Some(Mechanism::Plain),
        "OAUTHBEARER" => session.mechanism = Some(Mechanism::OauthBearer),
        _ => return answer.with_error_code(ResponseError::UnsupportedSaslMechanism.code()),
    }
    answer
}

/// Answers SaslAuthenticate: the token is verified and its scopes become the connection's.
pub(super) async fn authenticate(
    broker: &Broker,
    session: &mut Session,
    request: &SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    let token = match session.mechanism {
        Some(Mechanism::Plain) => plain_password(&request.auth_bytes),
        Some(Mechanism::OauthBearer) => bearer_token(&request.auth_bytes),
        None => return failed(ResponseError::IllegalSaslState, "SaslHandshake comes first"),
    };
    let Some(token) = token else {
        return failed(
            ResponseError::SaslAuthenticationFailed,
            "no token in the SASL message",
        );
    };
    let Some(authenticator) = &broker.authenticator else {
        return failed(
            ResponseError::SaslAuthenticationFailed,
            "tokens cannot be checked",
        );
    };
    match authenticator.verify_refreshing(&token).await {
        Ok(identity) => {
            let lifetime_ms = lifetime_ms(identity.expires_at);
            tracing::info!(peer = %session.peer, user = %identity.user_id, "kafka: authenticated");
            let expires_at = tokio::time::Instant::now()
                + std::time::Duration::from_millis(lifetime_ms.unsigned_abs());
            session.authenticate(identity.scopes, expires_at);
            SaslAuthenticateResponse::default()
                .with_auth_bytes(Bytes::new())
                .with_session_lifetime_ms(lifetime_ms)
        }
        Err(e) => {
            tracing::info!(peer = %session.peer, error = %e, "kafka: authentication failed");
            failed(ResponseError::SaslAuthenticationFailed, &e.to_string())
        }
    }
}

fn failed(error: ResponseError, message: &str) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message.to_owned())))
}

/// PLAIN: `authzid NUL username NUL password`; the password is the token.
fn plain_password(bytes: &[u8]) -> Option<String> {
    let mut parts = bytes.split(|b| *b == 0);
    let (_authzid, _user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || password.is_empty() {
        return None;
    }
    String::from_utf8(password.to_vec()).ok()
}

/// OAUTHBEARER (RFC 7628): `n,,` then `\x01`-separated `key=value` pairs, one of them
/// `auth=Bearer TOKEN`.
fn bearer_token(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.split('\u{1}')
        .find_map(|pair| pair.strip_prefix("auth="))
        .and_then(|auth| {
            auth.strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
        })
        .map(|token| token.trim().to_owned())
        .filter(|token| !token.is_empty())
}

/// Milliseconds until `expires_at` (seconds since the epoch), at least 1.
fn lifetime_ms(expires_at: u64) -> i64 {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let expires_ms = u128::from(expires_at) * 1000;
    i64::try_from(expires_ms.saturating_sub(now_ms))
        .unwrap_or(i64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_takes_the_password_as_the_token() {
        assert_eq!(
            plain_password(b"\0alice\0tok.en.x").as_deref(),
            Some("tok.en.x")
        );
        assert_eq!(plain_password(b"alice\0tok"), None);
        assert_eq!(plain_password(b"\0alice\0"), None);
    }

    #[test]
    fn oauthbearer_takes_the_bearer_token() {
        let message = b"n,,\x01auth=Bearer abc.def.ghi\x01\x01";
        assert_eq!(bearer_token(message).as_deref(), Some("abc.def.ghi"));
        assert_eq!(bearer_token(b"n,,\x01host=x\x01\x01"), None);
    }
}
