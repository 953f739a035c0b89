//! Tokens from an identity provider, end to end over HTTP: RS256, ES256 and EdDSA tokens checked
//! with keys from a JWKS served by a local HTTP server (or PEM files), `iss`/`aud` checked when
//! configured and any `aud` accepted when not, custom claim names, scopes as an array, an
//! unknown `kid` fetched again, and refusals in plain words. The key pairs are test fixtures
//! (tests/fixtures/auth/); the server runs in the test's process.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use common::server::{serve, wait_ready, Server, TestServer};

const ISSUER: &str = "https://idp.example/";
const AUDIENCE: &str = "chat";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/auth")
        .join(name)
}

fn private_key(name: &str, alg: Algorithm) -> EncodingKey {
    let pem = std::fs::read(fixture(name)).expect("a fixture key");
    match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        other => panic!("no fixture for {other:?}"),
    }
    .expect("a private key")
}

/// A signing key of the "identity provider", and its public half as a JWK.
struct IdpKey {
    alg: Algorithm,
    kid: String,
    private: EncodingKey,
}

impl IdpKey {
    fn new(file: &str, alg: Algorithm, kid: &str) -> IdpKey {
        IdpKey {
            alg,
            kid: kid.into(),
            private: private_key(file, alg),
        }
    }

    fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.private, self.alg).expect("a public JWK");
        jwk.common.key_id = Some(self.kid.clone());
        serde_json::to_value(jwk).expect("JSON")
    }

    /// A token signed with this key naming its kid, with `claims` over valid defaults
    /// (`sub`, `exp` in ten minutes, the configured `iss` and `aud`); a `null` removes one.
    fn mint(&self, claims: Value) -> String {
        self.mint_as(&self.kid, claims)
    }

    fn mint_as(&self, kid: &str, claims: Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.into());
        let mut all = json!({"sub": "ann", "exp": now() + 600, "iss": ISSUER, "aud": AUDIENCE});
        for (name, value) in claims.as_object().expect("an object") {
            if value.is_null() {
                all.as_object_mut().expect("an object").remove(name);
            } else {
                all[name] = value.clone();
            }
        }
        jsonwebtoken::encode(&header, &all, &self.private).expect("sign")
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// The identity provider's JWKS endpoint: a local HTTP server whose document the test changes,
/// counting fetches; `None` answers 503.
struct JwksEndpoint {
    url: String,
    document: Arc<Mutex<Option<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksEndpoint {
    async fn start(keys: &[&IdpKey]) -> JwksEndpoint {
        let document = Arc::new(Mutex::new(Some(jwks_of(keys))));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (shared, counted) = (Arc::clone(&document), Arc::clone(&fetches));
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let (shared, counted) = (Arc::clone(&shared), Arc::clone(&counted));
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    match shared.lock().expect("not poisoned").clone() {
                        Some(doc) => (StatusCode::OK, doc.to_string()),
                        None => (StatusCode::SERVICE_UNAVAILABLE, String::new()),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("an address")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        JwksEndpoint {
            url,
            document,
            fetches,
        }
    }

    fn publish(&self, keys: &[&IdpKey]) {
        *self.document.lock().expect("not poisoned") = Some(jwks_of(keys));
    }

    fn go_down(&self) {
        *self.document.lock().expect("not poisoned") = None;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn jwks_of(keys: &[&IdpKey]) -> Value {
    json!({"keys": keys.iter().map(|key| key.jwk()).collect::<Vec<_>>()})
}

/// A server on a fresh data directory with `[auth]` set to `auth`.
async fn server_with(auth: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = start(dir.path(), auth);
    wait_ready(&server).await;
    (server, dir)
}

fn start(dir: &Path, auth: &str) -> Server {
    let config = dir.join("tidings.toml");
    std::fs::write(&config, format!("[auth]\n{auth}\n")).expect("write the configuration");
    let data = dir.join("data");
    let config = config.to_str().expect("UTF-8");
    serve(&data, &["--listen", "127.0.0.1:0", "--config", config])
}

/// `GET /api/me` with the token: the status and the JSON body.
async fn me(server: &Server, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/api/me", server.base()))
        .bearer_auth(token)
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// The `detail` of a 401 answer to the token.
async fn refused(server: &Server, token: &str) -> String {
    let (status, problem) = me(server, token).await;
    assert_eq!(status, 401, "{problem}");
    let detail = problem["detail"].as_str().expect("a detail").to_owned();
    for internal in [
        "InvalidSignature",
        "InvalidToken",
        "InvalidAudience",
        "expected u64",
    ] {
        assert!(!detail.contains(internal), "{detail}");
    }
    detail
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_from_a_jwks_url_are_accepted_and_wrong_ones_refused() {
    let rsa = IdpKey::new("rs256-private.pem", Algorithm::RS256, "rsa-1");
    let ec = IdpKey::new("es256-private.pem", Algorithm::ES256, "ec-1");
    let ed = IdpKey::new("eddsa-private.pem", Algorithm::EdDSA, "ed-1");
    let jwks = JwksEndpoint::start(&[&rsa, &ec, &ed]).await;
    let (server, _dir) = server_with(&format!(
        "jwks = \"{}\"\nissuer = \"{ISSUER}\"\naudience = [\"{AUDIENCE}\", \"api://chat\"]",
        jwks.url
    ))
    .await;

    for key in [&rsa, &ec, &ed] {
        let token = key.mint(json!({"name": "Ann", "scope": ["events:publish", "chat"]}));
        let (status, body) = me(&server, &token).await;
        assert_eq!(status, 200, "{:?}: {body}", key.alg);
        assert_eq!(
            body,
            json!({"userId": "ann", "name": "Ann", "scopes": ["events:publish", "chat"]})
        );
    }
    let second_audience = rsa.mint(json!({"aud": ["other", "api://chat"]}));
    assert_eq!(me(&server, &second_audience).await.0, 200);

    let wrong_audience = rsa.mint(json!({"aud": "api://billing"}));
    assert_eq!(
        refused(&server, &wrong_audience).await,
        "the token was issued for another audience (aud \"api://billing\"; this server accepts \
         \"chat\" or \"api://chat\")"
    );
    let wrong_issuer = ec.mint(json!({"iss": "https://evil.example/"}));
    assert_eq!(
        refused(&server, &wrong_issuer).await,
        "the token was issued by another issuer (iss \"https://evil.example/\"; this server \
         accepts \"https://idp.example/\")"
    );
    let no_issuer = ed.mint(json!({"iss": null}));
    assert!(refused(&server, &no_issuer).await.contains("(iss none;"));
    let other = IdpKey::new("rs256-rotated-private.pem", Algorithm::RS256, "rsa-1");
    assert_eq!(
        refused(&server, &other.mint(json!({}))).await,
        "the token's signature does not match the server's key"
    );
    let expired = rsa.mint(json!({"exp": now() - 600}));
    assert_eq!(
        refused(&server, &expired).await,
        "the token has expired; get a new one"
    );
    let not_yet = rsa.mint(json!({"nbf": now() + 600}));
    assert!(refused(&server, &not_yet)
        .await
        .starts_with("the token is not valid yet"));
    let text_exp = rsa.mint(json!({"exp": "tomorrow"}));
    assert_eq!(
        refused(&server, &text_exp).await,
        "the token's exp claim must be a number of seconds since 1970-01-01 UTC"
    );
    assert_eq!(
        refused(&server, "garbage").await,
        "the token is not a JWT (expected three dot-separated parts)"
    );
}

#[tokio::test]
async fn an_unknown_kid_fetches_the_jwks_again_and_is_accepted_once_published() {
    let first = IdpKey::new("rs256-private.pem", Algorithm::RS256, "2026-11");
    let rotated = IdpKey::new("rs256-rotated-private.pem", Algorithm::RS256, "2026-12");
    let jwks = JwksEndpoint::start(&[&first]).await;
    let (server, _dir) = server_with(&format!(
        "jwks = \"{}\"\njwksMinRefreshMs = 0\naudience = \"{AUDIENCE}\"",
        jwks.url
    ))
    .await;
    assert_eq!(jwks.fetches(), 1, "fetched once at start");
    assert_eq!(me(&server, &first.mint(json!({}))).await.0, 200);
    assert_eq!(jwks.fetches(), 1, "a known kid fetches nothing");

    let early = rotated.mint(json!({}));
    assert_eq!(
        refused(&server, &early).await,
        "the token names a key the server does not have (kid \"2026-12\"); the server's keys \
         come from auth.jwks and auth.publicKeys"
    );
    assert_eq!(jwks.fetches(), 2, "the unknown kid fetched the JWKS again");

    jwks.publish(&[&first, &rotated]);
    assert_eq!(me(&server, &early).await.0, 200, "accepted at once");
    assert_eq!(jwks.fetches(), 3);

    // The provider goes down: a failed fetch keeps the keys fetched before.
    jwks.go_down();
    let unknown = rotated.mint_as("2027-01", json!({}));
    assert!(refused(&server, &unknown).await.contains("kid \"2027-01\""));
    assert_eq!(jwks.fetches(), 4);
    assert_eq!(me(&server, &first.mint(json!({}))).await.0, 200);
    assert_eq!(me(&server, &rotated.mint(json!({}))).await.0, 200);
}

/// A token accepted before (and so remembered by the server) is refused as soon as a fetch of
/// the JWKS no longer has its key: withdrawing a key stops its tokens at once.
#[tokio::test]
async fn a_key_withdrawn_from_the_jwks_stops_its_tokens_once_fetched_again() {
    let withdrawn = IdpKey::new("rs256-private.pem", Algorithm::RS256, "2026-11");
    let kept = IdpKey::new("rs256-rotated-private.pem", Algorithm::RS256, "2026-12");
    let jwks = JwksEndpoint::start(&[&withdrawn, &kept]).await;
    let (server, _dir) = server_with(&format!(
        "jwks = \"{}\"\njwksMinRefreshMs = 0\naudience = \"{AUDIENCE}\"",
        jwks.url
    ))
    .await;
    let old = withdrawn.mint(json!({}));
    let new = kept.mint(json!({}));
    for _ in 0..3 {
        assert_eq!(me(&server, &old).await.0, 200);
        assert_eq!(me(&server, &new).await.0, 200);
    }

    jwks.publish(&[&kept]);
    // A token naming an unknown key makes the server fetch the JWKS again.
    let unknown = kept.mint_as("2027-01", json!({}));
    assert!(refused(&server, &unknown).await.contains("kid \"2027-01\""));
    assert_eq!(jwks.fetches(), 2);
    assert!(refused(&server, &old).await.contains("kid \"2026-11\""));
    assert_eq!(
        me(&server, &new).await.0,
        200,
        "the kept key's tokens still pass"
    );
}

#[tokio::test]
async fn unknown_kids_fetch_at_most_once_per_min_refresh_interval() {
    let known = IdpKey::new("es256-private.pem", Algorithm::ES256, "ec-1");
    let jwks = JwksEndpoint::start(&[&known]).await;
    let (server, _dir) = server_with(&format!(
        "jwks = \"{}\"\njwksMinRefreshMs = 600000",
        jwks.url
    ))
    .await;
    for kid in ["a", "b", "c", "d"] {
        let token = known.mint_as(kid, json!({}));
        assert!(refused(&server, &token)
            .await
            .contains(&format!("kid \"{kid}\"")));
    }
    assert_eq!(
        jwks.fetches(),
        1,
        "only the fetch at start, within the interval"
    );
}

#[tokio::test]
async fn pem_keys_custom_claim_names_and_any_audience_without_a_configured_one() {
    let key = IdpKey::new("rs256-private.pem", Algorithm::RS256, "ignored");
    let ed = IdpKey::new("eddsa-private.pem", Algorithm::EdDSA, "ignored");
    let (server, _dir) = server_with(&format!(
        "publicKeys = [\"{}\", \"{}\"]\n[auth.claims]\nuserId = \"oid\"\nname = \
         \"preferred_username\"\nscope = \"scp\"",
        fixture("rs256-public.pem").display(),
        fixture("eddsa-public.pem").display(),
    ))
    .await;
    // As an ASP.NET or Entra ID access token: an aud for some API, scopes in an array.
    let token = key.mint(json!({
        "sub": "pairwise-subject", "oid": "u-42", "preferred_username": "ann@example.com",
        "scp": ["chat.read", "events:publish"], "aud": "api://some-other-api",
        "iss": "https://login.example/tenant/v2.0",
    }));
    let (status, body) = me(&server, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"userId": "u-42", "name": "ann@example.com",
               "scopes": ["chat.read", "events:publish"]})
    );
    let (status, body) = me(&server, &ed.mint(json!({"oid": "u-7", "scp": "a b"}))).await;
    assert_eq!(
        (status, &body["scopes"]),
        (200, &json!(["a", "b"])),
        "{body}"
    );
    assert_eq!(
        refused(&server, &key.mint(json!({}))).await,
        "the token has no oid claim (the user id; auth.claims.userId names this claim)"
    );
    let es = IdpKey::new("es256-private.pem", Algorithm::ES256, "ec-1");
    let detail = refused(&server, &es.mint(json!({"oid": "u-1"}))).await;
    assert!(
        detail.starts_with("the token is signed with ES256, which this server does not accept"),
        "{detail}"
    );
}

/// The `tidings serve` binary with `[auth]` set to `auth`, run to its end: its exit code and
/// stderr (a start-up error is the process's, so this uses the binary).
fn serve_binary(auth: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("tidings.toml");
    std::fs::write(&config, format!("[auth]\n{auth}\n")).expect("write the configuration");
    let config = config.to_str().expect("UTF-8");
    let output = common::server::command(
        &dir.path().join("data"),
        &["--listen", "127.0.0.1:0", "--config", config],
    )
    .output()
    .expect("run tidings serve");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_unreachable_jwks_or_a_bad_key_file_stops_the_start_with_a_clear_error() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = format!("http://{}/jwks.json", unused.local_addr().expect("address"));
    drop(unused);
    let (code, stderr) = serve_binary(&format!("jwks = \"{closed}\""));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("error: auth.jwks {closed}: cannot fetch it:")),
        "{stderr}"
    );

    let private = fixture("rs256-private.pem");
    let (code, stderr) = serve_binary(&format!("publicKeys = [\"{}\"]", private.display()));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("error: auth.publicKeys") && stderr.contains("holds a private key"),
        "{stderr}"
    );
}
