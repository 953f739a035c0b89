//! Authentication: HS256 JWTs, the signing secret, and the identity a token carries.
//!
//! Tokens carry `sub` (the user id), optionally `name` (display name) and `scope`
//! (space-separated; `admin` implies every other scope), and `exp`. The secret is
//! `auth.jwtSecret` from the configuration or, when none is configured, `DATA_DIR/secret.key`,
//! created with mode 0600 on first use. `tidings serve` and `tidings token` use the same one, so
//! a fresh install can be tried at once.
//!
//! This module knows nothing of HTTP: the `api` layer extracts the token from a request and
//! calls [`Authenticator::verify`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// File name of the generated secret inside the data directory.
pub const SECRET_FILE: &str = "secret.key";

/// The scope that implies every other.
pub const ADMIN_SCOPE: &str = "admin";

/// Why a token or the secret was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was presented.
    #[error("a bearer token is required")]
    Missing,
    /// The token's `exp` is in the past.
    #[error("the token has expired")]
    Expired,
    /// The token is malformed, unsigned, signed with another secret or another algorithm, or
    /// lacks `sub`.
    #[error("the token is invalid: {0}")]
    Invalid(String),
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
}

/// Token claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    /// User id.
    pub(crate) sub: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub(crate) exp: u64,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<String>,
}

/// Who is calling: what a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id (`sub`).
    pub user_id: String,
    /// Display name (`name`), if the token has one.
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

/// Signs and verifies tokens with one HS256 secret.
#[derive(Clone)]
pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { secret: <hidden> }")
    }
}

/// Shortest accepted secret, in bytes (HS256 wants at least the hash size).
const MIN_SECRET_BYTES: usize = 32;

impl Authenticator {
    /// An authenticator for a secret of at least 32 bytes.
    pub fn new(secret: &[u8]) -> Result<Authenticator, AuthError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(AuthError::WeakSecret(format!(
                "{} bytes; use at least {MIN_SECRET_BYTES}",
                secret.len()
            )));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // A token is not valid before its `nbf` either (jsonwebtoken checks it only when told).
        validation.validate_nbf = true;
        validation.leeway = 5;
        Ok(Authenticator {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// The configured secret if there is one, else `DATA_DIR/secret.key` (created if missing).
    pub fn from_config(
        configured: Option<&str>,
        data_dir: &Path,
    ) -> Result<Authenticator, AuthError> {
        match configured {
            Some(secret) => Authenticator::new(secret.as_bytes()),
            None => Authenticator::new(&load_or_create_secret(data_dir)?),
        }
    }

    /// Checks signature, algorithm and expiry; returns who the token speaks for.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(e.to_string()),
            })?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid("the token's sub is empty".into()));
        }
        Ok(Identity {
            user_id: claims.sub,
            name: claims.name,
            expires_at: claims.exp,
            scopes: claims
                .scope
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        })
    }

    /// Signs a token for `user` valid for `ttl`.
    pub fn issue(
        &self,
        user: &str,
        name: Option<&str>,
        scopes: &[String],
        ttl: Duration,
    ) -> String {
        let claims = Claims {
            sub: user.to_owned(),
            name: name.map(str::to_owned),
            exp: unix_now().saturating_add(ttl.as_secs()),
            scope: (!scopes.is_empty()).then(|| scopes.join(" ")),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of serializable claims cannot fail")
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads `DATA_DIR/secret.key`, or creates it (64 random hex characters, mode 0600).
pub(crate) fn load_or_create_secret(data_dir: &Path) -> Result<Vec<u8>, AuthError> {
    let path = data_dir.join(SECRET_FILE);
    let secret_error = |source| AuthError::Secret {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) => return Ok(trim_newline(bytes)),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(secret_error(e)),
        Err(_) => {}
    }
    std::fs::create_dir_all(data_dir).map_err(secret_error)?;
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| secret_error(std::io::Error::other(e.to_string())))?;
    let secret: String = random.iter().map(|b| format!("{b:02x}")).collect();
    match create_private_file(&path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(secret_error)?;
            Ok(secret.into_bytes())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(&path).map(trim_newline).map_err(secret_error)
        }
        Err(e) => Err(secret_error(e)),
    }
}

fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn trim_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    bytes
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
            &Claims {
                sub: "a".into(),
                name: None,
                exp: unix_now() - 3600,
                scope: None,
            },
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(matches!(auth.verify(&expired), Err(AuthError::Expired)));
        let foreign = other.issue("a", None, &[], Duration::from_secs(60));
        assert!(matches!(auth.verify(&foreign), Err(AuthError::Invalid(_))));
        assert!(matches!(
            auth.verify("not.a.token"),
            Err(AuthError::Invalid(_))
        ));
        // alg "none": header {"alg":"none","typ":"JWT"}, payload {"sub":"a","exp":9999999999}
        let unsigned =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(matches!(auth.verify(unsigned), Err(AuthError::Invalid(_))));
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

    #[test]
    fn the_generated_secret_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_secret(dir.path()).unwrap();
        let second = load_or_create_secret(dir.path()).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
