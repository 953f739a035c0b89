//! Authentication: checking the tokens callers present, minting the server's own, and the
//! identity a token carries.
//!
//! A token is a JWT. HS256 tokens are checked with the server's secret (`auth.jwtSecret`,
//! `auth.jwtSecretFile`, else `DATA_DIR/secret.key`, created on first start: [`secret`]);
//! RS256/PS256, ES256/ES384 and EdDSA tokens of an identity provider with its public keys
//! (`auth.publicKeys` PEM files, an `auth.jwks` document: [`keys`], [`jwks`]). Then its claims
//! ([`claims`]): `exp` (required) and `nbf`, `iss` and `aud` when `auth.issuer` and
//! `auth.audience` are set, the user id, display name and scopes under the names
//! `auth.claims.*` gives (scopes as a space-separated string or an array; `admin` implies every
//! other scope). A refused token gets a reason in plain words ([`Refusal`]). A token that
//! passed is remembered until it expires or the JWKS changes ([`verified`]).
//!
//! `tidings token` and the admin commands mint HS256 tokens with the server's secret and claim
//! names, and never create a secret (only `tidings serve` does).
//!
//! This module knows nothing of HTTP: the `api` layer extracts the token from a request and
//! calls [`Authenticator::verify_refreshing`] (or [`Authenticator::verify`] where it cannot
//! wait).

mod claims;
mod jwks;
mod keys;
mod refusal;
mod secret;
mod verified;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use claims::ClaimRules;
use jwks::Jwks;
use keys::VerifyKey;
pub use refusal::{Quoted, Refusal};
use secret::Missing;
pub use secret::{SecretSource, SECRET_FILE};
use verified::Verified;

use crate::config::AuthSettings;

/// The scope that implies every other.
pub const ADMIN_SCOPE: &str = "admin";

/// Why a token or the server's keys were refused. The token variants' texts reach clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was presented.
    #[error("a bearer token is required")]
    Missing,
    /// The token's `exp` is in the past.
    #[error("the token has expired; get a new one")]
    Expired,
    /// The token is not one this server accepts; the refusal says why, in plain words.
    #[error("{0}")]
    Invalid(#[from] Refusal),
    /// The secret file could not be read or created.
    #[error("cannot use the signing secret {path}: {source}")]
    Secret {
        /// The secret file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The configured or stored secret is unusable (empty or too short).
    #[error("the signing secret is unusable: {0}")]
    WeakSecret(String),
    /// A command that mints tokens found no secret, and must not create one: it would sign
    /// tokens the server refuses.
    #[error(
        "no signing secret: {} does not exist. Start the server once (tidings serve creates \
         it), or pass the server's --data-dir DIR or --config FILE (its auth.jwtSecret or \
         dataDir)",
        path.display()
    )]
    NoSecret {
        /// Where the secret was looked for.
        path: PathBuf,
    },
    /// A public key or the JWKS document could not be loaded at start.
    #[error("{0}")]
    Keys(String),
}

/// Who is calling: what a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id (`sub`, or the claim `auth.claims.userId` names).
    pub user_id: String,
    /// Display name (`name`, or `auth.claims.name`), if the token has one.
    pub name: Option<String>,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// When the token expires (`exp`), seconds since the Unix epoch: a session opened with it
    /// ends then.
    pub expires_at: u64,
}

impl Identity {
    /// True if the identity holds `scope` directly or through `admin`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope || s == ADMIN_SCOPE)
    }

    /// The display name, or the user id when the token has none.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.user_id)
    }
}

/// Checks tokens with the server's keys and mints HS256 tokens with its secret. Cloning is
/// cheap (one reference count); clones share the JWKS cache.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Keys>,
}

/// What an [`Authenticator`] holds.
struct Keys {
    signing: EncodingKey,
    secret_source: SecretSource,
    /// The secret and the PEM keys: fixed for the life of the server.
    fixed: Vec<VerifyKey>,
    jwks: Option<Arc<Jwks>>,
    rules: ClaimRules,
    verified: Verified,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { secret: <hidden> }")
    }
}

/// Shortest accepted secret, in bytes (HS256 wants at least the hash size).
const MIN_SECRET_BYTES: usize = 32;

/// A check that failed, and whether fetching the JWKS again might change that.
struct Failed {
    error: AuthError,
    kid_unknown: bool,
}

impl<E: Into<AuthError>> From<E> for Failed {
    fn from(error: E) -> Failed {
        Failed {
            error: error.into(),
            kid_unknown: false,
        }
    }
}

impl Authenticator {
    /// An authenticator for an HS256 secret of at least 32 bytes, with the standard claims.
    pub fn new(secret: &[u8]) -> Result<Authenticator, AuthError> {
        Authenticator::with_secret(secret, SecretSource::Given, ClaimRules::default())
    }

    /// The configured secret if there is one, else `DATA_DIR/secret.key` (created if missing),
    /// with the standard claims and no public keys.
    pub fn from_config(
        configured: Option<&str>,
        data_dir: &Path,
    ) -> Result<Authenticator, AuthError> {
        let settings = AuthSettings {
            jwt_secret: configured.map(str::to_owned),
            ..AuthSettings::default()
        };
        let (secret, source) = secret::resolve_secret(&settings, data_dir, Missing::Create)?;
        Authenticator::with_secret(&secret, source, ClaimRules::default())
    }

    /// The authenticator of `tidings serve`: the secret (`DATA_DIR/secret.key` is created if
    /// no other is configured), the PEM keys, and the JWKS, fetched now. Any of them unusable
    /// is an error that names the setting.
    pub async fn for_server(
        settings: &AuthSettings,
        data_dir: &Path,
    ) -> Result<Authenticator, AuthError> {
        let (secret, source) = secret::resolve_secret(settings, data_dir, Missing::Create)?;
        let mut keys = Keys::new(&secret, source, ClaimRules::from_settings(settings))?;
        for path in &settings.public_keys {
            let key = VerifyKey::from_pem_file(path).map_err(|reason| {
                AuthError::Keys(format!("auth.publicKeys: {}: {reason}", path.display()))
            })?;
            keys.fixed.push(key);
        }
        if let Some(location) = &settings.jwks {
            let jwks = Jwks::load(settings, location.clone())
                .await
                .map_err(|reason| AuthError::Keys(format!("auth.jwks {location}: {reason}")))?;
            keys.jwks = Some(Arc::new(jwks));
        }
        Ok(Authenticator {
            inner: Arc::new(keys),
        })
    }

    /// The authenticator of a command that mints tokens for a server: that server's secret and
    /// claim rules, never a new secret ([`AuthError::NoSecret`]).
    pub fn for_minting(
        settings: &AuthSettings,
        data_dir: &Path,
    ) -> Result<Authenticator, AuthError> {
        let (secret, source) = secret::resolve_secret(settings, data_dir, Missing::Refuse)?;
        Authenticator::with_secret(&secret, source, ClaimRules::from_settings(settings))
    }

    fn with_secret(
        secret: &[u8],
        source: SecretSource,
        rules: ClaimRules,
    ) -> Result<Authenticator, AuthError> {
        Ok(Authenticator {
            inner: Arc::new(Keys::new(secret, source, rules)?),
        })
    }

    /// Where the keys come from, for the start-up line: the secret's source, the number of
    /// PEM keys, the JWKS location and its key count.
    pub fn describe(&self) -> String {
        let keys = &self.inner;
        let mut text = format!("HS256 secret from {}", keys.secret_source);
        let pem = keys.fixed.len() - 1;
        if pem > 0 {
            text.push_str(&format!(", {pem} public key(s) from auth.publicKeys"));
        }
        if let Some(jwks) = &keys.jwks {
            text.push_str(&format!(
                ", {} key(s) from the JWKS {}",
                jwks.keys().len(),
                jwks.location()
            ));
        }
        text
    }

    /// Checks the token with the keys at hand; returns who it speaks for. A token naming a key
    /// id the JWKS lacks is refused, and a refresh of the JWKS is asked for (at most once per
    /// `auth.jwksMinRefreshMs`), so that a retry may pass.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        self.check(token).map_err(|failed| {
            if failed.kid_unknown {
                if let Some(jwks) = &self.inner.jwks {
                    jwks.request_refresh();
                }
            }
            failed.error
        })
    }

    /// [`verify`](Self::verify), but a token naming a key id the JWKS lacks waits for the JWKS
    /// to be fetched again (at most once per `auth.jwksMinRefreshMs`) and is checked once more:
    /// an identity provider that just added a key is accepted at once.
    pub async fn verify_refreshing(&self, token: &str) -> Result<Identity, AuthError> {
        match self.check(token) {
            Ok(identity) => Ok(identity),
            Err(failed) => match (&self.inner.jwks, failed.kid_unknown) {
                (Some(jwks), true) => {
                    jwks.refresh_for_unknown_key().await;
                    self.check(token).map_err(|failed| failed.error)
                }
                _ => Err(failed.error),
            },
        }
    }

    /// The identity of a token verified lately ([`verified`]), else the full check, whose
    /// success is kept.
    fn check(&self, token: &str) -> Result<Identity, Failed> {
        let jwks_keys = self.inner.jwks.as_ref().map(|jwks| jwks.keys());
        let now = unix_now();
        if let Some(identity) = self.inner.verified.get(token, jwks_keys.as_ref(), now) {
            return Ok(identity);
        }
        let identity = self.check_signed(token, jwks_keys.as_deref(), now)?;
        self.inner.verified.keep(token, &identity, jwks_keys);
        Ok(identity)
    }

    /// Signature (against the fixed keys and `fetched`, the JWKS's), then claims.
    fn check_signed(
        &self,
        token: &str,
        fetched: Option<&[VerifyKey]>,
        now: u64,
    ) -> Result<Identity, Failed> {
        let header = keys::read_header(token)?;
        let mut sets: Vec<&[VerifyKey]> = vec![&self.inner.fixed];
        sets.extend(fetched);
        let refused_algorithm = || Refusal::Algorithm {
            alg: header.alg_name.clone(),
            accepted: keys::accepted_algorithms(&sets),
        };
        let Some(alg) = header.alg else {
            return Err(refused_algorithm().into());
        };
        let candidates = keys::candidates(&header, &sets);
        let kid_unknown = candidates.kid_unknown && self.inner.jwks.is_some();
        let unknown_key = || Refusal::UnknownKey {
            kid: header.kid.clone().unwrap_or_default(),
        };
        if candidates.keys.is_empty() {
            let refusal = if kid_unknown {
                unknown_key()
            } else {
                refused_algorithm()
            };
            return Err(Failed {
                error: refusal.into(),
                kid_unknown,
            });
        }
        let claims = keys::check_signature(token, alg, &candidates.keys).map_err(|refusal| {
            let refusal = match refusal {
                Refusal::Signature if kid_unknown => unknown_key(),
                other => other,
            };
            Failed {
                error: refusal.into(),
                kid_unknown,
            }
        })?;
        Ok(self.inner.rules.identity(&claims, now)?)
    }

    /// Signs an HS256 token for `user` valid for `ttl`, with the claim names, issuer and
    /// audience this server checks.
    pub fn issue(
        &self,
        user: &str,
        name: Option<&str>,
        scopes: &[String],
        ttl: Duration,
    ) -> String {
        let now = unix_now();
        let claims =
            self.inner
                .rules
                .minted(user, name, scopes, now, now.saturating_add(ttl.as_secs()));
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.inner.signing)
            .expect("HS256 signing of a JSON object cannot fail")
    }

    /// Keeps the JWKS fresh until `shutdown` (nothing to do without one).
    pub fn spawn_key_refresh(&self, shutdown: CancellationToken, tasks: &TaskTracker) {
        if let Some(jwks) = &self.inner.jwks {
            let jwks = Arc::clone(jwks);
            tasks.spawn(async move { jwks.keep_fresh(shutdown).await });
        }
    }
}

impl Keys {
    fn new(
        secret: &[u8],
        secret_source: SecretSource,
        rules: ClaimRules,
    ) -> Result<Keys, AuthError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(AuthError::WeakSecret(format!(
                "{} bytes from {secret_source}; use at least {MIN_SECRET_BYTES}",
                secret.len()
            )));
        }
        Ok(Keys {
            signing: EncodingKey::from_secret(secret),
            secret_source,
            fixed: vec![VerifyKey::secret(secret)],
            jwks: None,
            rules,
            verified: Verified::new(),
        })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn issued_tokens_verify_with_their_claims() {
        let auth = Authenticator::new(SECRET).unwrap();
        let token = auth.issue(
            "alice",
            Some("Alice"),
            &["events:publish".into()],
            Duration::from_secs(60),
        );
        let who = auth.verify(&token).unwrap();
        assert_eq!(who.user_id, "alice");
        assert_eq!(who.display_name(), "Alice");
        assert!(who.has_scope("events:publish"));
        assert!(!who.has_scope("events:consume"));
    }

    #[test]
    fn admin_implies_every_scope() {
        let who = Identity {
            user_id: "ops".into(),
            name: None,
            scopes: vec!["admin".into()],
            expires_at: u64::MAX,
        };
        assert!(who.has_scope("events:consume") && who.has_scope("events:publish"));
    }

    #[test]
    fn expired_foreign_and_garbage_tokens_are_refused() {
        let auth = Authenticator::new(SECRET).unwrap();
        let other = Authenticator::new(b"another secret that is long enough!!").unwrap();
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "a", "exp": unix_now() - 3600}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(matches!(auth.verify(&expired), Err(AuthError::Expired)));
        let foreign = other.issue("a", None, &[], Duration::from_secs(60));
        let refusal = |token: &str| auth.verify(token).unwrap_err().to_string();
        assert_eq!(
            refusal(&foreign),
            "the token's signature does not match the server's key"
        );
        assert_eq!(
            refusal("not-a-jwt"),
            "the token is not a JWT (expected three dot-separated parts)"
        );
        assert_eq!(
            refusal("not.a.token"),
            "the token's header is not valid base64url-encoded JSON"
        );
        // alg "none": header {"alg":"none","typ":"JWT"}, payload {"sub":"a","exp":9999999999}
        let unsigned =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert_eq!(
            refusal(unsigned),
            "the token is not signed (alg none); this server accepts only signed tokens"
        );
    }

    #[test]
    fn an_rs256_token_without_public_keys_names_what_is_accepted() {
        let auth = Authenticator::new(SECRET).unwrap();
        // header {"alg":"RS256"}, payload {"sub":"a","exp":9999999999}
        let rs256 = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.c2ln";
        assert_eq!(
            auth.verify(rs256).unwrap_err().to_string(),
            "the token is signed with RS256, which this server does not accept (it accepts \
             HS256 with its secret)"
        );
    }

    #[test]
    fn no_refusal_text_shows_library_names() {
        let auth = Authenticator::new(SECRET).unwrap();
        let token = auth.issue("a", None, &[], Duration::from_secs(60));
        let (head, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let bad_payloads = ["e30", "bm90IGpzb24", "eyJleHAiOiJzb29uIn0", "W10"];
        for payload in bad_payloads {
            let text = auth
                .verify(&format!("{head}.{payload}.{signature}"))
                .unwrap_err()
                .to_string();
            for internal in ["InvalidSignature", "InvalidToken", "expected u64", "Error("] {
                assert!(!text.contains(internal), "{payload}: {text}");
            }
        }
    }

    mod properties {
        use base64::Engine;
        use proptest::prelude::*;

        use super::*;

        fn b64(bytes: &[u8]) -> String {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        }

        /// Three dot-separated parts: random base64url, or JSON objects with random claims.
        fn token_shaped() -> impl Strategy<Value = String> {
            let part = prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| b64(&b)),
                ".{0,20}".prop_map(|s| b64(s.as_bytes())),
                (".{0,8}", any::<i64>(), ".{0,8}").prop_map(|(alg, exp, sub)| {
                    let json = serde_json::json!({"alg": alg, "exp": exp, "sub": sub});
                    b64(json.to_string().as_bytes())
                }),
                Just(b64(br#"{"alg":"HS256","typ":"JWT"}"#)),
                Just(b64(&"[".repeat(10_000).into_bytes())),
                ".{0,12}",
            ];
            proptest::collection::vec(part, 1..5).prop_map(|parts| parts.join("."))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Any string is refused as invalid or expired (never accepted, never a panic).
            #[test]
            fn any_string_is_refused(token in ".{0,200}") {
                let auth = Authenticator::new(SECRET).unwrap();
                let refused = auth.verify(&token).unwrap_err();
                prop_assert!(matches!(refused, AuthError::Invalid(_) | AuthError::Expired));
            }

            /// Token-shaped strings without our signature are refused, never a panic.
            #[test]
            fn token_shaped_strings_are_refused(token in token_shaped()) {
                let auth = Authenticator::new(SECRET).unwrap();
                let refused = auth.verify(&token).unwrap_err();
                prop_assert!(matches!(refused, AuthError::Invalid(_) | AuthError::Expired));
            }

            /// A valid token with one character changed is refused.
            #[test]
            fn a_changed_character_is_refused(at in any::<usize>(), to in "[A-Za-z0-9_.-]") {
                let auth = Authenticator::new(SECRET).unwrap();
                let token = auth.issue("alice", None, &[], Duration::from_secs(60));
                let at = at % token.len();
                let mut changed = token.clone();
                changed.replace_range(at..at + 1, &to);
                prop_assume!(changed != token);
                prop_assert!(auth.verify(&changed).is_err());
            }
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(
            Authenticator::new(b"short"),
            Err(AuthError::WeakSecret(_))
        ));
    }
}
