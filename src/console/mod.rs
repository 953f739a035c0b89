//! The web console's files, compiled into the binary, and the security headers they are served
//! with.
//!
//! Owns the static assets in `assets/` (plain HTML, CSS and JavaScript modules: no build step,
//! no CDN, so a fresh clone and an offline box serve the same app), their content types and
//! validators (`ETag`), and the Content-Security-Policy of the page. It does not route or answer
//! requests: `api/console.rs` does, with axum, which stays in `api/`. What the app does in the
//! browser is in `docs/console.md`.

use sha2::{Digest, Sha256};

/// One file of the console.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asset {
    /// Its name under `/console/` (`index.html` is also served at `/`).
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes, as compiled in.
    pub body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Every file of the console, compiled in.
const ASSETS: &[Asset] = &[
    asset("index.html", HTML, include_bytes!("assets/index.html")),
    asset("style.css", CSS, include_bytes!("assets/style.css")),
    asset("icon.svg", SVG, include_bytes!("assets/icon.svg")),
    asset("app.js", JS, include_bytes!("assets/app.js")),
    asset("api.js", JS, include_bytes!("assets/api.js")),
    asset("dom.js", JS, include_bytes!("assets/dom.js")),
    asset("socket.js", JS, include_bytes!("assets/socket.js")),
    asset("chat.js", JS, include_bytes!("assets/chat.js")),
    asset("messages.js", JS, include_bytes!("assets/messages.js")),
    asset("admin.js", JS, include_bytes!("assets/admin.js")),
];

const fn asset(name: &'static str, content_type: &'static str, body: &'static [u8]) -> Asset {
    Asset {
        name,
        content_type,
        body,
    }
}

/// The page served at `/`.
pub(crate) const INDEX: &str = "index.html";

/// The console file called `name`, if there is one.
pub(crate) fn find(name: &str) -> Option<Asset> {
    ASSETS.iter().find(|asset| asset.name == name).copied()
}

/// A strong `ETag` for `body`: a short hash of its bytes, so a browser revalidates cheaply and
/// an upgraded binary's files are never served stale from its cache.
pub(crate) fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// The page's Content-Security-Policy: everything from this server only, no inline script or
/// style, no framing, no plugins. Sockets may go to the same host over `ws:` or `wss:`
/// (`'self'` covers them in current browsers, older ones need the scheme spelled out), named
/// from the request's `Host` when it is a plain host name or address; anything else in it is
/// left out rather than copied into a header.
pub(crate) fn content_security_policy(host: Option<&str>) -> String {
    let sockets = host
        .filter(|host| is_plain_host(host))
        .map(|host| format!(" ws://{host} wss://{host}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'{sockets}; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    )
}

/// A host name or address with an optional port: letters, digits, `.`, `-`, `:` and the
/// brackets of an IPv6 address; nothing that could end a CSP directive.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_asset_is_found_by_name_and_the_index_exists() {
        for asset in ASSETS {
            assert_eq!(find(asset.name).map(|a| a.name), Some(asset.name));
            assert!(!asset.body.is_empty(), "{} is empty", asset.name);
        }
        assert!(find(INDEX).is_some());
        assert!(find("../Cargo.toml").is_none());
    }

    #[test]
    fn the_page_loads_no_inline_script_and_only_modules_it_ships() {
        let page = std::str::from_utf8(find(INDEX).map(|a| a.body).unwrap_or_default()).unwrap();
        assert!(!page.contains("<script>"), "inline script in index.html");
        assert!(!page.contains("style="), "inline style in index.html");
        for source in page.split("src=\"/console/").skip(1) {
            let name = source.split('"').next().unwrap();
            assert!(find(name).is_some(), "index.html loads a missing {name}");
        }
    }

    #[test]
    fn the_policy_names_the_sockets_of_a_plain_host_only() {
        let policy = content_security_policy(Some("127.0.0.1:8787"));
        assert!(policy.contains("connect-src 'self' ws://127.0.0.1:8787 wss://127.0.0.1:8787;"));
        assert!(policy.contains("default-src 'self';"));
        assert!(!policy.contains("unsafe-inline"));
        let hostile = content_security_policy(Some("evil; script-src *"));
        assert!(hostile.contains("connect-src 'self';"), "{hostile}");
        assert!(!hostile.contains("evil"));
    }

    #[test]
    fn etags_are_quoted_and_follow_the_bytes() {
        assert_eq!(etag(b"a"), etag(b"a"));
        assert_ne!(etag(b"a"), etag(b"b"));
        assert!(etag(b"a").starts_with('"') && etag(b"a").ends_with('"'));
    }
}
