//! Browsers and observability over real HTTP and WebSocket (issue 17): CORS for `/api` from
//! `http.allowedOrigins`, the `Origin` check on the socket endpoints, request ids in the
//! `x-request-id` header and in problem bodies, the access log's lines (requests, sessions,
//! refused tokens), and the start-up banner.
//!
//! The servers run in this process; the access log is read from a JSON tracing subscriber that
//! this test binary installs once for all its tests (each test finds its own lines by request
//! id or user name). The banner test runs the binary and reads its stderr, since the banner is
//! what the process prints, up to the last line it writes on exit.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::chat::{chat_server, problem, Chat};
use common::server::{command, start, TestServer};
use common::ws::{connect, ws_server, ws_url, DEADLINE};
use reqwest::Method;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, http::HeaderValue};

const APP: &str = "https://app.example";
const ALLOW_APP: &str = "[http]\nallowedOrigins = [\"https://app.example\"]\n";

/// `OPTIONS path` as a browser's preflight for a POST with a token and a JSON body.
async fn preflight(chat: &Chat, path: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, format!("{}{path}", chat.server.base()))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight")
}

/// `GET /api/me` as `user` from a page of `origin`.
async fn me_from(chat: &Chat, user: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}/api/me", chat.server.base()))
        .bearer_auth(chat.token(user))
        .header("origin", origin)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_passes_and_from_another_fails() {
    let chat = ws_server(ALLOW_APP).await;
    let allowed = preflight(&chat, "/api/conversations/c1/messages", APP).await;
    assert_eq!(allowed.status(), 204);
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], APP);
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("POST") && methods.contains("PATCH"),
        "{methods}"
    );
    let request_headers = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(
        request_headers.contains("authorization") && request_headers.contains("content-type"),
        "{request_headers}"
    );
    assert!(headers.contains_key("access-control-max-age"));

    let foreign = preflight(
        &chat,
        "/api/conversations/c1/messages",
        "https://evil.example",
    )
    .await;
    assert!(!foreign
        .headers()
        .contains_key("access-control-allow-origin"));
    assert!(!foreign
        .headers()
        .contains_key("access-control-allow-methods"));
    let body = problem(foreign, 403).await;
    assert!(
        body["detail"].as_str().unwrap().contains("allowedOrigins"),
        "{body}"
    );

    // The actual request: an allowed page may read the answer (and its request id), another
    // page gets the same answer without any CORS header, so its browser withholds it.
    let answer = me_from(&chat, "ann", APP).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["access-control-allow-origin"], APP);
    let exposed = answer.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    let other = me_from(&chat, "ann", "https://evil.example").await;
    assert_eq!(other.status(), 200);
    assert!(!other.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn without_allowed_origins_no_cross_origin_page_is_served_cors() {
    let chat = chat_server(&[]).await;
    let refused = preflight(&chat, "/api/conversations", APP).await;
    assert!(!refused
        .headers()
        .contains_key("access-control-allow-origin"));
    problem(refused, 403).await;
    let answer = me_from(&chat, "ann", APP).await;
    assert_eq!(answer.status(), 200);
    assert!(!answer.headers().contains_key("access-control-allow-origin"));
    // An OPTIONS that is no preflight is answered as before: this route has no OPTIONS.
    let plain = reqwest::Client::new()
        .request(
            Method::OPTIONS,
            format!("{}/api/conversations", chat.server.base()),
        )
        .send()
        .await
        .unwrap();
    problem(plain, 405).await;
}

/// Tries a `/ws` upgrade as `user` with `origin` (none: no `Origin` header, as non-browser
/// clients do); `Ok` once upgraded, else the refusal's status and problem body.
async fn upgrade_from(chat: &Chat, user: &str, origin: Option<&str>) -> Result<(), (u16, Value)> {
    let url = format!("{}?token={}", ws_url(chat), chat.token(user));
    let mut request = url.into_client_request().expect("request");
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => Ok(()),
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            let body = response.body().clone().unwrap_or_default();
            Err((
                response.status().as_u16(),
                serde_json::from_slice(&body).expect("problem JSON"),
            ))
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

#[tokio::test]
async fn an_upgrade_with_a_foreign_origin_is_403_before_the_token_is_even_read() {
    let chat = chat_server(&[]).await;
    let own = chat.server.base().to_owned();
    assert_eq!(upgrade_from(&chat, "ann", None).await, Ok(()));
    assert_eq!(upgrade_from(&chat, "ann", Some(&own)).await, Ok(()));
    let (status, body) = upgrade_from(&chat, "ann", Some("https://evil.example"))
        .await
        .unwrap_err();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["type"], "urn:tidings:problem:forbidden");
    // Refused before authentication: a page of another site learns nothing about the token.
    let bad_token = format!("{}?token=not-a-token", ws_url(&chat));
    let mut request = bad_token.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", HeaderValue::from_static("https://evil.example"));
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected a 403 refusal, got {other:?}"),
    }

    // The SignalR negotiation and Socket.IO's handshake follow the same rule.
    let http = reqwest::Client::new();
    for (method, path) in [
        (Method::POST, "/chathub/negotiate?negotiateVersion=1"),
        (Method::GET, "/socket.io/?EIO=4&transport=polling"),
    ] {
        let refused = http
            .request(method.clone(), format!("{own}{path}"))
            .bearer_auth(chat.token("ann"))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        problem(refused, 403).await;
        let accepted = http
            .request(method, format!("{own}{path}"))
            .bearer_auth(chat.token("ann"))
            .header("origin", &own)
            .send()
            .await
            .unwrap();
        assert_eq!(accepted.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn listed_origins_may_open_sockets_and_others_may_not() {
    let chat = ws_server(ALLOW_APP).await;
    assert_eq!(upgrade_from(&chat, "ann", Some(APP)).await, Ok(()));
    let own = chat.server.base().to_owned();
    assert_eq!(upgrade_from(&chat, "ann", Some(&own)).await, Ok(()));
    let refused = upgrade_from(&chat, "ann", Some("https://app.example.evil")).await;
    assert_eq!(refused.map_err(|(status, _)| status), Err(403));

    // The SignalR negotiation is a plain POST: a listed page's preflight passes (with the
    // headers the SignalR client adds) and it may read the answer.
    let negotiate = "/chathub/negotiate?negotiateVersion=1";
    let allowed = preflight(&chat, negotiate, APP).await;
    assert_eq!(allowed.status(), 204);
    let headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(headers.contains("x-signalr-user-agent"), "{headers}");
    let answer = reqwest::Client::new()
        .post(format!("{own}{negotiate}"))
        .bearer_auth(chat.token("ann"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["access-control-allow-origin"], APP);
    problem(
        preflight(&chat, negotiate, "https://evil.example").await,
        403,
    )
    .await;
}

#[tokio::test]
async fn the_request_id_round_trips_in_the_header_and_the_problem_body() {
    let chat = chat_server(&[]).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/conversations/none-such", chat.server.base());
    let answer = http
        .get(&url)
        .bearer_auth(chat.token("ann"))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers()["x-request-id"], "client-chosen-42");
    assert_eq!(problem(answer, 404).await["requestId"], "client-chosen-42");

    // None sent, or one that is not sane: the server makes one (a UUID) and uses it in both.
    for sent in [None, Some("two words"), Some("x".repeat(200).as_str())] {
        let mut request = http.get(&url);
        if let Some(sent) = sent {
            request = request.header("x-request-id", sent);
        }
        let answer = request.send().await.unwrap();
        let header = answer.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(uuid::Uuid::parse_str(&header).is_ok(), "{header}");
        assert_eq!(problem(answer, 401).await["requestId"], header.as_str());
    }
    // Successes carry it too.
    let fine = chat.get("ann", "/api/me").await;
    assert_eq!(fine.status(), 200);
    assert!(fine.headers().contains_key("x-request-id"));
}

// ----- the access log ----------------------------------------------------------------------

/// What the test subscriber has written, shared by every test of this binary.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) a JSON subscriber of the `tidings::access` target writing to memory.
fn access_log() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter("tidings::access=info")
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

/// The captured lines' `fields` for which `matches` holds, waiting (a little) until `count` of
/// them are there: the line of a request is written as its response leaves.
async fn lines_where(count: usize, matches: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = String::from_utf8(access_log().0.lock().unwrap().clone()).unwrap();
        let found: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("a JSON log line"))
            .filter(|line| line["target"] == "tidings::access")
            .map(|line| line["fields"].clone())
            .filter(|fields| matches(fields))
            .collect();
        if found.len() >= count || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_access_log_line_of_a_request_carries_its_route_status_and_user() {
    access_log();
    let chat = chat_server(&[]).await;
    let token = chat.token("log-ann");
    let url = format!(
        "{}/api/conversations/secret-room-7/messages?limit=5&token={token}",
        chat.server.base()
    );
    let answer = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&token)
        .header("x-request-id", "access-log-1")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    let lines = lines_where(1, |f| f["request_id"] == "access-log-1").await;
    assert_eq!(lines.len(), 1, "one line per request: {lines:?}");
    let line = &lines[0];
    assert_eq!(line["message"], "request");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/api/conversations/{id}/messages");
    assert_eq!(line["status"], 404);
    assert_eq!(line["user"], "log-ann");
    assert!(line["latency_us"].is_u64(), "{line}");
    assert!(line["bytes"].as_u64().unwrap() > 0, "{line}");
    let text = line.to_string();
    assert!(!text.contains("secret-room-7"), "no raw path: {text}");
    assert!(!text.contains(&token), "no token: {text}");

    // A refused token: its request line has no user, and the refusal has its own line.
    let refused = reqwest::Client::new()
        .get(format!("{}/api/me", chat.server.base()))
        .bearer_auth("not-a-token")
        .header("x-request-id", "access-log-2")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let lines = lines_where(2, |f| f["request_id"] == "access-log-2").await;
    let failure = lines
        .iter()
        .find(|f| f["message"] == "auth failure")
        .unwrap_or_else(|| panic!("an auth failure line: {lines:?}"));
    assert_eq!(failure["route"], "/api/me");
    assert!(!failure["reason"].as_str().unwrap().is_empty());
    let request = lines.iter().find(|f| f["message"] == "request").unwrap();
    assert_eq!(request["status"], 401);
    assert!(request.get("user").is_none(), "{request}");
}

#[tokio::test]
async fn sessions_log_their_open_and_their_close_with_code_and_duration() {
    access_log();
    let chat = chat_server(&[]).await;
    let client = connect(&chat, "log-bob").await;
    let session = client.session_id.clone();
    let opened = lines_where(1, |f| {
        f["message"] == "session opened" && f["session"] == session.as_str()
    })
    .await;
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0]["protocol"], "ws");
    assert_eq!(opened[0]["user"], "log-bob");
    client.close().await;
    let closed = lines_where(1, |f| {
        f["message"] == "session closed" && f["session"] == session.as_str()
    })
    .await;
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["user"], "log-bob");
    assert_eq!(closed[0]["reason"], "the client left");
    assert!(closed[0]["duration_ms"].is_u64(), "{:?}", closed[0]);

    // The server's own close has its code: 1001 when it shuts down.
    let client = connect(&chat, "log-cid").await;
    let session = client.session_id.clone();
    chat.server.sigterm();
    let closed = lines_where(1, |f| {
        f["message"] == "session closed" && f["session"] == session.as_str()
    })
    .await;
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["code"], 1001);
    drop(client);
}

// ----- the banner --------------------------------------------------------------------------

#[tokio::test]
async fn the_banner_names_version_directory_secret_listener_sinks_then_ready() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--listen",
        "127.0.0.1:0",
        "--durability",
        "never",
        "--log-level",
        "info",
        "--log-format",
        "json",
    ];
    let mut server = start(command(dir.path(), &flags));
    let ready = |line: &str| {
        serde_json::from_str::<Value>(line).is_ok_and(|l| l["fields"]["message"] == "ready")
    };
    let printed = server
        .log
        .wait_for(common::server::STARTUP, |text| text.lines().any(ready))
        .unwrap_or_else(|| panic!("no ready line; so far: {}", server.log.so_far()));
    let mut banner = Vec::new();
    for line in printed.lines() {
        let fields: Value = serde_json::from_str(line).expect("a JSON line");
        banner.push(fields["fields"].clone());
        if ready(line) {
            break;
        }
    }
    let find = |message: &str| -> &Value {
        banner
            .iter()
            .find(|f| f["message"].as_str().unwrap().starts_with(message))
            .unwrap_or_else(|| panic!("no {message:?} line in {banner:#?}"))
    };
    let data_dir = dir.path().canonicalize().unwrap();
    let starting = find("tidings ");
    assert_eq!(starting["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(starting["data_dir"], data_dir.to_str().unwrap());
    assert!(starting["durability"]
        .as_str()
        .unwrap()
        .starts_with("never"));
    assert_eq!(find("listening")["url"], server.base());
    assert_eq!(
        find("token secret")["source"],
        data_dir.join("secret.key").to_str().unwrap()
    );
    assert_eq!(find("notification sinks")["sinks"], "none");
    // Ready is the last banner line, and /readyz agrees by then.
    let ready = reqwest::get(format!("{}/readyz", server.base())).await;
    assert_eq!(ready.map(|r| r.status().as_u16()).ok(), Some(200));
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    // The log is written by a thread of its own: every line queued at exit still reaches
    // stderr, the request's access line and the last line included.
    let rest: Vec<Value> = server
        .log
        .to_end()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line")["fields"].clone())
        .collect();
    assert!(
        rest.iter()
            .any(|f| f["message"] == "request" && f["route"] == "/readyz"),
        "the /readyz request's access line: {rest:#?}"
    );
    assert_eq!(
        rest.last().map(|f| &f["message"]),
        Some(&Value::from("stopped"))
    );
}
