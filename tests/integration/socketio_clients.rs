//! The Socket.IO endpoint (`/socket.io/`) with the real `socket.io-client` in Node against the
//! real server, each scenario on the WebSocket transport alone, on the client's default
//! (long-polling, then the upgrade) and on long-polling alone: send with its acknowledgement, receive, typing,
//! read receipts, edits, deletes and membership changes, resume, a non-participant refused, bad
//! tokens refused, order of many messages, presence across `/ws` and Socket.IO, and one message
//! reaching a session of each protocol alike.

use crate::common;

use std::time::Duration;

use common::chat::{chat_server, Chat};
use common::clients::{self, Client};
use serde_json::{json, Value};

/// The ways `socket.io-client` connects: `transports: ["websocket"]`, its default (polling,
/// upgraded to the WebSocket within milliseconds, before most events flow) and
/// `transports: ["polling"]`, which keeps every event on long-polling.
const TRANSPORTS: [&str; 3] = ["websocket", "default", "polling"];

const SCRIPT: &str = "socketio_chat.mjs";

fn config(chat: &Chat, scenario: &str, conversation: &str, transport: &str) -> Value {
    json!({
        "scenario": scenario,
        "base": chat.server.base,
        "conversation": conversation,
        "transport": transport,
        "tokens": {
            "alice": chat.token("alice"),
            "bob": chat.token("bob"),
            "carol": chat.token("carol"),
        },
    })
}

/// The transports a socket connected on and ended on: the WebSocket throughout, polling
/// upgraded to the WebSocket, or polling throughout.
fn expected_transports(transport: &str) -> (&'static str, &'static str) {
    match transport {
        "websocket" => ("websocket", "websocket"),
        "default" => ("polling", "websocket"),
        "polling" => ("polling", "polling"),
        other => panic!("unknown transport {other}"),
    }
}

/// `{"error":{"status","detail"}}` with `status` and a detail, nothing else.
fn assert_refused(answer: &Value, status: u64, what: &str) {
    let error = &answer["error"];
    assert_eq!(error["status"], status, "{what}: {answer}");
    assert!(
        error["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: {answer}"
    );
    assert_eq!(
        answer.as_object().map(|o| o.len()),
        Some(1),
        "{what}: {answer}"
    );
}

/// What a chat client does over Socket.IO, answered as API.md says: `send` acknowledged with
/// the `/ws` ack's fields, `message` to the other participant and the sender's own socket,
/// `typing` and `read` acknowledged with `{}` and relayed, edits, deletes and a participant
/// added over HTTP relayed, an unknown event or a bad argument refused with 400.
#[tokio::test]
async fn a_socketio_client_chats() {
    for transport in TRANSPORTS {
        let chat = chat_server(&[]).await;
        chat.conversation("alice", "c1", &["bob"]).await;
        let result = clients::run(SCRIPT, &config(&chat, "chat", "c1", transport)).await;
        let context = format!("transport {transport}: {result:#}");

        let sent = &result["sent"];
        assert_eq!(sent["status"], "accepted", "{context}");
        assert_eq!(sent["conversationId"], "c1", "{context}");
        assert_eq!(sent["clientMessageId"], "k-1", "{context}");
        for field in ["id", "sentAt"] {
            assert!(sent[field].is_string(), "{field}: {context}");
        }
        for field in ["partition", "offset"] {
            assert!(sent[field].is_u64(), "{field}: {context}");
        }
        for field in ["type", "ref"] {
            assert!(
                sent.get(field).is_none(),
                "no {field} in the ack: {context}"
            );
        }

        let received = &result["received"];
        assert_eq!(
            received.as_object().map(|o| o.len()),
            Some(1),
            "only {{message}}: {context}"
        );
        let message = &received["message"];
        assert_eq!(
            message["id"], sent["id"],
            "bob got the message sent: {context}"
        );
        assert_eq!(message["seq"], 1);
        assert_eq!(message["content"], "hello");
        assert_eq!(message["senderId"], "alice");
        assert_eq!(message["conversationId"], "c1");
        assert_eq!(
            result["echoed"]["message"]["id"], sent["id"],
            "the sender's own socket too: {context}"
        );

        assert_eq!(result["typingAck"], json!({}), "{context}");
        assert_eq!(
            result["typed"],
            json!({"conversationId": "c1", "userId": "alice", "typing": true}),
            "{context}"
        );
        assert_eq!(result["readAck"], json!({}), "{context}");
        assert_eq!(
            result["read"],
            json!({"conversationId": "c1", "userId": "bob", "seq": 1}),
            "{context}"
        );

        let edited = &result["edited"]["message"];
        assert_eq!(edited["content"], "hello, edited", "{context}");
        assert!(edited["editedAt"].is_string(), "{context}");
        assert_eq!(edited["seq"], 1);
        assert_eq!(
            result["deleted"],
            json!({"conversationId": "c1", "id": sent["id"], "seq": 1}),
            "{context}"
        );
        let participants = &result["conversationUpdated"]["conversation"]["participants"];
        assert!(
            participants
                .as_array()
                .is_some_and(|p| p.contains(&json!("dave"))),
            "{context}"
        );

        for refusal in ["unknownEvent", "wrongArgument", "wrongType"] {
            assert_refused(&result[refusal], 400, refusal);
        }

        let (at_connect, at_end) = expected_transports(transport);
        assert_eq!(
            result["transportsAtConnect"],
            json!([at_connect, at_connect])
        );
        assert_eq!(result["transportsAtEnd"], json!([at_end, at_end]));

        // The refused events changed nothing: the conversation holds the one message, deleted.
        let history = chat.history("alice", "c1", "").await;
        let items = history["items"].as_array().expect("items");
        assert_eq!(items.len(), 1, "transport {transport}: {history}");
        assert_eq!(items[0]["deleted"], true);
    }
}

/// `resume` from seq 0 replays the stored messages in order before its acknowledgement `{}`,
/// then the live ones follow, with no gap and no duplicate.
#[tokio::test]
async fn resume_replays_stored_messages_before_its_acknowledgement() {
    for transport in TRANSPORTS {
        let chat = chat_server(&[]).await;
        chat.conversation("alice", "c1", &["bob"]).await;
        for i in 1..=3 {
            chat.send("alice", "c1", &format!("stored {i}")).await;
        }
        chat.wait_messages("alice", "c1", 3, Duration::from_secs(5))
            .await;
        let mut config = config(&chat, "resume", "c1", transport);
        config["count"] = json!(3);
        let result = clients::run(SCRIPT, &config).await;
        assert_eq!(result["ack"], json!({}), "transport {transport}: {result}");
        assert_eq!(
            result["order"],
            json!([1, 2, 3, "ack", 4]),
            "transport {transport}: {result}"
        );
        assert_eq!(result["transport"], expected_transports(transport).1);
    }
}

/// A user who is not a participant (token in the query, `?token=`) is refused with 404 for
/// `send`, `typing`, `read` and `resume`, never hears the conversation's messages (none
/// replayed either), and the refused send stored nothing.
#[tokio::test]
async fn a_non_participant_is_refused_and_hears_nothing() {
    for transport in TRANSPORTS {
        let chat = chat_server(&[]).await;
        chat.conversation("alice", "c1", &["bob"]).await;
        chat.conversation("alice", "c2", &["carol"]).await;
        let mut config = config(&chat, "outsider", "c1", transport);
        config["carolConversation"] = json!("c2");
        let result = clients::run(SCRIPT, &config).await;
        for event in ["send", "typing", "read", "resume"] {
            assert_refused(&result["refusals"][event], 404, event);
        }
        assert_eq!(
            result["carolSaw"],
            json!(["for carol"]),
            "transport {transport}: nothing of c1"
        );
        let history = chat.history("alice", "c1", "").await;
        let contents: Vec<&Value> = history["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|m| &m["content"])
            .collect();
        assert_eq!(contents, [&json!("not for carol")], "transport {transport}");
    }
}

/// The value of the metric `name` (a line `name value`) in a Prometheus text scrape.
fn metric(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in the scrape"))
        .parse()
        .expect("a number")
}

/// A bad token, or none, gets a `connect_error` whose message names the token problem and
/// whose data carries status 401; no session opens (the sessions gauge, which does count a
/// good Socket.IO socket, stays at 0).
#[tokio::test]
async fn bad_tokens_get_a_connect_error_and_open_no_session() {
    for transport in TRANSPORTS {
        let chat = chat_server(&[]).await;
        let mut client = Client::start(SCRIPT, &config(&chat, "refused", "c1", transport));
        let refusals = client.next().await;
        for refusal in ["badToken", "noToken"] {
            let error = &refusals[refusal];
            let message = error["message"].as_str().unwrap_or_default();
            assert!(
                message.to_lowercase().contains("token"),
                "{refusal} over {transport}: {refusals}"
            );
            assert_eq!(error["data"]["status"], 401, "{refusal}: {refusals}");
            assert!(error["data"]["detail"].is_string(), "{refusal}: {refusals}");
        }
        assert_eq!(refusals["connected"], false, "{refusals}");
        assert_eq!(refusals["active"], false, "no reconnection: {refusals}");
        let scrape = chat.metrics().await;
        assert_eq!(metric(&scrape, "tidings_ws_sessions_opened_total"), 0.0);
        assert_eq!(metric(&scrape, "tidings_ws_sessions"), 0.0);

        client.say(&json!({"connect": true})).await;
        assert_eq!(client.next().await, json!({"connected": true}));
        assert_eq!(
            metric(&chat.metrics().await, "tidings_ws_sessions"),
            1.0,
            "the gauge counts Socket.IO sessions ({transport})"
        );
        client.say(&json!({"done": true})).await;
        client.finish().await;
    }
}

/// 50 messages sent over HTTP reach a Socket.IO socket in seq order 1..50, none missing, on
/// each transport (on long-polling, many packets to one poll).
#[tokio::test]
async fn messages_sent_over_http_reach_a_socket_in_order() {
    const COUNT: u64 = 50;
    let chat = chat_server(&["--rate-limit", "0"]).await;
    for transport in TRANSPORTS {
        let conversation = format!("c-{transport}");
        chat.conversation("alice", &conversation, &["bob"]).await;
        let mut config = config(&chat, "receive", &conversation, transport);
        config["count"] = json!(COUNT);
        let mut client = Client::start(SCRIPT, &config);
        assert_eq!(client.next().await, json!({"ready": true}));
        let mut contents = Vec::new();
        for i in 1..=COUNT {
            let content = format!("m{i} over {transport}");
            chat.send("alice", &conversation, &content).await;
            contents.push(content);
        }
        let result = client.next().await;
        client.finish().await;
        assert_eq!(
            result["seqs"],
            json!((1..=COUNT).collect::<Vec<_>>()),
            "{result}"
        );
        assert_eq!(result["contents"], json!(contents), "{result}");
        assert_eq!(result["transport"], expected_transports(transport).1);
    }
}

/// Presence across protocols: bob online on `/ws` and on Socket.IO is one user; alice (on
/// Socket.IO) hears him online once, and offline only once his last session, on either
/// protocol, closed and the grace period passed.
#[tokio::test]
async fn presence_spans_devices_on_two_protocols() {
    for transport in TRANSPORTS {
        let chat = common::ws::ws_server("[ws]\npresenceGraceMs = 100\n").await;
        chat.conversation("alice", "c1", &["bob"]).await;
        let mut alice = Client::start(SCRIPT, &config(&chat, "presence", "c1", transport));
        assert_eq!(alice.next().await, json!({"ready": true}));

        let bob_ws = common::ws::connect(&chat, "bob").await;
        alice.say(&json!({"presence": "online"})).await;
        let heard = alice.next().await;
        assert_eq!(heard["presence"][0]["userId"], "bob", "{heard}");
        assert_eq!(heard["presence"][0]["status"], "online", "{heard}");

        alice.say(&json!({"connect": "bob"})).await;
        alice.next().await;
        bob_ws.close().await;
        // Three grace periods: an offline would have been sent by now. Bob's message, sent
        // afterwards, marks the point alice must have heard it by.
        tokio::time::sleep(Duration::from_millis(300)).await;
        chat.send("bob", "c1", "still here").await;
        alice.say(&json!({"message": "still here"})).await;
        let heard = alice.next().await;
        assert_eq!(
            heard["presence"].as_array().map(Vec::len),
            Some(1),
            "online once, no offline while the Socket.IO session is open ({transport}): {heard}"
        );

        alice.say(&json!({"disconnect": "bob"})).await;
        alice.next().await;
        alice.say(&json!({"presence": "offline"})).await;
        alice.next().await;
        alice.say(&json!({"done": true})).await;
        let heard = alice.next().await;
        alice.finish().await;
        let presence = heard["presence"].as_array().expect("presence events");
        let statuses: Vec<(&Value, &Value)> = presence
            .iter()
            .map(|p| (&p["userId"], &p["status"]))
            .collect();
        assert_eq!(
            statuses,
            [
                (&json!("bob"), &json!("online")),
                (&json!("bob"), &json!("offline"))
            ],
            "{transport}: {heard}"
        );
        assert!(presence[1]["lastSeen"].is_string(), "{heard}");
    }
}

/// Messages sent over HTTP reach a `/ws` session, a SignalR connection (joined) and a
/// Socket.IO socket of the same user alike: the same ids, in the same seq order.
#[tokio::test]
async fn one_message_reaches_a_session_of_each_protocol() {
    const COUNT: usize = 5;
    for transport in TRANSPORTS {
        let chat = chat_server(&[]).await;
        chat.conversation("alice", "c1", &["bob"]).await;
        let mut config = config(&chat, "receive", "c1", transport);
        config["count"] = json!(COUNT);
        let mut socketio = Client::start(SCRIPT, &config);
        let mut signalr = Client::start("signalr_chat.mjs", &config);
        assert_eq!(socketio.next().await, json!({"ready": true}));
        assert_eq!(signalr.next().await, json!({"ready": true}));
        let mut ws = common::ws::connect(&chat, "bob").await;

        let mut ids = Vec::new();
        for i in 1..=COUNT {
            let ack = chat.send("alice", "c1", &format!("m{i}")).await;
            ids.push(ack["id"].clone());
        }
        let mut over_ws = Vec::new();
        for _ in 0..COUNT {
            over_ws.push(ws.next_message().await);
        }
        let over_socketio = socketio.next().await;
        socketio.finish().await;
        let over_signalr = signalr.next().await;
        signalr.finish().await;

        let seqs = json!((1..=COUNT).collect::<Vec<_>>());
        let ws_ids: Vec<&Value> = over_ws.iter().map(|m| &m["id"]).collect();
        let ws_seqs: Vec<&Value> = over_ws.iter().map(|m| &m["seq"]).collect();
        assert_eq!(json!(ws_ids), json!(ids), "/ws");
        assert_eq!(json!(ws_seqs), seqs, "/ws");
        for (protocol, result) in [("Socket.IO", &over_socketio), ("SignalR", &over_signalr)] {
            assert_eq!(
                result["ids"],
                json!(ids),
                "{protocol} ({transport}): {result}"
            );
            assert_eq!(result["seqs"], seqs, "{protocol} ({transport}): {result}");
        }
    }
}
