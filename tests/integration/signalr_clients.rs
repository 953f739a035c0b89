//! The SignalR hub (`/chathub`) with the real `@microsoft/signalr` client in Node against the
//! real binary: negotiation and skipNegotiation, join, send with its completion, receive,
//! typing, read receipts, leave, hub errors, a non-participant refused, and messages sent over
//! HTTP reaching a SignalR session in order.

use crate::common;

use common::chat::{chat_server, problem, Chat};
use common::clients::{self, Client};
use common::raw::RawHub;
use serde_json::{json, Value};

fn config(chat: &Chat, scenario: &str, conversation: &str) -> Value {
    json!({
        "scenario": scenario,
        "base": chat.server.base,
        "conversation": conversation,
        "tokens": {
            "alice": chat.token("alice"),
            "bob": chat.token("bob"),
            "carol": chat.token("carol"),
        },
    })
}

/// The chat scenario: what a SignalR chat client does, answered as API.md says.
#[tokio::test]
async fn a_signalr_client_chats_through_the_hub() {
    let chat = chat_server(&[]).await;
    chat.conversation("alice", "c1", &["bob"]).await;
    let result = clients::run("signalr_chat.mjs", &config(&chat, "chat", "c1")).await;

    let sent = &result["sent"];
    assert_eq!(sent["status"], "accepted", "{result:#}");
    assert_eq!(sent["conversationId"], "c1");
    assert_eq!(sent["clientMessageId"], "k-1");
    let received = &result["received"];
    assert_eq!(received["id"], sent["id"], "bob got the message sent");
    assert_eq!(received["content"], "hello");
    assert_eq!(received["senderId"], "alice");
    assert_eq!(received["seq"], 1);
    assert_eq!(
        result["echoed"]["id"], sent["id"],
        "the sender's own joined connection too"
    );
    assert_eq!(
        result["typed"],
        json!({"conversationId": "c1", "userId": "alice", "typing": true})
    );
    assert_eq!(
        result["read"],
        json!({"conversationId": "c1", "userId": "bob", "seq": 1})
    );
    assert_eq!(result["edited"]["content"], "hello, edited", "{result:#}");
    assert!(result["edited"]["editedAt"].is_string());
    assert_eq!(result["edited"]["seq"], 1);
    assert_eq!(
        result["deleted"],
        json!({"conversationId": "c1", "id": sent["id"], "seq": 1})
    );
    let participants = &result["conversationUpdated"]["participants"];
    assert!(
        participants
            .as_array()
            .is_some_and(|p| p.contains(&json!("dave"))),
        "{participants}"
    );
    for (refusal, expected) in [
        ("carolJoin", "404"),
        ("carolSend", "404"),
        ("unknownMethod", "Unknown hub method 'Shout'"),
        ("wrongArguments", "'Typing' takes 2 argument(s)"),
        ("wrongType", "argument 2 of 'MarkRead'"),
    ] {
        let text = result[refusal].as_str().unwrap_or_default();
        assert!(text.contains(expected), "{refusal}: {text:?}");
    }
    assert_eq!(
        result["bobAfterRejoin"],
        json!(["bob is back"]),
        "nothing of the time bob was out of the group"
    );

    // The refused send changed nothing: the conversation holds alice's three messages (the
    // first one deleted).
    let history = chat.history("alice", "c1", "").await;
    let contents: Vec<&str> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(contents.len(), 3, "{contents:?}");
    assert!(!contents.contains(&"let me in"));
}

/// Messages sent over HTTP reach a SignalR session in seq order, none missing; both with and
/// without negotiation.
#[tokio::test]
async fn messages_sent_over_http_reach_signalr_sessions_in_order() {
    let chat = chat_server(&[]).await;
    chat.conversation("alice", "c1", &["bob"]).await;
    for negotiate in [true, false] {
        let mut config = config(&chat, "receive", "c1");
        config["count"] = json!(20);
        config["negotiate"] = json!(negotiate);
        let mut client = Client::start("signalr_chat.mjs", &config);
        assert_eq!(client.next().await, json!({"ready": true}));
        let mut contents = Vec::new();
        for i in 0..20 {
            let content = format!("m{i} negotiate={negotiate}");
            chat.send("alice", "c1", &content).await;
            contents.push(content);
        }
        let result = client.next().await;
        client.finish().await;
        assert_eq!(result["contents"], json!(contents), "{result:#}");
        let seqs: Vec<u64> = serde_json::from_value(result["seqs"].clone()).expect("seqs");
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    }
}

/// The hub's HTTP edges answer with problems: no token 401, a negotiation's token used twice
/// 409, an unknown one 404, a plain GET (no upgrade) 400.
#[tokio::test]
async fn the_hub_refuses_bad_connections_with_problems() {
    let chat = chat_server(&[]).await;
    let http = reqwest::Client::new();
    let base = &chat.server.base;
    let negotiate = format!("{base}/chathub/negotiate?negotiateVersion=1");
    let anonymous = http.post(&negotiate).send().await.expect("negotiate");
    problem(anonymous, 401).await;

    let answer: Value = chat
        .post_json("alice", "/chathub/negotiate?negotiateVersion=1", json!({}))
        .await;
    assert_eq!(answer["negotiateVersion"], 1);
    assert_eq!(
        answer["availableTransports"],
        json!([{"transport": "WebSockets", "transferFormats": ["Text"]}])
    );
    let token = answer["connectionToken"]
        .as_str()
        .expect("a connection token");
    assert_ne!(answer["connectionId"], answer["connectionToken"]);

    let plain = chat.get("alice", &format!("/chathub?id={token}")).await;
    let refused = problem(plain, 400).await;
    assert!(refused["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("WebSockets"));

    let socket = format!("{}/chathub?id={token}", base.replacen("http", "ws", 1));
    let bob = connect_as(&socket, &chat.token("bob")).await;
    assert_eq!(bob, 404, "a token is its user's only");
    assert_eq!(connect_as(&socket, &chat.token("alice")).await, 101);
    assert_eq!(connect_as(&socket, &chat.token("alice")).await, 409);
    let unknown = format!("{}/chathub?id=nope", base.replacen("http", "ws", 1));
    assert_eq!(connect_as(&unknown, &chat.token("alice")).await, 404);

    // One user negotiating in a loop is held to ws.maxSessionsPerUser (32) waiting tokens.
    let path = "/chathub/negotiate?negotiateVersion=1";
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(
            chat.post("mallory", path, json!({}))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        32,
        "{statuses:?}"
    );
    problem(chat.post("mallory", path, json!({})).await, 429).await;
    assert_eq!(chat.post("alice", path, json!({})).await.status(), 200);
}

/// The status of a WebSocket upgrade to `url` with `token` in the query, as browsers send it.
async fn connect_as(url: &str, token: &str) -> u16 {
    let url = format!("{url}&access_token={token}");
    match tokio_tungstenite::connect_async(url).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("upgrade failed without an answer: {e}"),
    }
}

/// Bad input on the hub gets SignalR's errors and changes nothing: a bad handshake (or an
/// invocation before it) gets a handshake error and the connection closes; a malformed record
/// after it gets a close record with the reason; a stream invocation and a wrong argument are
/// answered with an error completion and the connection stays.
#[tokio::test]
async fn bad_input_on_the_hub_gets_signalr_errors() {
    let chat = chat_server(&[]).await;
    chat.conversation("alice", "c1", &["bob"]).await;

    let mut hub = RawHub::open(&chat, &chat.token("alice")).await;
    hub.send("{\"protocol\":\"messagepack\",\"version\":1}\u{1e}")
        .await;
    let (records, code) = hub.until_closed().await;
    assert!(
        records[0]["error"]
            .as_str()
            .unwrap()
            .contains("messagepack"),
        "{records:?}"
    );
    assert_eq!(code, Some(1002));

    let mut hub = RawHub::open(&chat, &chat.token("alice")).await;
    let early = "{\"type\":1,\"invocationId\":\"1\",\"target\":\"SendMessage\",\"arguments\":[\"c1\",\"early\"]}\u{1e}";
    hub.send(early).await;
    let (records, code) = hub.until_closed().await;
    assert!(
        records[0]["error"].is_string(),
        "a handshake error first: {records:?}"
    );
    assert_eq!(code, Some(1002));

    let mut hub = RawHub::open(&chat, &chat.token("alice")).await;
    hub.handshake().await;
    hub.send(
        "{\"type\":4,\"invocationId\":\"s\",\"target\":\"SendMessage\",\"arguments\":[]}\u{1e}",
    )
    .await;
    let streamed = hub.next().await;
    assert_eq!(streamed["invocationId"], "s");
    assert!(
        streamed["error"].as_str().unwrap().starts_with("400"),
        "{streamed}"
    );
    hub.send("{\"type\":1,\"invocationId\":\"t\",\"target\":\"SendMessage\",\"arguments\":[\"c1\",7]}\u{1e}")
        .await;
    let typed = hub.next().await;
    assert!(
        typed["error"]
            .as_str()
            .unwrap()
            .contains("argument 2 of 'SendMessage'"),
        "{typed}"
    );
    hub.send("{\"type\":1,\"target\":\"SendMessage\",\"arguments\":[\"c1\"]}\u{1e}")
        .await;
    hub.send("{\"type\":1,\"invocationId\":\"j\",\"target\":\"JoinConversation\",\"arguments\":[\"c1\"]}\u{1e}")
        .await;
    assert_eq!(
        hub.next().await,
        json!({"type": 3, "invocationId": "j"}),
        "an invocation without id got no answer, the next one its completion"
    );
    hub.send("{\"type\":1,\"target\":").await;
    let (records, code) = hub.until_closed().await;
    assert_eq!(
        records.last().map(|r| r["type"].clone()),
        Some(json!(7)),
        "{records:?}"
    );
    assert_eq!(records.last().unwrap()["allowReconnect"], false);
    assert_eq!(code, Some(1002));

    // A message above ws.maxFrameBytes (64 KiB) is not handled: close record, then 1002.
    let mut hub = RawHub::open(&chat, &chat.token("alice")).await;
    hub.handshake().await;
    let huge = format!(
        "{{\"type\":1,\"invocationId\":\"h\",\"target\":\"SendMessage\",\"arguments\":[\"c1\",\"{}\"]}}\u{1e}",
        "x".repeat(70_000)
    );
    hub.send(&huge).await;
    let (records, code) = hub.until_closed().await;
    assert_eq!(records.len(), 1, "one close record: {records:?}");
    let error = records[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("limit"), "{records:?}");
    assert_eq!(code, Some(1002));

    let history = chat.history("alice", "c1", "").await;
    assert_eq!(history["items"], json!([]), "nothing was sent");
}

/// Presence across protocols: bob online on `/ws` and on SignalR is one user; alice (on
/// SignalR) hears him go offline only once his last session, on either protocol, closed (and
/// the grace period passed).
#[tokio::test]
async fn presence_spans_devices_on_two_protocols() {
    let chat = common::ws::ws_server("[ws]\npresenceGraceMs = 100\n").await;
    chat.conversation("alice", "c1", &["bob"]).await;
    let mut alice = RawHub::connect(&chat, &chat.token("alice")).await;

    let bob_ws = common::ws::connect(&chat, "bob").await;
    let online = alice.next().await;
    assert_eq!(online["target"], "PresenceChanged");
    assert_eq!(online["arguments"][0]["userId"], "bob");
    assert_eq!(online["arguments"][0]["status"], "online");

    let mut bob_hub = RawHub::open(&chat, &chat.token("bob")).await;
    bob_hub.handshake().await;
    bob_ws.close().await;
    // Still online through the SignalR session: the next thing alice hears is a message.
    chat.send("bob", "c1", "still here").await;
    // Stored before the resume reads the store (the 202 comes before the store writer applies).
    chat.wait_messages("bob", "c1", 1, std::time::Duration::from_secs(10))
        .await;
    alice
        .send("{\"type\":1,\"invocationId\":\"r\",\"target\":\"Resume\",\"arguments\":[\"c1\",0]}\u{1e}")
        .await;
    let replayed = alice.next().await;
    assert_eq!(replayed["target"], "ReceiveMessage", "{replayed}");
    assert_eq!(replayed["arguments"][0]["content"], "still here");
    assert_eq!(alice.next().await, json!({"type": 3, "invocationId": "r"}));

    drop(bob_hub);
    let offline = alice.next().await;
    assert_eq!(offline["target"], "PresenceChanged", "{offline}");
    assert_eq!(offline["arguments"][0]["status"], "offline");
    assert!(offline["arguments"][0]["lastSeen"].is_string());
}

/// `withAutomaticReconnect()` across a server restart loses nothing: the client resumes from
/// the last seq it saw and gets what was sent meanwhile, in order, once.
#[tokio::test]
async fn a_reconnecting_client_resumes_across_a_server_restart() {
    let chat = chat_server(&[]).await;
    chat.conversation("alice", "c1", &["bob"]).await;
    for i in 1..=5 {
        chat.send("alice", "c1", &format!("before {i}")).await;
    }
    let mut client = Client::start("signalr_chat.mjs", &config(&chat, "reconnect", "c1"));
    assert_eq!(client.next().await, json!({"ready": true}));
    client.say(&json!({"expect": 5})).await;
    assert_eq!(client.next().await["received"], 5);

    let chat = restart_on_the_same_port(chat).await;
    for i in 6..=10 {
        chat.send("alice", "c1", &format!("after {i}")).await;
    }
    client.say(&json!({"expect": 10})).await;
    let progress = client.next().await;
    assert_eq!(progress["received"], 10, "{progress}");
    client.say(&json!({"done": true})).await;
    let result = client.next().await;
    client.finish().await;
    assert_eq!(
        result["seqs"],
        json!((1..=10).collect::<Vec<u64>>()),
        "{result}"
    );
    assert_eq!(result["events"], json!(["reconnecting", "reconnected"]));
}

/// Stops the server with SIGTERM and starts it again on the same directory and port, so that
/// clients reconnect to the address they know.
async fn restart_on_the_same_port(chat: Chat) -> Chat {
    use common::server::{sigterm, wait_exit};
    let address = chat.server.base.trim_start_matches("http://").to_owned();
    let Chat {
        mut server, dir, ..
    } = chat;
    sigterm(&server);
    assert!(wait_exit(&mut server, std::time::Duration::from_secs(20)).success());
    drop(server);
    common::chat::chat_server_in(dir, &["--listen", &address, "--durability", "never"]).await
}

/// `signalr.path` moves the hub: the client connects (negotiating) at the configured path, and
/// the default one is no route any more.
#[tokio::test]
async fn the_hub_is_served_at_the_configured_path() {
    let chat = common::ws::ws_server("[signalr]\npath = \"/hubs/chat\"\n").await;
    chat.conversation("alice", "c1", &["bob"]).await;
    let mut config = config(&chat, "receive", "c1");
    config["count"] = json!(1);
    config["hub"] = json!("/hubs/chat");
    let mut client = Client::start("signalr_chat.mjs", &config);
    assert_eq!(client.next().await, json!({"ready": true}));
    chat.send("alice", "c1", "moved").await;
    let result = client.next().await;
    client.finish().await;
    assert_eq!(result["contents"], json!(["moved"]));
    let old = chat
        .post("alice", "/chathub/negotiate?negotiateVersion=1", json!({}))
        .await;
    problem(old, 404).await;
}
