//! `resume` against the real binary: after a disconnect, a session gets exactly the messages it
//! missed, in order, then the live ones; with sends racing the replay there is still no gap
//! and no duplicate; conversations the user is not in are named in a 404 error frame while the
//! others are replayed.

use crate::common;

use std::time::Duration;

use common::chat::chat_server;
use common::ws::{connect, message_seqs};
use serde_json::json;

#[tokio::test]
async fn resume_replays_exactly_the_missed_messages_in_order_then_live_ones() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let mut bob = connect(&chat, "bob").await;
    for n in 1..=2 {
        chat.send("ann", "c", &format!("m{n}")).await;
    }
    let seen = message_seqs(&bob.until(|f| f["message"]["seq"] == 2).await);
    assert_eq!(seen, [1, 2]);
    bob.close().await;

    for n in 3..=5 {
        chat.send("ann", "c", &format!("m{n}")).await;
    }
    chat.wait_messages("ann", "c", 5, Duration::from_secs(5))
        .await;
    let mut bob = connect(&chat, "bob").await;
    bob.send(json!({"type": "resume", "ref": "r", "conversations": {"c": 2}}))
        .await;
    let frames = bob.until(|f| f["type"] == "ack" && f["ref"] == "r").await;
    let replayed: Vec<_> = frames
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["message"]["content"].clone())
        .collect();
    assert_eq!(replayed, [json!("m3"), json!("m4"), json!("m5")]);

    chat.send("ann", "c", "m6").await;
    let live = bob.next_message().await;
    assert_eq!(
        (live["seq"].clone(), live["content"].clone()),
        (json!(6), json!("m6"))
    );
}

#[tokio::test]
async fn sends_racing_a_resume_leave_no_gap_and_no_duplicate() {
    const TOTAL: u64 = 120;
    let chat = std::sync::Arc::new(chat_server(&["--rate-limit", "0"]).await);
    chat.conversation("ann", "c", &["bob"]).await;
    for n in 1..=40 {
        chat.send("ann", "c", &format!("m{n}")).await;
    }
    let sender = {
        let chat = chat.clone();
        tokio::spawn(async move {
            for n in 41..=TOTAL {
                chat.send("ann", "c", &format!("m{n}")).await;
            }
        })
    };
    let mut bob = connect(&chat, "bob").await;
    bob.send(json!({"type": "resume", "conversations": {"c": 0}}))
        .await;
    let frames = bob.until(|f| f["message"]["seq"] == TOTAL).await;
    sender.await.unwrap();
    let seqs = message_seqs(&frames);
    let expected: Vec<u64> = (1..=TOTAL).collect();
    assert_eq!(seqs, expected, "every message once, in order");
}

#[tokio::test]
async fn unknown_conversations_in_a_resume_are_named_and_the_others_replayed() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "mine", &["bob"]).await;
    chat.conversation("eve", "secret", &[]).await;
    chat.send("ann", "mine", "hello").await;
    chat.wait_messages("ann", "mine", 1, Duration::from_secs(5))
        .await;
    let mut bob = connect(&chat, "bob").await;
    bob.send(json!({"type": "resume", "ref": 1,
                    "conversations": {"mine": 0, "secret": 0, "missing": 3}}))
        .await;
    let frames = bob.until(|f| f["type"] == "ack").await;
    let error = frames
        .iter()
        .find(|f| f["type"] == "error")
        .expect("an error frame");
    assert_eq!(error["status"], 404);
    assert_eq!(error["ref"], 1);
    let detail = error["detail"].as_str().unwrap();
    assert!(
        detail.contains("secret") && detail.contains("missing"),
        "{detail}"
    );
    assert!(!detail.contains("mine"), "{detail}");
    assert_eq!(message_seqs(&frames), [1]);
}
