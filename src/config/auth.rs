//! The `[auth]` section: where the keys that check tokens come from (the HS256 secret, PEM public
//! keys, a JWKS document), which issuer and audience a token must name, and which claims carry
//! the user id, display name and scopes.
//!
//! This file owns the section's defaults, its file keys and its checks; it loads no key and
//! fetches nothing ([`crate::auth`] does, when the server starts). Precedence and the other
//! sections are in `config.rs`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{bad_value, set, ConfigError};

/// The `[auth]` section.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// HS256 secret, its UTF-8 bytes; `None` means "use `auth.jwtSecretFile` or
    /// `DATA_DIR/secret.key`" (`auth.jwtSecret`).
    pub jwt_secret: Option<String>,
    /// A file whose bytes, exactly as they are, are the HS256 secret (`auth.jwtSecretFile`).
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM files of public keys that check RS*/PS*/ES*/EdDSA tokens (`auth.publicKeys`).
    pub public_keys: Vec<PathBuf>,
    /// A JWKS document whose keys check RS*/PS*/ES*/EdDSA tokens (`auth.jwks`).
    pub jwks: Option<JwksLocation>,
    /// How often the JWKS is fetched again (`auth.jwksRefreshMs`).
    pub jwks_refresh: Duration,
    /// Least time between two fetches of the JWKS caused by tokens naming an unknown key id
    /// (`auth.jwksMinRefreshMs`).
    pub jwks_min_refresh: Duration,
    /// Accepted `iss` values; empty: any issuer (`auth.issuer`).
    pub issuers: Vec<String>,
    /// Accepted `aud` values (a token needs one of them); empty: any audience (`auth.audience`).
    pub audiences: Vec<String>,
    /// Which claims carry the user id, the display name and the scopes (`[auth.claims]`).
    pub claims: ClaimNames,
}

/// Where the JWKS document is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksLocation {
    /// A local file (kept up to date by the operator, read again at every refresh).
    File(PathBuf),
    /// An `http://` or `https://` URL (usually the identity provider's `jwks_uri`).
    Url(String),
}

impl fmt::Display for JwksLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksLocation::File(path) => write!(f, "{}", path.display()),
            JwksLocation::Url(url) => f.write_str(url),
        }
    }
}

/// The claims a token's identity is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    /// The user id (`auth.claims.userId`, default `sub`).
    pub user_id: String,
    /// The display name (`auth.claims.name`, default `name`).
    pub name: String,
    /// The scopes: a space-separated string or an array of strings (`auth.claims.scope`,
    /// default `scope`).
    pub scope: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            user_id: "sub".into(),
            name: "name".into(),
            scope: "scope".into(),
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            jwt_secret: None,
            jwt_secret_file: None,
            public_keys: Vec::new(),
            jwks: None,
            jwks_refresh: Duration::from_secs(600),
            jwks_min_refresh: Duration::from_secs(30),
            issuers: Vec::new(),
            audiences: Vec::new(),
            claims: ClaimNames::default(),
        }
    }
}

impl fmt::Debug for AuthSettings {
    /// Never prints the secret itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = self.jwt_secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &secret)
            .field("jwt_secret_file", &self.jwt_secret_file)
            .field("public_keys", &self.public_keys)
            .field("jwks", &self.jwks)
            .field("jwks_refresh", &self.jwks_refresh)
            .field("jwks_min_refresh", &self.jwks_min_refresh)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("claims", &self.claims)
            .finish()
    }
}

impl AuthSettings {
    /// Sets the secret from a higher layer (`TIDINGS_JWT_SECRET`), which replaces a secret file
    /// named in the file as well.
    pub(super) fn override_secret(&mut self, secret: String) {
        self.jwt_secret = Some(secret);
        self.jwt_secret_file = None;
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_secret.is_some() && self.jwt_secret_file.is_some() {
            return Err(bad_value(
                "auth.jwtSecretFile",
                self.jwt_secret_file
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                "not set together with auth.jwtSecret: one secret or the other".into(),
            ));
        }
        if let Some(JwksLocation::Url(url)) = &self.jwks {
            let parsed = reqwest::Url::parse(url).ok();
            if !parsed.is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()) {
                return Err(bad_value(
                    "auth.jwks",
                    url,
                    "an absolute http:// or https:// URL, or a file path".into(),
                ));
            }
        }
        if self.jwks_refresh.is_zero() {
            return Err(bad_value(
                "auth.jwksRefreshMs",
                0,
                "a positive number of milliseconds".into(),
            ));
        }
        let names = [
            ("auth.claims.userId", &self.claims.user_id),
            ("auth.claims.name", &self.claims.name),
            ("auth.claims.scope", &self.claims.scope),
        ];
        for (key, name) in names {
            if name.trim().is_empty() {
                return Err(bad_value(key, name, "a claim name such as sub".into()));
            }
        }
        let lists = [
            ("auth.issuer", &self.issuers),
            ("auth.audience", &self.audiences),
        ];
        for (key, values) in lists {
            if values.iter().any(|v| v.is_empty()) {
                return Err(bad_value(key, "", "non-empty strings".into()));
            }
        }
        Ok(())
    }
}

/// A string or a list of strings, as `auth.issuer` and `auth.audience` are written.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// `[auth]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileAuth {
    jwt_secret: Option<String>,
    jwt_secret_file: Option<PathBuf>,
    public_keys: Option<Vec<PathBuf>>,
    jwks: Option<String>,
    jwks_refresh_ms: Option<u64>,
    jwks_min_refresh_ms: Option<u64>,
    issuer: Option<OneOrMany>,
    audience: Option<OneOrMany>,
    claims: Option<FileClaims>,
}

/// `[auth.claims]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileClaims {
    user_id: Option<String>,
    name: Option<String>,
    scope: Option<String>,
}

impl FileAuth {
    pub(super) fn apply_to(self, auth: &mut AuthSettings) {
        // An empty secret in the file means "none" (the data directory's secret.key).
        auth.jwt_secret = self.jwt_secret.filter(|s| !s.is_empty());
        auth.jwt_secret_file = self.jwt_secret_file;
        set(&mut auth.public_keys, self.public_keys);
        auth.jwks = self.jwks.filter(|s| !s.is_empty()).map(|location| {
            if location.starts_with("http://") || location.starts_with("https://") {
                JwksLocation::Url(location)
            } else {
                JwksLocation::File(PathBuf::from(location))
            }
        });
        let millis = |ms: Option<u64>| ms.map(Duration::from_millis);
        set(&mut auth.jwks_refresh, millis(self.jwks_refresh_ms));
        set(&mut auth.jwks_min_refresh, millis(self.jwks_min_refresh_ms));
        set(&mut auth.issuers, self.issuer.map(OneOrMany::into_vec));
        set(&mut auth.audiences, self.audience.map(OneOrMany::into_vec));
        let claims = self.claims.unwrap_or_default();
        set(&mut auth.claims.user_id, claims.user_id);
        set(&mut auth.claims.name, claims.name);
        set(&mut auth.claims.scope, claims.scope);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, Overrides};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("tidings.toml"))
    }

    #[test]
    fn every_auth_key_is_read() {
        let config = parse(
            r#"
            [auth]
            jwtSecretFile = "/etc/tidings/hs256.key"
            publicKeys = ["/etc/tidings/idp.pem", "idp2.pem"]
            jwks = "https://idp.example/.well-known/jwks.json"
            jwksRefreshMs = 60000
            jwksMinRefreshMs = 5000
            issuer = "https://idp.example/"
            audience = ["chat", "api://chat"]
            [auth.claims]
            userId = "oid"
            name = "preferred_username"
            scope = "scp"
            "#,
        )
        .unwrap();
        let auth = config.auth;
        assert_eq!(
            auth.jwt_secret_file.as_deref(),
            Some(Path::new("/etc/tidings/hs256.key"))
        );
        assert_eq!(auth.public_keys.len(), 2);
        assert_eq!(
            auth.jwks,
            Some(JwksLocation::Url(
                "https://idp.example/.well-known/jwks.json".into()
            ))
        );
        assert_eq!(auth.jwks_refresh, Duration::from_secs(60));
        assert_eq!(auth.jwks_min_refresh, Duration::from_secs(5));
        assert_eq!(auth.issuers, ["https://idp.example/"]);
        assert_eq!(auth.audiences, ["chat", "api://chat"]);
        assert_eq!(auth.claims.user_id, "oid");
        assert_eq!(auth.claims.name, "preferred_username");
        assert_eq!(auth.claims.scope, "scp");
    }

    #[test]
    fn defaults_check_no_issuer_or_audience_and_read_standard_claims() {
        let auth = Config::default().auth;
        assert!(auth.issuers.is_empty() && auth.audiences.is_empty());
        assert_eq!(auth.claims, ClaimNames::default());
        assert_eq!(auth.claims.user_id, "sub");
        assert!(auth.jwks.is_none() && auth.public_keys.is_empty());
    }

    #[test]
    fn a_jwks_path_is_a_file_and_a_single_audience_a_list_of_one() {
        let auth = parse("[auth]\njwks = \"keys/jwks.json\"\naudience = \"chat\"\n")
            .unwrap()
            .auth;
        assert_eq!(
            auth.jwks,
            Some(JwksLocation::File(PathBuf::from("keys/jwks.json")))
        );
        assert_eq!(auth.audiences, ["chat"]);
    }

    #[test]
    fn bad_auth_values_are_refused_with_their_key() {
        let cases = [
            (
                "[auth]\njwtSecret = \"x\"\njwtSecretFile = \"/k\"\n",
                "auth.jwtSecretFile",
            ),
            ("[auth]\njwks = \"https://\"\n", "auth.jwks"),
            ("[auth]\njwksRefreshMs = 0\n", "auth.jwksRefreshMs"),
            ("[auth.claims]\nuserId = \" \"\n", "auth.claims.userId"),
            ("[auth]\naudience = [\"\"]\n", "auth.audience"),
        ];
        for (text, key) in cases {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(key), "{text}: {error}");
        }
        let typo = parse("[auth.claims]\nuserID = \"oid\"\n")
            .unwrap_err()
            .to_string();
        assert!(typo.contains("userID"), "{typo}");
    }

    /// The example file of docs/configuration.md parses, and its `[auth]` keys are the defaults.
    #[test]
    fn the_documented_example_shows_the_auth_defaults() {
        let doc = include_str!("../../docs/configuration.md");
        let example = doc
            .split("## Example file")
            .nth(1)
            .and_then(|rest| rest.split("```toml\n").nth(1))
            .and_then(|block| block.split("```").next())
            .expect("docs/configuration.md has an example file");
        let config = parse(example).unwrap();
        assert_eq!(config.auth, AuthSettings::default());
    }

    #[test]
    fn the_secret_from_the_environment_replaces_a_secret_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidings.toml");
        std::fs::write(&file, "[auth]\njwtSecretFile = \"/k\"\n").unwrap();
        let config = Config::load_with_env(Some(&file), Overrides::default(), |name| {
            (name == "TIDINGS_JWT_SECRET").then(|| "from the environment".to_owned())
        })
        .unwrap();
        assert_eq!(
            config.auth.jwt_secret.as_deref(),
            Some("from the environment")
        );
        assert_eq!(config.auth.jwt_secret_file, None);
    }
}
