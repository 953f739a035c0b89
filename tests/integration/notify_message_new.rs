//! `message.new`: one notification per participant other than the sender who has no live
//! session, with the contract's exact fields; none for edits and deletes; and none missing when
//! the server is stopped right after the last send (the group drains after the store's relay).
//! (None for a user who is online and none twice on a replay: `src/pipeline/tests/notify.rs`.)

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::bus::Bus;
use common::notify::wait_records;
use common::server::{sigterm, wait_exit};
use reqwest::Method;
use serde_json::{json, Value};

/// The topic `message.new` notifications go to (docs/api.md).
const NOTIFICATIONS_TOPIC: &str = "message.new";

const FIELDS: [&str; 8] = [
    "recipientId",
    "senderId",
    "senderName",
    "messageContent",
    "conversationId",
    "messageId",
    "seq",
    "timestamp",
];

async fn send_named(bus: &Bus, user: &str, name: &str, conversation: &str, text: &str) -> Value {
    let response = bus
        .http
        .post(format!(
            "{}/api/conversations/{conversation}/messages",
            bus.chat.server.base
        ))
        .bearer_auth(bus.chat.named_token(user, name))
        .json(&json!({ "content": text }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 202);
    response.json().await.expect("ack")
}

#[tokio::test]
async fn every_participant_but_the_sender_gets_the_contract_fields_and_edits_notify_nobody() {
    let bus = Bus::start(&[]).await;
    let chat = &bus.chat;
    chat.conversation("alice", "team", &["bob", "carol"]).await;
    let ack = send_named(&bus, "alice", "Alice", "team", "hello team").await;
    let id = ack["id"].as_str().unwrap();
    let records = wait_records(&bus, NOTIFICATIONS_TOPIC, 2, Duration::from_secs(10)).await;
    let stored = chat
        .get_json("alice", &format!("/api/conversations/team/messages/{id}"))
        .await;

    let mut recipients = BTreeSet::new();
    for record in &records {
        let value = &record["value"];
        let keys: BTreeSet<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys, FIELDS.into_iter().collect(), "{value}");
        assert_eq!(record["key"], value["recipientId"]);
        assert_eq!(value["senderId"], "alice");
        assert_eq!(value["senderName"], "Alice");
        assert_eq!(value["messageContent"], "hello team");
        assert_eq!(value["conversationId"], "team");
        assert_eq!(value["messageId"], id);
        assert_eq!(value["seq"], 1);
        assert_eq!(value["timestamp"], stored["sentAt"]);
        recipients.insert(value["recipientId"].as_str().unwrap().to_owned());
    }
    assert_eq!(recipients, BTreeSet::from(["bob".into(), "carol".into()]));

    // An edit and a delete, then a marker from carol: the conversation's events are handled in
    // order, so once the marker's notifications are there the edit and delete were handled.
    let path = format!("/api/conversations/team/messages/{id}");
    let edit = chat
        .call(
            Some("alice"),
            Method::PATCH,
            &path,
            Some(json!({"content": "edited"})),
        )
        .await;
    assert_eq!(edit.status(), 202);
    let delete = chat.call(Some("alice"), Method::DELETE, &path, None).await;
    assert_eq!(delete.status(), 202);
    send_named(&bus, "carol", "Carol", "team", "marker").await;
    let records = wait_records(&bus, NOTIFICATIONS_TOPIC, 4, Duration::from_secs(10)).await;
    let marker: BTreeSet<(String, String)> = records
        .iter()
        .map(|r| &r["value"])
        .filter(|v| v["messageContent"] == "marker")
        .map(|v| {
            (
                v["senderId"].as_str().unwrap().into(),
                v["recipientId"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        marker,
        BTreeSet::from([
            ("carol".into(), "alice".into()),
            ("carol".into(), "bob".into())
        ])
    );
    assert_eq!(
        records.len(),
        4,
        "edit and delete notified nobody: {records:?}"
    );
}

#[tokio::test]
async fn a_graceful_stop_right_after_the_sends_notifies_every_one_of_them() {
    let mut bus = Bus::start(&[]).await;
    let chat = &bus.chat;
    for c in 0..4 {
        chat.conversation("alice", &format!("c{c}"), &["bob"]).await;
    }
    for i in 0..40 {
        chat.send("alice", &format!("c{}", i % 4), &format!("m{i}"))
            .await;
    }
    sigterm(&bus.chat.server);
    assert!(wait_exit(&mut bus.chat.server, Duration::from_secs(20)).success());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args([
            "tail",
            "message.new",
            "--from-beginning",
            "--json",
            "--data-dir",
        ])
        .arg(bus.chat.dir.path())
        .env_remove("TIDINGS_DATA_DIR")
        .output()
        .expect("run tidings tail");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let contents: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .inspect(|record| assert_eq!(record["key"], "bob"))
        .map(|record| {
            record["value"]["messageContent"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        contents.len(),
        40,
        "one notification per message: {contents:?}"
    );
    let distinct: BTreeSet<String> = contents.into_iter().collect();
    assert_eq!(distinct, (0..40).map(|i| format!("m{i}")).collect());
}
