//! The Socket.IO endpoint (`/socket.io/`) at the protocol level, with raw Engine.IO requests and
//! WebSocket messages, for what the real client never sends: the handshake and its limits, bad
//! Engine.IO requests (problem+json 400), refused CONNECTs (CONNECT_ERROR, no session, a retry
//! on the same connection), bad events refused with their acknowledgement while the socket
//! stays, packets that break the protocol closing the connection, and long-poll misuse.

use crate::common;

use std::time::Duration;

use common::chat::{chat_server, problem, Chat};
use common::raw::{payload, RawSocketIo};
use common::ws::ws_server;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// A raw long-polling connection.
struct Polling<'a> {
    chat: &'a Chat,
    http: reqwest::Client,
    sid: String,
}

impl<'a> Polling<'a> {
    /// The handshake: a new connection and its `0{…}` packet.
    async fn open(chat: &'a Chat) -> (Polling<'a>, Value) {
        let http = reqwest::Client::new();
        let response = http
            .get(format!(
                "{}/socket.io/?EIO=4&transport=polling",
                chat.server.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        let open: Value = serde_json::from_str(body.strip_prefix('0').expect("open packet"))
            .expect("handshake JSON");
        let sid = open["sid"].as_str().unwrap().to_owned();
        (Polling { chat, http, sid }, open)
    }

    /// A new connection CONNECTed as `user` (token in `auth`), its CONNECT answer read.
    async fn connected(chat: &'a Chat, user: &str) -> Polling<'a> {
        let (polling, _) = Polling::open(chat).await;
        let connect = format!(r#"40{{"token":"{}"}}"#, chat.token(user));
        assert_eq!(polling.post(&[&connect]).await, 200);
        payload(&polling.poll().await[0], "40");
        polling
    }

    fn url(&self) -> String {
        format!(
            "{}/socket.io/?EIO=4&transport=polling&sid={}",
            self.chat.server.base, self.sid
        )
    }

    /// Posts `packets`; the status.
    async fn post(&self, packets: &[&str]) -> u16 {
        let response = self
            .http
            .post(self.url())
            .body(packets.join("\u{1e}"))
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    }

    /// One long-poll: its packets.
    async fn poll(&self) -> Vec<String> {
        let response =
            tokio::time::timeout(Duration::from_secs(10), self.http.get(self.url()).send())
                .await
                .expect("a poll answered within 10 s")
                .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        body.split('\u{1e}').map(str::to_owned).collect()
    }
}

/// The JSON after a packet's `prefix`.
async fn sessions(chat: &Chat) -> u64 {
    metric(chat, "tidings_ws_sessions").await
}

/// The value of an unlabelled metric.
async fn metric(chat: &Chat, name: &str) -> u64 {
    let text = chat.metrics().await;
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing"))
        .parse()
        .unwrap()
}

/// The handshake names the connection, offers the upgrade and states the heartbeat and the
/// largest post.
#[tokio::test]
async fn the_polling_handshake_names_the_connection_and_its_limits() {
    let chat = chat_server(&[]).await;
    let (_, open) = Polling::open(&chat).await;
    assert_eq!(open["upgrades"], json!(["websocket"]));
    assert_eq!(open["pingInterval"], 25_000);
    assert_eq!(open["pingTimeout"], 25_000);
    assert_eq!(open["maxPayload"], 1024 * 1024);
    assert_eq!(open["sid"].as_str().unwrap().len(), 32);
}

/// Engine.IO requests the server cannot serve get 400 problems: another protocol version, an
/// unknown transport, an unknown connection, a post without one.
#[tokio::test]
async fn bad_engine_io_requests_get_400_problems() {
    let chat = chat_server(&[]).await;
    let http = reqwest::Client::new();
    let base = format!("{}/socket.io/", chat.server.base);
    for query in [
        "?EIO=3&transport=polling",
        "?transport=polling",
        "?EIO=4&transport=xhr",
        "?EIO=4&transport=polling&sid=nope",
    ] {
        let response = http.get(format!("{base}{query}")).send().await.unwrap();
        let body = problem(response, 400).await;
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{query}");
    }
    for query in [
        "?EIO=4&transport=polling",
        "?EIO=4&transport=polling&sid=nope",
    ] {
        let response = http
            .post(format!("{base}{query}"))
            .body("40")
            .send()
            .await
            .unwrap();
        problem(response, 400).await;
    }
    assert_eq!(sessions(&chat).await, 0);
}

/// A CONNECT with a bad token or to another namespace gets CONNECT_ERROR with the HTTP status
/// and opens no session; events before an accepted CONNECT are ignored, as Socket.IO servers
/// ignore packets of namespaces not connected; the client may CONNECT again on the same
/// connection.
#[tokio::test]
async fn a_refused_connect_opens_no_session_and_may_be_retried() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let (polling, _) = Polling::open(&chat).await;
    let early = r#"421["send",{"conversationId":"c","content":"before CONNECT"}]"#;
    assert_eq!(polling.post(&[early]).await, 200);
    assert_eq!(polling.post(&[r#"40{"token":"nope"}"#]).await, 200);
    let refused = polling.poll().await;
    let error = payload(&refused[0], "44");
    assert_eq!(error["data"]["status"], 401, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("token"),
        "{error}"
    );
    assert_eq!(polling.post(&["40"]).await, 200);
    assert_eq!(
        payload(&polling.poll().await[0], "44")["data"]["status"],
        401
    );
    let token = chat.token("ann");
    let other = format!(r#"40/admin,{{"token":"{token}"}}"#);
    assert_eq!(polling.post(&[&other]).await, 200);
    let refused = polling.poll().await;
    assert_eq!(payload(&refused[0], "44/admin,")["data"]["status"], 404);
    assert_eq!(sessions(&chat).await, 0, "no session for a refused CONNECT");

    let connect = format!(r#"40{{"token":"{token}"}}"#);
    assert_eq!(polling.post(&[&connect]).await, 200);
    let connected = polling.poll().await;
    assert!(
        payload(&connected[0], "40")["sid"].is_string(),
        "{connected:?}"
    );
    assert_eq!(sessions(&chat).await, 1);
}

/// Unknown events, wrong arguments and oversized packets are refused with their
/// acknowledgement (or an `error` event without one), change nothing, and the socket stays.
#[tokio::test]
async fn bad_events_are_refused_and_the_socket_stays() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let mut ann = RawSocketIo::connect(&chat, &chat.token("ann")).await;
    ann.send(r#"421["shout",{}]"#).await;
    let refused = ann.next_with("431").await;
    assert_eq!(refused[0]["error"]["status"], 400, "{refused}");
    assert!(refused[0]["error"]["detail"]
        .as_str()
        .unwrap()
        .contains("unknown event"));
    ann.send(r#"422["send",{"conversationId":"c"}]"#).await;
    let refused = ann.next_with("432").await;
    assert!(refused[0]["error"]["detail"]
        .as_str()
        .unwrap()
        .contains("content"));
    ann.send(r#"423["send",{"conversationId":"c","content":"x"},{}]"#)
        .await;
    assert_eq!(ann.next_with("433").await[0]["error"]["status"], 400);
    ann.send(r#"424["send",{"conversationId":"elsewhere","content":"x"}]"#)
        .await;
    assert_eq!(ann.next_with("434").await[0]["error"]["status"], 404);
    let large = format!(
        r#"425["send",{{"conversationId":"c","content":"{}"}}]"#,
        "x".repeat(70_000)
    );
    ann.send(&large).await;
    assert_eq!(ann.next_with("435").await[0]["error"]["status"], 413);
    ann.send(r#"42["send","hi"]"#).await;
    let error = ann.next_event("error").await;
    assert_eq!(error["status"], 400, "{error}");

    ann.send(r#"426["send",{"conversationId":"c","content":"hello"}]"#)
        .await;
    let accepted = ann.next_with("436").await;
    assert_eq!(accepted[0]["status"], "accepted", "{accepted}");
    // Delivered once stored: the history is then complete.
    let delivered = ann.next_event("message").await;
    assert_eq!(delivered["message"]["id"], accepted[0]["id"]);
    let history = chat.history("ann", "c", "").await;
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "only the good send was stored: {history}");
    assert_eq!(items[0]["content"], "hello");
}

/// A packet that is not Socket.IO, or binary data, closes the connection with 1002 and changes
/// nothing.
#[tokio::test]
async fn packets_that_break_the_protocol_close_the_connection() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    for bad in [
        Message::text("4x"),
        Message::text(r#"42/admin,["send",{"conversationId":"c","content":"x"}]"#),
        Message::text("42{\"send\":1}"),
        Message::binary(vec![4u8, 1, 2]),
    ] {
        let mut ann = RawSocketIo::connect(&chat, &chat.token("ann")).await;
        ann.send_frame(bad.clone()).await;
        assert_eq!(ann.until_closed().await.1, 1002, "{bad:?}");
    }
    let history = chat.history("ann", "c", "").await;
    assert_eq!(history["items"], json!([]));
}

/// Long-poll misuse closes the connection, as Engine.IO servers do: a second poll while one is
/// pending gets 400, and the pending one then answers the close packet; the connection is
/// gone for every later request.
#[tokio::test]
async fn a_second_pending_poll_closes_the_connection() {
    let chat = chat_server(&[]).await;
    let polling = Polling::connected(&chat, "ann").await;
    let pending = polling.poll();
    tokio::pin!(pending);
    // The first poll is pending once the second one is refused.
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        polling.http.get(polling.url()).send().await.unwrap()
    };
    let (first, second) = tokio::join!(&mut pending, second);
    problem(second, 400).await;
    assert_eq!(first.last().map(String::as_str), Some("1"), "{first:?}");
    assert_eq!(polling.post(&["3"]).await, 400, "the connection is gone");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sessions(&chat).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A long-polling session gets messages sent over HTTP in order, also across its upgrade to a
/// WebSocket (probe, noop, upgrade), none missing or doubled.
#[tokio::test]
async fn a_polling_session_upgrades_to_a_websocket_without_a_gap() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let polling = Polling::connected(&chat, "bob").await;
    assert_eq!(
        polling
            .post(&[r#"420["resume",{"conversations":{"c":0}}]"#])
            .await,
        200
    );
    let mut seqs = Vec::new();
    let mut acked = false;
    for i in 1..=5 {
        chat.send("ann", "c", &format!("m{i}")).await;
    }
    while seqs.len() < 5 || !acked {
        for packet in polling.poll().await {
            if packet.starts_with("430") {
                acked = true;
            } else if let Some(event) = packet.strip_prefix("42") {
                let event: Value = serde_json::from_str(event).unwrap();
                if event[0] == "message" {
                    seqs.push(event[1]["message"]["seq"].as_u64().unwrap());
                }
            }
        }
    }

    let url = polling
        .url()
        .replacen("http://", "ws://", 1)
        .replace("polling", "websocket");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket.send(Message::text("2probe")).await.unwrap();
    let probe = socket.next().await.unwrap().unwrap();
    assert_eq!(probe, Message::text("3probe"));
    for i in 6..=8 {
        chat.send("ann", "c", &format!("m{i}")).await;
    }
    // The pending poll (none is pending here) would end with the noop; polling still works.
    let before_upgrade = polling.poll().await;
    socket.send(Message::text("5")).await.unwrap();
    for packet in before_upgrade {
        if let Some(event) = packet.strip_prefix("42") {
            let event: Value = serde_json::from_str(event).unwrap();
            seqs.push(event[1]["message"]["seq"].as_u64().unwrap());
        }
    }
    for i in 9..=10 {
        chat.send("ann", "c", &format!("m{i}")).await;
    }
    let mut raw = RawSocketIo::upgraded(socket);
    while seqs.last() != Some(&10) {
        let event = raw.next_event("message").await;
        seqs.push(event["message"]["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    assert_eq!(
        polling
            .http
            .get(polling.url())
            .send()
            .await
            .unwrap()
            .status(),
        400,
        "no polling once upgraded"
    );
}

/// A long-polling client that stops polling is closed as too slow, as a `/ws` client that
/// stops reading is: what waits for it is bounded, the session ends, and its connection closes
/// (a later poll gets at most what was queued, then the close packet).
#[tokio::test]
async fn a_polling_client_that_stops_polling_is_closed_as_too_slow() {
    let chat = ws_server("[ws]\nqueueFrames = 16\n[limits]\nrateLimit = 0\n").await;
    chat.conversation("ann", "c", &["bob"]).await;
    let polling = Polling::connected(&chat, "bob").await;
    assert_eq!(
        polling.post(&["3"]).await,
        200,
        "the first packet opens the queue"
    );
    let mut sent = 0;
    while metric(&chat, "tidings_ws_sessions_closed_slow_total").await == 0 {
        assert!(sent < 1000, "never closed the client that stopped polling");
        for _ in 0..20 {
            chat.send("ann", "c", "x").await;
            sent += 1;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while sessions(&chat).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Polling again gets what was queued before the close, then the close packet, or 400 once
    // the connection is gone.
    for _ in 0..100 {
        let response = polling.http.get(polling.url()).send().await.unwrap();
        if response.status() == 400 {
            return;
        }
        let body = response.text().await.unwrap();
        if body.split('\u{1e}').next_back() == Some("1") {
            return;
        }
    }
    panic!("the connection never closed");
}
