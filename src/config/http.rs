//! The `[http]` section: limits of the HTTP connections and of reading their requests, as the
//! file writes them (sizes in bytes, durations in milliseconds) and as the connection layer
//! ([`crate::api::connections`]) and the request limits ([`crate::api::http_limits`]) use them.
//!
//! This file owns the section's defaults, its file keys and its range checks (including the
//! spelling of `http.allowedOrigins`, each normalized to how browsers send an `Origin`);
//! precedence and the other sections are in `config.rs`. Who is let in by an origin is
//! [`crate::api::origins`]' business.

use std::time::Duration;

use serde::Deserialize;

use super::{bad_value, set, ConfigError};

/// Smallest `http.maxHeaderBytes`: a request line, a `Host` and a bearer token must fit.
const MIN_HEADER_BYTES: usize = 1024;
/// Largest `http.maxHeaderBytes` and `http.maxUriBytes`: hyper refuses longer URIs itself
/// (with an empty body), and a larger head buffer per connection is memory an idle client holds.
const MAX_HEAD_BYTES: usize = 65_534;

/// The `[http]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Most open HTTP connections (WebSocket sessions included); 0 = what the open-file limit
    /// allows (`http.maxConnections`).
    pub max_connections: usize,
    /// How long a client has to send a request head, on a new connection and between the
    /// requests of a kept-alive one (`http.headerReadTimeoutMs`).
    pub header_read_timeout: Duration,
    /// How long a request's body may take to arrive, from its head on
    /// (`http.bodyReadTimeoutMs`).
    pub body_read_timeout: Duration,
    /// Largest request head (request line and header fields) answered; larger ones get 431
    /// (`http.maxHeaderBytes`).
    pub max_header_bytes: usize,
    /// Longest request target (path and query) answered; longer ones get 414
    /// (`http.maxUriBytes`).
    pub max_uri_bytes: usize,
    /// Browser origins allowed to call `/api` (CORS) and to open the socket endpoints, as
    /// `scheme://host[:port]` without a default port, or `*` for any; empty = same-origin only
    /// (`http.allowedOrigins`).
    pub allowed_origins: Vec<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_connections: 0,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
            max_uri_bytes: 8 * 1024,
            allowed_origins: Vec::new(),
        }
    }
}

impl HttpSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let timings = [
            ("http.headerReadTimeoutMs", self.header_read_timeout),
            ("http.bodyReadTimeoutMs", self.body_read_timeout),
        ];
        for (key, value) in timings {
            if value.is_zero() {
                return Err(bad_value(
                    key,
                    0,
                    "a positive number of milliseconds".into(),
                ));
            }
        }
        if !(MIN_HEADER_BYTES..=MAX_HEAD_BYTES).contains(&self.max_header_bytes) {
            return Err(bad_value(
                "http.maxHeaderBytes",
                self.max_header_bytes,
                format!("between {MIN_HEADER_BYTES} and {MAX_HEAD_BYTES}"),
            ));
        }
        if self.max_uri_bytes == 0 || self.max_uri_bytes > self.max_header_bytes {
            return Err(bad_value(
                "http.maxUriBytes",
                self.max_uri_bytes,
                format!(
                    "between 1 and http.maxHeaderBytes ({})",
                    self.max_header_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// `[http]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileHttp {
    max_connections: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    max_header_bytes: Option<usize>,
    max_uri_bytes: Option<usize>,
    allowed_origins: Option<Vec<String>>,
}

impl FileHttp {
    /// Copies the keys the file sets; an `allowedOrigins` entry that is no origin is an error.
    pub(super) fn apply_to(self, http: &mut HttpSettings) -> Result<(), ConfigError> {
        let millis = |ms: Option<u64>| ms.map(Duration::from_millis);
        set(&mut http.max_connections, self.max_connections);
        set(
            &mut http.header_read_timeout,
            millis(self.header_read_timeout_ms),
        );
        set(
            &mut http.body_read_timeout,
            millis(self.body_read_timeout_ms),
        );
        set(&mut http.max_header_bytes, self.max_header_bytes);
        set(&mut http.max_uri_bytes, self.max_uri_bytes);
        if let Some(origins) = self.allowed_origins {
            http.allowed_origins = origins
                .iter()
                .map(|origin| normalize_origin(origin))
                .collect::<Result<_, _>>()?;
        }
        Ok(())
    }
}

/// `origin` as a browser's `Origin` header spells it: lower-case scheme and host, no default
/// port, no path; `*` stays `*`. Only `http` and `https` origins can call an HTTP API.
pub(crate) fn normalize_origin(origin: &str) -> Result<String, ConfigError> {
    let refuse = || {
        bad_value(
            "http.allowedOrigins",
            format!("{origin:?}"),
            "origins such as \"https://app.example\" or \"http://localhost:3000\" (scheme, \
             host and port only, no path), or \"*\" for any origin"
                .into(),
        )
    };
    if origin == "*" {
        return Ok(origin.to_owned());
    }
    let lower = origin.trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = lower.split_once("://").ok_or_else(refuse)?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return Err(refuse()),
    };
    let plain_authority = !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    if !plain_authority {
        return Err(refuse());
    }
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    Ok(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, Overrides};

    #[test]
    fn the_http_section_is_read_and_checked() {
        let text = "[http]\nmaxConnections = 300\nheaderReadTimeoutMs = 500\n\
                    bodyReadTimeoutMs = 700\nmaxHeaderBytes = 4096\nmaxUriBytes = 2048\n";
        let config = Config::from_toml(text, Path::new("t.toml")).unwrap();
        assert_eq!(config.http.max_connections, 300);
        assert_eq!(config.http.header_read_timeout.as_millis(), 500);
        assert_eq!(config.http.body_read_timeout.as_millis(), 700);
        assert_eq!(config.http.max_header_bytes, 4096);
        assert_eq!(config.http.max_uri_bytes, 2048);
        assert!(
            config.http.allowed_origins.is_empty(),
            "same-origin by default"
        );
        for bad in [
            "headerReadTimeoutMs = 0",
            "bodyReadTimeoutMs = 0",
            "maxHeaderBytes = 100",
            "maxHeaderBytes = 100000",
            "maxUriBytes = 0",
            "maxUriBytes = 20000",
        ] {
            let error = Config::from_toml(&format!("[http]\n{bad}\n"), Path::new("t.toml"))
                .expect_err(bad)
                .to_string();
            assert!(error.contains("http."), "{bad}: {error}");
        }
    }

    #[test]
    fn allowed_origins_are_normalized_as_browsers_send_them_and_checked() {
        let text = "[http]\nallowedOrigins = [\"HTTPS://App.Example:443/\", \
                    \"http://localhost:3000\", \"*\"]\n";
        let config = Config::from_toml(text, Path::new("t.toml")).unwrap();
        assert_eq!(
            config.http.allowed_origins,
            ["https://app.example", "http://localhost:3000", "*"]
        );
        for bad in [
            "app.example",
            "ftp://app.example",
            "https://app.example/path",
            "https://",
            "https://user@app.example",
        ] {
            let text = format!("[http]\nallowedOrigins = [{bad:?}]\n");
            let error = Config::from_toml(&text, Path::new("t.toml"))
                .expect_err(bad)
                .to_string();
            assert!(error.contains("http.allowedOrigins"), "{bad}: {error}");
        }
    }

    #[test]
    fn max_connections_comes_from_the_environment_too() {
        let env = |name: &str| (name == "TIDINGS_HTTP_MAX_CONNECTIONS").then(|| "77".to_owned());
        let config = Config::load_with_env(None, Overrides::default(), env).unwrap();
        assert_eq!(config.http.max_connections, 77);
        let bad = |name: &str| (name == "TIDINGS_HTTP_MAX_CONNECTIONS").then(|| "x".to_owned());
        let error = Config::load_with_env(None, Overrides::default(), bad).unwrap_err();
        assert!(error.to_string().contains("TIDINGS_HTTP_MAX_CONNECTIONS"));
    }
}
