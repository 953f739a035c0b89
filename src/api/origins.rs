//! Which browser pages may use this server: CORS for `/api` and the `Origin` check on the
//! socket endpoints, both from `http.allowedOrigins`.
//!
//! [`Origins::guard`] looks only at requests that carry an `Origin` header (browsers send one; other
//! clients do not, and pass untouched):
//! - `/api`: a preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin
//!   is answered here, 204 with the origin, the methods, the request headers the API reads and a
//!   max-age; from any other origin it is 403 problem+json with no CORS header. Other requests
//!   are served as usual; an allowed origin's answers carry `Access-Control-Allow-Origin` and
//!   expose the headers a client reads (`x-request-id`, `retry-after`, `location`,
//!   `www-authenticate`). Tokens travel in `Authorization`, never in cookies, so no
//!   credentials mode is offered.
//! - the sockets (`/ws`, the SignalR hub and its negotiation, `/socket.io/`): an origin that is
//!   neither the server's own (the `Origin`'s host and port equal the request's `Host`) nor
//!   allowed gets 403 problem+json before any upgrade or authentication. Browsers do not apply
//!   CORS to WebSockets, so this check is what stops another site's page from opening a socket
//!   with a token it got hold of. Past the check, the same CORS as on `/api` applies, since the
//!   SignalR negotiation and Socket.IO's long-polling are plain HTTP requests.
//!
//! An allowed origin is one listed in `http.allowedOrigins`, or any with `*`. With the list
//! empty (the default) only same-origin pages may use the server, as before CORS existed here.
//! tower-http's `CorsLayer` was not used: it answers every `OPTIONS` with 200 and sends the
//! allowed methods and headers to any origin, where the contract is 204 for allowed origins and
//! no CORS header at all for others; what is needed fits in this file.
//!
//! This module does not authenticate or authorize a request: it only decides which pages may.

use std::future::Future;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, HOST,
    ORIGIN, VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::problem::ApiError;
use crate::config::Config;

/// Methods a cross-origin page may use on `/api`.
const ALLOWED_METHODS: &str = "GET, POST, PATCH, DELETE";
/// Request headers a cross-origin page may send: the token, JSON bodies, its own request id,
/// and the two the SignalR client adds to its negotiation.
const ALLOWED_HEADERS: &str =
    "authorization, content-type, x-request-id, x-requested-with, x-signalr-user-agent";
/// Response headers a cross-origin page may read.
const EXPOSED_HEADERS: &str = "x-request-id, retry-after, location, www-authenticate";
/// How long a browser may reuse a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE_SECS: &str = "600";
/// A preflight's answer differs by these request headers.
const PREFLIGHT_VARY: &str =
    "origin, access-control-request-method, access-control-request-headers";
/// Longest origin quoted back in a refusal.
const MAX_QUOTED_ORIGIN: usize = 100;

/// The origins policy of one server: what [`Origins::guard`] allows, and where.
#[derive(Debug, Clone)]
pub(crate) struct Origins(Arc<Policy>);

#[derive(Debug)]
struct Policy {
    /// `http.allowedOrigins`, normalized (lower case, no default port).
    listed: Vec<String>,
    /// `*` was listed: every origin is allowed.
    any: bool,
    /// The socket endpoints' paths.
    sockets: Vec<String>,
}

/// What part of the server a path belongs to, as far as origins go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    /// `/api` and below: CORS.
    Api,
    /// A socket endpoint: the `Origin` check.
    Socket,
    /// Health, readiness, metrics: neither (no browser page needs them).
    Other,
}

impl Origins {
    /// The policy of `config`: its `http.allowedOrigins` and its socket paths.
    pub(crate) fn new(config: &Config) -> Origins {
        let listed = &config.http.allowed_origins;
        let hub = &config.signalr.path;
        Origins(Arc::new(Policy {
            any: listed.iter().any(|origin| origin == "*"),
            listed: listed.clone(),
            sockets: vec![
                "/ws".into(),
                hub.clone(),
                format!("{hub}{}", super::signalr::NEGOTIATE),
                super::socketio::PATH.into(),
            ],
        }))
    }

    fn surface(&self, path: &str) -> Surface {
        if path == "/api" || path.starts_with("/api/") {
            Surface::Api
        } else if self.0.sockets.iter().any(|socket| socket == path) {
            Surface::Socket
        } else {
            Surface::Other
        }
    }

    /// `origin` is listed (or `*` is).
    fn allows(&self, origin: &str) -> bool {
        self.0.any
            || self
                .0
                .listed
                .iter()
                .any(|listed| listed.eq_ignore_ascii_case(origin))
    }
}

impl Origins {
    /// Edge stage: CORS on `/api`, the `Origin` check on the sockets (see the module doc).
    pub(crate) async fn guard<Fut: Future<Output = Response>>(
        &self,
        request: Request,
        inner: impl FnOnce(Request) -> Fut,
    ) -> Response {
        let Some(origin) = request.headers().get(ORIGIN).cloned() else {
            return inner(request).await;
        };
        match self.surface(request.uri().path()) {
            Surface::Api => self.cors(origin, request, inner).await,
            Surface::Socket => {
                let text = origin.to_str().unwrap_or_default();
                if self.allows(text) || same_origin(text, request.headers()) {
                    // The SignalR negotiation and Socket.IO's polling are plain HTTP requests:
                    // an allowed page needs CORS to read their answers, as on `/api`.
                    self.cors(origin, request, inner).await
                } else {
                    refusal(text, "open a socket on this server").into_response()
                }
            }
            Surface::Other => inner(request).await,
        }
    }

    async fn cors<Fut: Future<Output = Response>>(
        &self,
        origin: HeaderValue,
        request: Request,
        inner: impl FnOnce(Request) -> Fut,
    ) -> Response {
        let text = origin.to_str().unwrap_or_default();
        let allowed = self.allows(text);
        let preflight = request.method() == Method::OPTIONS
            && request
                .headers()
                .contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            return if allowed {
                preflight_answer(origin)
            } else {
                refusal(text, "call this API").into_response()
            };
        }
        let mut response = inner(request).await;
        if allowed {
            let headers = response.headers_mut();
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
            headers.append(VARY, HeaderValue::from_static("origin"));
        }
        response
    }
}

fn preflight_answer(origin: HeaderValue) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOWED_METHODS),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOWED_HEADERS),
    );
    headers.insert(
        ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECS),
    );
    headers.insert(VARY, HeaderValue::from_static(PREFLIGHT_VARY));
    response
}

/// 403 for a page of `origin` that may not `act`.
fn refusal(origin: &str, act: &str) -> ApiError {
    let quoted: String = origin.chars().take(MAX_QUOTED_ORIGIN).collect();
    ApiError::Forbidden(format!(
        "a page of the origin {quoted:?} may not {act}: it is neither this server's own origin \
         nor one of http.allowedOrigins"
    ))
}

/// The page's origin is the server's own: its host and port are the request's `Host` (the
/// scheme cannot be compared, since a proxy may end TLS in front of the server; a default port
/// may be written or not on either side).
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|host| host.to_str().ok()) else {
        return false;
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let without_default = |authority: &str| {
        let authority = authority.to_ascii_lowercase();
        match authority.strip_suffix(default_port) {
            Some(plain) => plain.to_owned(),
            None => authority,
        }
    };
    without_default(authority) == without_default(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_with_host(host: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static(host));
        headers
    }

    #[test]
    fn same_origin_compares_host_and_port_with_default_ports_optional() {
        let local = headers_with_host("127.0.0.1:8787");
        assert!(same_origin("http://127.0.0.1:8787", &local));
        assert!(same_origin("https://127.0.0.1:8787", &local));
        assert!(!same_origin("http://127.0.0.1:8788", &local));
        assert!(!same_origin("http://evil.example", &local));
        assert!(!same_origin("null", &local));
        let public = headers_with_host("Chat.Example");
        assert!(same_origin("https://chat.example", &public));
        assert!(same_origin("https://chat.example:443", &public));
        assert!(same_origin("http://chat.example:80", &public));
        assert!(!same_origin("https://chat.example:8443", &public));
        assert!(!same_origin("https://chat.example.evil", &public));
        assert!(!same_origin("https://chat.example", &HeaderMap::new()));
    }

    #[test]
    fn listed_origins_and_the_wildcard_are_allowed() {
        let mut config = Config::default();
        config.http.allowed_origins = vec!["https://app.example".into()];
        let origins = Origins::new(&config);
        assert!(origins.allows("https://app.example"));
        assert!(origins.allows("HTTPS://APP.EXAMPLE"));
        assert!(!origins.allows("https://app.example.evil"));
        assert!(!origins.allows("http://app.example"));
        config.http.allowed_origins.push("*".into());
        assert!(Origins::new(&config).allows("https://anyone.example"));
        assert!(!Origins::new(&Config::default()).allows("https://app.example"));
    }

    #[test]
    fn paths_fall_into_api_socket_or_other() {
        let origins = Origins::new(&Config::default());
        assert_eq!(origins.surface("/api/conversations"), Surface::Api);
        assert_eq!(origins.surface("/api"), Surface::Api);
        assert_eq!(origins.surface("/apis"), Surface::Other);
        for socket in ["/ws", "/chathub", "/chathub/negotiate", "/socket.io/"] {
            assert_eq!(origins.surface(socket), Surface::Socket, "{socket}");
        }
        assert_eq!(origins.surface("/healthz"), Surface::Other);
    }
}
