//! Tokens verified lately, so that a client presenting the same token on every request pays
//! for its signature and claims once, not per request (they were about a third of the
//! instructions of a one-record publish).
//!
//! An entry is the exact token text and the identity its check gave. It is used only while
//! the token has not expired (the same rule and leeway as the check) and while the key set it
//! was checked against is the one in use: a JWKS refresh makes every entry checked against the
//! earlier set miss, so a key the identity provider withdrew stops its tokens at once. The
//! server's secret and PEM keys are fixed for its life. A token the check refused is never
//! kept: refusals keep their reasons and their log lines.
//!
//! Bounded by the bytes of what it holds ([`CAPACITY_BYTES`]); tokens longer than
//! [`MAX_TOKEN_BYTES`] are checked every time. This module does not check tokens: `auth` does.

use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use super::claims;
use super::keys::VerifyKey;
use super::Identity;

/// Bytes of tokens and identities kept at most (about 6,000 tokens of ~300 bytes).
const CAPACITY_BYTES: u64 = 2 << 20;
/// Longest token kept.
const MAX_TOKEN_BYTES: usize = 4096;
/// Tokens expected, to size the cache's table.
const EXPECTED_TOKENS: usize = 4096;

/// A verified token's identity and the JWKS key set it was checked against (`None` without a
/// JWKS).
#[derive(Clone)]
struct Entry {
    identity: Identity,
    jwks_keys: Option<Arc<[VerifyKey]>>,
}

/// Weighs an entry by the bytes it holds.
#[derive(Clone)]
struct ByBytes;

impl Weighter<String, Entry> for ByBytes {
    fn weight(&self, token: &String, entry: &Entry) -> u64 {
        let identity = &entry.identity;
        let bytes = token.len()
            + identity.user_id.len()
            + identity.name.as_ref().map_or(0, String::len)
            + identity.scopes.iter().map(String::len).sum::<usize>()
            + std::mem::size_of::<Entry>();
        bytes as u64
    }
}

/// The cache of verified tokens of one [`Authenticator`](super::Authenticator).
pub(super) struct Verified(Cache<String, Entry, ByBytes>);

impl Verified {
    pub(super) fn new() -> Verified {
        Verified(Cache::with_weighter(
            EXPECTED_TOKENS,
            CAPACITY_BYTES,
            ByBytes,
        ))
    }

    /// The identity `token` was verified as, if it is kept, has not expired at `now` and was
    /// checked against `jwks_keys` (the JWKS key set in use now).
    pub(super) fn get(
        &self,
        token: &str,
        jwks_keys: Option<&Arc<[VerifyKey]>>,
        now: u64,
    ) -> Option<Identity> {
        let entry = self.0.get(token)?;
        let same_keys = match (&entry.jwks_keys, jwks_keys) {
            (Some(then), Some(now)) => Arc::ptr_eq(then, now),
            (None, None) => true,
            _ => false,
        };
        (same_keys && !claims::has_expired(entry.identity.expires_at, now))
            .then_some(entry.identity)
    }

    /// Keeps `identity`, which `token` was just verified as against `jwks_keys`.
    pub(super) fn keep(
        &self,
        token: &str,
        identity: &Identity,
        jwks_keys: Option<Arc<[VerifyKey]>>,
    ) {
        if token.len() <= MAX_TOKEN_BYTES {
            let entry = Entry {
                identity: identity.clone(),
                jwks_keys,
            };
            self.0.insert(token.to_owned(), entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(expires_at: u64) -> Identity {
        Identity {
            user_id: "alice".into(),
            name: None,
            scopes: vec![],
            expires_at,
        }
    }

    #[test]
    fn a_kept_token_is_found_until_it_expires_with_the_checks_leeway() {
        let verified = Verified::new();
        verified.keep("t", &alice(1_000), None);
        assert_eq!(verified.get("t", None, 900), Some(alice(1_000)));
        assert_eq!(verified.get("t", None, 1_000), Some(alice(1_000)));
        assert!(!claims::has_expired(1_000, 1_000 + claims::LEEWAY_SECS));
        assert_eq!(
            verified.get("t", None, 1_001 + claims::LEEWAY_SECS),
            None,
            "expired"
        );
        assert_eq!(verified.get("u", None, 900), None, "another token");
        assert_eq!(verified.get("t ", None, 900), None, "only the exact text");
    }

    #[test]
    fn a_token_checked_against_other_jwks_keys_is_not_found() {
        let verified = Verified::new();
        let then: Arc<[VerifyKey]> = Arc::from(Vec::new());
        let now: Arc<[VerifyKey]> = Arc::from(Vec::new());
        verified.keep("t", &alice(1_000), Some(then.clone()));
        assert!(verified.get("t", Some(&then), 900).is_some());
        assert_eq!(verified.get("t", Some(&now), 900), None, "a refreshed set");
        assert_eq!(verified.get("t", None, 900), None);
        verified.keep("f", &alice(1_000), None);
        assert_eq!(verified.get("f", Some(&now), 900), None);
    }

    #[test]
    fn long_tokens_are_not_kept_and_the_bytes_kept_are_bounded() {
        let verified = Verified::new();
        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        verified.keep(&long, &alice(1_000), None);
        assert_eq!(verified.get(&long, None, 900), None);
        for i in 0..20_000 {
            verified.keep(&format!("{i:0>1000}"), &alice(1_000), None);
        }
        assert!(
            verified.0.weight() <= CAPACITY_BYTES,
            "{}",
            verified.0.weight()
        );
        assert!(verified.0.len() < 20_000);
    }
}
