//! Why a presented token was refused, in words a person who holds the token can act on.
//!
//! These texts reach clients (the `detail` of a 401 problem, the Socket.IO `connect_error`
//! message), so they name claims and configuration keys, never the internals of a JWT library
//! (`InvalidSignature`, `expected u64`). This file owns the wording only; deciding is done by
//! [`super::keys`] and [`super::claims`].

use std::fmt;

/// One reason a token is not accepted (other than expiry, which is
/// [`AuthError::Expired`](super::AuthError::Expired)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Not three dot-separated parts.
    #[error("the token is not a JWT (expected three dot-separated parts)")]
    NotJwt,
    /// A part is not base64url, or the header or payload is not a JSON object.
    #[error("the token's {0} is not valid base64url-encoded JSON")]
    Unreadable(&'static str),
    /// `alg` is `none`.
    #[error("the token is not signed (alg none); this server accepts only signed tokens")]
    Unsigned,
    /// `alg` is one no key of this server checks.
    #[error("the token is signed with {alg}, which this server does not accept ({accepted})")]
    Algorithm {
        /// The token's `alg`.
        alg: String,
        /// What the server's keys check, in words.
        accepted: String,
    },
    /// The token names a key id that none of the server's keys has.
    #[error(
        "the token names a key the server does not have (kid {kid:?}); the server's keys come \
         from auth.jwks and auth.publicKeys"
    )]
    UnknownKey {
        /// The token's `kid`.
        kid: String,
    },
    /// No key checks the token's signature.
    #[error("the token's signature does not match the server's key")]
    Signature,
    /// A claim that must be there is not.
    #[error("the token has no {claim} claim ({meaning})")]
    MissingClaim {
        /// The claim's name.
        claim: String,
        /// What it is for (and which setting names it).
        meaning: &'static str,
    },
    /// A claim is of the wrong type.
    #[error("the token's {claim} claim must be {expected}")]
    BadClaim {
        /// The claim's name.
        claim: String,
        /// What it must be.
        expected: &'static str,
    },
    /// `nbf` is in the future.
    #[error("the token is not valid yet (its nbf is {seconds} s from now)")]
    NotYetValid {
        /// Seconds until it becomes valid.
        seconds: u64,
    },
    /// `iss` is not the configured issuer.
    #[error(
        "the token was issued by another issuer (iss {found}; this server accepts {accepted})"
    )]
    Issuer {
        /// The token's `iss`.
        found: Quoted,
        /// `auth.issuer`.
        accepted: Quoted,
    },
    /// `aud` names none of the configured audiences.
    #[error(
        "the token was issued for another audience (aud {found}; this server accepts {accepted})"
    )]
    Audience {
        /// The token's `aud`.
        found: Quoted,
        /// `auth.audience`.
        accepted: Quoted,
    },
}

/// A list of values shown quoted and joined with "or" (`"a" or "b"`); `none` when empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted(pub Vec<String>);

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, value) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            write!(f, "{value:?}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_are_quoted_and_joined() {
        let refusal = Refusal::Audience {
            found: Quoted(vec!["other".into()]),
            accepted: Quoted(vec!["chat".into(), "api://chat".into()]),
        };
        assert_eq!(
            refusal.to_string(),
            "the token was issued for another audience (aud \"other\"; this server accepts \
             \"chat\" or \"api://chat\")"
        );
        let missing = Refusal::Issuer {
            found: Quoted(vec![]),
            accepted: Quoted(vec!["https://idp.example/".into()]),
        };
        assert!(missing.to_string().contains("iss none;"), "{missing}");
    }
}
