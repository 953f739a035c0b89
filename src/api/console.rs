//! `GET /` and `GET /console/{file}`: the web console's files, with their security and cache
//! headers.
//!
//! The files, their types and the Content-Security-Policy come from [`crate::console`]; this
//! file only answers requests for them. No token is needed to load the app (it holds no data);
//! everything it shows comes from `/api` and `/ws` with the user's token.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::problem::ApiError;
use crate::console::{self, Asset};

/// The browser revalidates every file (a cheap 304 with the `ETag`), so an upgraded server
/// never runs with a stale script from the cache.
const CACHE_CONTROL: &str = "no-cache";

/// `GET /`: the console's page.
pub(crate) async fn index(headers: HeaderMap) -> Result<Response, ApiError> {
    serve(console::INDEX, &headers)
}

/// `GET /console/{file}`: one of the console's files, 404 problem for any other name.
pub(crate) async fn file(
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&name, &headers)
}

fn serve(name: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let asset = console::find(name)
        .ok_or_else(|| ApiError::NotFound(format!("no console file {name:?}")))?;
    let etag = console::etag(asset.body);
    let mut response = if is_cached(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body_response(asset)
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let policy = console::content_security_policy(host);
    let out = response.headers_mut();
    insert(out, header::ETAG, &etag);
    insert(out, header::CACHE_CONTROL, CACHE_CONTROL);
    insert(out, header::CONTENT_SECURITY_POLICY, &policy);
    insert(out, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    insert(out, header::X_FRAME_OPTIONS, "DENY");
    // The page's address never carries the token (it is in the fragment, which browsers do not
    // send), and no link of the console leaks even the path.
    insert(out, header::REFERRER_POLICY, "no-referrer");
    Ok(response)
}

fn body_response(asset: Asset) -> Response {
    ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
}

/// Whether the browser's copy (`If-None-Match`) is the current one.
fn is_cached(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*")
}

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    // Every value here is built from ASCII this server chose (the policy's host is filtered).
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}
