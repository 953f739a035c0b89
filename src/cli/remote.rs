//! The admin commands' HTTP client: JSON requests to a running server with a bearer token, and
//! its problem+json answers turned into [`RemoteError::Problem`] (status, title, detail).
//!
//! Owns the transport only: the base URL, the token ([`Credentials`]), timeouts, and mapping
//! answers to typed results. Which routes a command calls, and how their answers become the
//! command's output, is in the command's own file. Every request is bounded in time: connecting
//! by [`CONNECT_TIMEOUT`], a whole request by [`REQUEST_TIMEOUT`] beyond any long-poll wait.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::problem::Problem;
use crate::auth::{Authenticator, ADMIN_SCOPE};

/// Longest wait for a connection to the server.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for an answer, on top of the time a long poll asks the server to wait.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a token minted for one request is valid (minted again for every request, so a
/// `tail --follow` never outlives its token).
const MINTED_TOKEN_TTL: Duration = Duration::from_secs(300);
/// The user id of minted tokens, as the server's logs will show it.
pub(crate) const MINTED_TOKEN_USER: &str = "tidings-cli";
/// Most characters of a non-problem error body quoted in an error message.
const QUOTED_BODY_CHARS: usize = 200;

/// Why a request to the server did not give the expected answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RemoteError {
    /// The server refused the request with a problem (RFC 9457), or an error status without one.
    #[error("{detail} ({status} {title}){}", hint(*status))]
    Problem {
        /// The HTTP status.
        status: u16,
        /// The problem's type URI (`urn:tidings:problem:…`; empty without a problem body).
        kind: String,
        /// The problem's short summary.
        title: String,
        /// What happened, for a human.
        detail: String,
    },
    /// No answer: the server could not be reached, or the connection failed or timed out.
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable {
        /// The request's URL.
        url: String,
        /// The transport's error and its causes.
        reason: String,
    },
    /// A success status whose body is not the JSON the command expects.
    #[error("unexpected answer from {url}: {reason}")]
    UnexpectedAnswer {
        /// The request's URL.
        url: String,
        /// What did not fit.
        reason: String,
    },
    /// The certificate file a local server named cannot be read.
    #[error("cannot read the server's certificate {path}: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `--server` is not an `http://` or `https://` URL.
    #[error("--server {0:?} is not an http:// or https:// URL (e.g. http://127.0.0.1:8787)")]
    BadUrl(String),
}

impl RemoteError {
    /// The HTTP status of a refusal, if the server answered one.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            RemoteError::Problem { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What to do about a refusal the caller can fix on its side.
fn hint(status: u16) -> &'static str {
    match status {
        401 => {
            "; the token is missing, expired or not signed with the server's secret: pass \
             --token, or the server's --data-dir or --config so that one is signed for you"
        }
        403 => "; mint a token with the needed scope: tidings token USER --scope admin",
        _ => "",
    }
}

/// `builder` trusting exactly the certificates of the PEM file at `path` ([`super::pinned`]).
fn trust_server_certificate(
    builder: reqwest::ClientBuilder,
    path: &Path,
) -> Result<reqwest::ClientBuilder, RemoteError> {
    let config =
        super::pinned::pinned_client_config(path).map_err(|e| RemoteError::Certificate {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(builder.use_preconfigured_tls(config))
}

/// The token each request carries.
#[derive(Debug, Clone)]
pub(crate) enum Credentials {
    /// A token given with `--token` / `TIDINGS_TOKEN`, sent as it is.
    Token(String),
    /// The server's secret: a fresh token with scope `admin` is signed for every request.
    Minted(Box<Authenticator>),
}

impl Credentials {
    fn token(&self) -> String {
        match self {
            Credentials::Token(token) => token.clone(),
            Credentials::Minted(authenticator) => authenticator.issue(
                MINTED_TOKEN_USER,
                None,
                &[ADMIN_SCOPE.to_owned()],
                MINTED_TOKEN_TTL,
            ),
        }
    }
}

/// A client of one server.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    base: String,
    client: reqwest::Client,
    credentials: Credentials,
}

impl Remote {
    /// The server's address, `http://HOST:PORT`.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// A client of the server at `base` (`http://HOST:PORT`, a trailing `/` is ignored).
    /// An `https` server is trusted as the system trusts it (`SSL_CERT_FILE` adds a private
    /// authority), or, with `certificate` (the file a local server named in its address file),
    /// only when it presents that certificate.
    pub(crate) fn new(
        base: &str,
        credentials: Credentials,
        certificate: Option<&Path>,
    ) -> Result<Remote, RemoteError> {
        let base = base.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(RemoteError::BadUrl(base.to_owned()));
        }
        let mut builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
        if let Some(path) = certificate {
            builder = trust_server_certificate(builder, path)?;
        }
        let client = builder.build().map_err(|e| RemoteError::Unreachable {
            url: base.to_owned(),
            reason: causes(&e),
        })?;
        Ok(Remote {
            base: base.to_owned(),
            client,
            credentials,
        })
    }

    /// `GET path` → its JSON answer.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, RemoteError> {
        self.json(self.request(Method::GET, path, Duration::ZERO))
            .await
    }

    /// `GET path` of a long poll that asks the server to wait up to `wait`.
    pub(crate) async fn get_waiting<T: DeserializeOwned>(
        &self,
        path: &str,
        wait: Duration,
    ) -> Result<T, RemoteError> {
        self.json(self.request(Method::GET, path, wait)).await
    }

    /// `POST path` with a JSON body → its JSON answer.
    pub(crate) async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, RemoteError> {
        let request = self.request(Method::POST, path, Duration::ZERO).json(body);
        self.json(request).await
    }

    /// `DELETE path`, expecting an answer without a body (204).
    pub(crate) async fn delete(&self, path: &str) -> Result<(), RemoteError> {
        let request = self.request(Method::DELETE, path, Duration::ZERO);
        self.send(request).await.map(drop)
    }

    fn request(&self, method: Method, path: &str, wait: Duration) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.credentials.token())
            .timeout(REQUEST_TIMEOUT + wait)
    }

    /// Sends the request; the body of a success, or the refusal as an error.
    async fn send(&self, request: RequestBuilder) -> Result<(String, Vec<u8>), RemoteError> {
        let (client, request) = request.build_split();
        let request = request.map_err(|e| RemoteError::BadUrl(causes(&e)))?;
        let url = request.url().to_string();
        // The URL is named once, by this error, not again by reqwest's.
        let unreachable = |e: reqwest::Error| RemoteError::Unreachable {
            url: url.clone(),
            reason: causes(&e.without_url()),
        };
        let response = client.execute(request).await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?.to_vec();
        if status.is_success() {
            Ok((url, body))
        } else {
            Err(refusal(status, &body))
        }
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, RemoteError> {
        let (url, body) = self.send(request).await?;
        serde_json::from_slice(&body).map_err(|e| RemoteError::UnexpectedAnswer {
            url,
            reason: e.to_string(),
        })
    }
}

/// An error status as [`RemoteError::Problem`]: its problem+json body, or (from something that
/// is not a Tidings server, e.g. a proxy) the status's reason and the start of the body.
fn refusal(status: StatusCode, body: &[u8]) -> RemoteError {
    if let Ok(problem) = serde_json::from_slice::<Problem>(body) {
        return RemoteError::Problem {
            status: status.as_u16(),
            kind: problem.kind,
            title: problem.title,
            detail: problem.detail,
        };
    }
    let text = String::from_utf8_lossy(body);
    let quoted: String = text.trim().chars().take(QUOTED_BODY_CHARS).collect();
    RemoteError::Problem {
        status: status.as_u16(),
        kind: String::new(),
        title: status.canonical_reason().unwrap_or("error").to_owned(),
        detail: if quoted.is_empty() {
            "the server gave no details".to_owned()
        } else {
            quoted
        },
    }
}

/// An error with its causes, `outer: inner: …` (reqwest's own message alone says little).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_become_typed_errors_with_their_detail() {
        let body = br#"{"type":"urn:tidings:problem:not-found","title":"Not found","status":404,"detail":"topic \"x\" does not exist"}"#;
        let error = refusal(StatusCode::NOT_FOUND, body);
        assert_eq!(error.status(), Some(404));
        assert_eq!(
            error.to_string(),
            "topic \"x\" does not exist (404 Not found)"
        );
        let forbidden = refusal(
            StatusCode::FORBIDDEN,
            br#"{"type":"t","title":"Forbidden","status":403,"detail":"this needs the \"admin\" scope"}"#,
        );
        assert!(
            forbidden.to_string().contains("--scope admin"),
            "{forbidden}"
        );
    }

    #[test]
    fn other_error_bodies_are_quoted() {
        let error = refusal(StatusCode::BAD_GATEWAY, b"  upstream down \n");
        assert_eq!(error.to_string(), "upstream down (502 Bad Gateway)");
        let empty = refusal(StatusCode::BAD_GATEWAY, b"");
        assert!(empty.to_string().starts_with("the server gave no details"));
    }

    #[test]
    fn only_http_urls_are_servers() {
        assert!(matches!(
            Remote::new("localhost:8787", Credentials::Token("t".into()), None),
            Err(RemoteError::BadUrl(_))
        ));
        let remote =
            Remote::new("http://127.0.0.1:1/", Credentials::Token("t".into()), None).unwrap();
        assert_eq!(remote.base, "http://127.0.0.1:1");
    }
}
