//! Proves that arbitrary bytes thrown at the real server's JSON routes and at `/ws` are refused
//! with 4xx problem+json (HTTP) or an `error` frame (WebSocket), never a 5xx, a panic or a
//! closed session, and that the server still answers `/healthz` and valid requests after.
//! Also proves that a record value nested 100,000 levels deep is refused with 400 naming the
//! limit and that nothing is appended.
//!
//! Bodies and frames come from proptest strategies; each test runs a bounded number of cases
//! (proptest's `cases`) against one server, and a failure shrinks to the smallest input.

use crate::common;

use std::cell::Cell;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use common::bus::{Bus, ADMIN};
use common::chat::problem;
use common::ws::{ws_server, ws_url, DEADLINE};

/// Cases per test: enough to reach every route with every kind of body, small enough that a
/// test stays well under 30 s.
const CASES: u32 = 300;

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Every route that reads a JSON body (paths point at things that exist where that matters).
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/conversations"),
    ("POST", "/api/conversations/fuzz/participants"),
    ("POST", "/api/conversations/fuzz/read"),
    ("POST", "/api/conversations/fuzz/messages"),
    (
        "PATCH",
        "/api/conversations/fuzz/messages/0190a2b4-7a1e-7c3d-8e4f-123456789abc",
    ),
    ("POST", "/api/topics"),
    ("POST", "/api/topics/fuzz/records"),
    ("POST", "/api/topics/fuzz/partitions/0/records"),
    ("POST", "/api/groups/fuzz/members"),
    ("POST", "/api/groups/fuzz/members/nobody/poll"),
    ("POST", "/api/groups/fuzz/offsets"),
    ("POST", "/api/groups/fuzz/offsets/reset"),
];

/// Field names of every JSON body, so objects reach past "unknown field" into the values.
const FIELDS: &[&str] = &[
    "id",
    "title",
    "participants",
    "userId",
    "seq",
    "content",
    "clientMessageId",
    "replyTo",
    "mentions",
    "name",
    "partitions",
    "retentionMs",
    "retentionBytes",
    "records",
    "key",
    "headers",
    "value",
    "topics",
    "autoOffsetReset",
    "sessionTimeoutMs",
    "limit",
    "waitMs",
    "memberId",
    "offsets",
    "topic",
    "partition",
    "offset",
    "to",
];

/// JSON of any shape: scalars at the edges of their ranges, strings with escapes, nesting.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(0)),
        ".{0,12}".prop_map(Value::from),
        Just(json!("earliest")),
        Just(json!("fuzz")),
    ];
    leaf.prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::vec((proptest::sample::select(FIELDS), inner), 0..5).prop_map(
                |fields| {
                    let object = fields
                        .into_iter()
                        .map(|(name, value)| (name.to_owned(), value))
                        .collect();
                    Value::Object(object)
                }
            ),
        ]
    })
}

/// A request body: raw bytes, JSON text of any shape, or a deeply nested value.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..200),
        6 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => (1usize..3000).prop_map(|depth| {
            format!(r#"{{"records":[{{"value":{}}}]}}"#, "[".repeat(depth)).into_bytes()
        }),
        1 => (100usize..3000).prop_map(|depth| {
            let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            format!(r#"{{"records":[{{"value":{deep}}}]}}"#).into_bytes()
        }),
    ]
}

/// The content type sent with the body (None: no header).
fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        8 => Just(Some("application/json")),
        1 => Just(Some("application/json; charset=utf-8")),
        1 => Just(Some("text/plain")),
        1 => Just(None),
    ]
}

/// Sends `body` as-is to `method path` with an admin token.
async fn post_raw(
    bus: &Bus,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let token = bus.auth.issue(
        "fuzzer",
        None,
        &["admin".to_owned()],
        Duration::from_secs(3600),
    );
    let method = Method::from_bytes(method.as_bytes()).expect("a method");
    let mut request = bus
        .http
        .request(method, format!("{}{path}", bus.chat.server.base))
        .bearer_auth(token)
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.expect("the server answers")
}

/// [`post_raw`]'s status and content type.
async fn send_raw(
    bus: &Bus,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    let response = post_raw(bus, method, path, content_type, body).await;
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (response.status().as_u16(), content_type)
}

/// The server answers `/healthz` and a valid publish after the storm.
async fn still_serves(bus: &Bus) {
    let health = reqwest::get(format!("{}/healthz", bus.chat.server.base))
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let offsets = bus
        .publish("fuzz", json!([{"key": "k", "value": {"ok": true}}]))
        .await;
    assert_eq!(offsets.len(), 1);
}

#[test]
fn random_bodies_on_every_json_route_are_4xx_problems_never_5xx() {
    let rt = Runtime::new().expect("a runtime");
    let bus = rt.block_on(async {
        let bus = Bus::start(&[]).await;
        bus.create("fuzz", 2).await;
        let created = bus
            .post(
                ADMIN,
                "/api/conversations",
                json!({"id": "fuzz", "participants": ["fuzzer"]}),
            )
            .await;
        assert!(created.status().is_success(), "{}", created.status());
        bus
    });
    let accepted = Cell::new(0u32);
    let strategy = (proptest::sample::select(ROUTES), content_type(), body());
    let outcome = runner().run(&strategy, |((method, path), content_type, body)| {
        let (status, answered_as) =
            rt.block_on(send_raw(&bus, method, path, content_type, body.clone()));
        let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        prop_assert!(status < 500, "{method} {path} {shown:?} answered {status}");
        if status >= 400 {
            prop_assert_eq!(
                answered_as,
                "application/problem+json",
                "{} {}",
                method,
                path
            );
        } else {
            accepted.set(accepted.get() + 1);
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    println!(
        "{} of {CASES} random bodies were valid requests",
        accepted.get()
    );
    rt.block_on(still_serves(&bus));
}

#[test]
fn a_value_100_000_levels_deep_is_refused_with_400_and_nothing_is_appended() {
    let rt = Runtime::new().expect("a runtime");
    rt.block_on(async {
        let bus = Bus::start(&[]).await;
        bus.create("deep", 1).await;
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let body = format!(r#"{{"records":[{{"value":{deep}}}]}}"#);
        for path in [
            "/api/topics/deep/records",
            "/api/topics/deep/partitions/0/records",
        ] {
            let json = Some("application/json");
            let response = post_raw(&bus, "POST", path, json, body.clone().into_bytes()).await;
            let detail = problem(response, 400).await["detail"].to_string();
            assert!(detail.contains("records[0].value"), "{detail}");
            assert!(detail.contains("the limit is 64"), "{detail}");
        }
        let page: Value = bus
            .get(&["events:consume"], "/api/topics/deep/partitions/0/records")
            .await
            .json()
            .await
            .expect("a page");
        assert_eq!(page["records"], json!([]), "nothing was appended");
        let at_limit = format!("{}{}", "[".repeat(64), "]".repeat(64));
        let value: Value = serde_json::from_str(&at_limit).expect("64 levels parse");
        let offsets = bus.publish("deep", json!([{ "value": value }])).await;
        assert_eq!(offsets[0]["offset"], 0, "a value at the limit is stored");
    });
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A client frame: any text, text shaped like a client frame, deep nesting, or binary bytes.
fn ws_frame() -> impl Strategy<Value = Message> {
    let kind = prop_oneof![
        Just("send"),
        Just("read"),
        Just("typing"),
        Just("resume"),
        Just("ping"),
        Just("shout"),
    ];
    let shaped = (kind, json_value()).prop_map(|(kind, value)| {
        let mut object = match value {
            Value::Object(object) => object,
            other => [("conversationId".to_owned(), other)].into_iter().collect(),
        };
        object.insert("type".into(), json!(kind));
        Message::text(Value::Object(object).to_string())
    });
    prop_oneof![
        3 => ".{0,100}".prop_map(Message::text),
        5 => shaped,
        1 => json_value().prop_map(|v| Message::text(v.to_string())),
        1 => (1usize..5000).prop_map(|depth| {
            Message::text(format!(r#"{{"type":"ping","ref":{}}}"#, "[".repeat(depth)))
        }),
        2 => proptest::collection::vec(any::<u8>(), 0..100).prop_map(Message::binary),
    ]
}

/// Reads frames until the `pong` whose ref is `probe`; every `error` before it must be a 4xx.
async fn until_pong(socket: &mut Socket, probe: &str) -> Result<(), String> {
    loop {
        let next = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .map_err(|_| format!("no pong for {probe} within {DEADLINE:?}"))?;
        let text = match next {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(close))) => return Err(format!("closed: {close:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("read error: {e}")),
            None => return Err("the session ended".into()),
        };
        let frame: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        match frame["type"].as_str() {
            Some("pong") if frame["ref"] == probe => return Ok(()),
            Some("error") => {
                let status = frame["status"].as_u64().unwrap_or(0);
                if !(400..500).contains(&status) {
                    return Err(format!("error frame with status {status}: {frame}"));
                }
            }
            _ => {}
        }
    }
}

#[test]
fn random_ws_frames_get_error_frames_and_the_session_stays_open() {
    let rt = Runtime::new().expect("a runtime");
    let (chat, socket) = rt.block_on(async {
        // No frame rate: the point is the parser, not the token bucket.
        let chat = ws_server("[ws]\nframeRate = 0\n").await;
        let url = format!("{}?token={}", ws_url(&chat), chat.token("fuzzer"));
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket upgrade");
        let ready = socket.next().await.expect("a frame").expect("readable");
        assert!(ready.to_text().expect("text").contains("ready"));
        (chat, socket)
    });
    let socket = tokio::sync::Mutex::new(socket);
    let probes = Cell::new(0u32);
    let outcome = runner().run(&ws_frame(), |frame| {
        probes.set(probes.get() + 1);
        let probe = format!("probe-{}", probes.get());
        let shown = format!("{frame:?}");
        let answered = rt.block_on(async {
            let mut socket = socket.lock().await;
            socket.send(frame).await.map_err(|e| e.to_string())?;
            let ping = json!({"type": "ping", "ref": probe}).to_string();
            socket
                .send(Message::text(ping))
                .await
                .map_err(|e| e.to_string())?;
            until_pong(&mut socket, &probe).await
        });
        prop_assert!(answered.is_ok(), "{}: {:?}", shown, answered);
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    println!(
        "{} frames, each answered before its probe's pong",
        probes.get()
    );
    rt.block_on(async {
        let health = reqwest::get(format!("{}/healthz", chat.server.base))
            .await
            .expect("healthz");
        assert_eq!(health.status(), 200);
        let mut socket = socket.lock().await;
        let ping = json!({"type": "ping", "ref": "last"}).to_string();
        socket.send(Message::text(ping)).await.expect("send");
        until_pong(&mut socket, "last").await.expect("a pong");
    });
}
