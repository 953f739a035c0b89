//! The SignalR hub (`/chathub`) with the real `@microsoft/signalr` client in Node against the
//! real binary: negotiation and skipNegotiation, join, send with its completion, receive,
//! typing, read receipts, leave, hub errors, a non-participant refused, and messages sent over
//! HTTP reaching a SignalR session in order.

mod common;

use common::chat::{chat_server, problem, Chat};
use common::clients::{self, Client};
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

    // The refused send changed nothing: the conversation holds alice's three messages.
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
