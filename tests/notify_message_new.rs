//! `message.new`: one notification per participant other than the sender who has no live
//! session, with the contract's exact fields; none for edits and deletes; none for a user who is
//! online; none twice when the `notify` group replays events it had already turned into
//! notifications (a crash between the append and the commit); and none missing when the server
//! is stopped right after the last send (the group drains after the store's relay).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::bus::Bus;
use common::node::{self, read_all, Node};
use common::notify::wait_records;
use common::server::{sigterm, wait_exit};
use reqwest::Method;
use serde_json::{json, Value};
use tidings::log::ResetTo;
use tidings::pipeline::notify::{
    self, LiveSessions, Notification, NOTIFICATIONS_TOPIC, NOTIFY_GROUP,
};
use tidings::pipeline::EVENTS_TOPIC;
use tidings::store::{ChatCommand, DeleteMessage, EditMessage, SendMessage};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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

/// Users in the set are online.
struct Online(BTreeSet<String>);

impl LiveSessions for Online {
    fn has_live_session(&self, user_id: &str) -> bool {
        self.0.contains(user_id)
    }
}

struct Notifier {
    stop: CancellationToken,
    tasks: TaskTracker,
}

async fn start_notify(node: &Node, online: &[&str]) -> Notifier {
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let live = Arc::new(Online(online.iter().map(|u| (*u).to_owned()).collect()));
    notify::start(
        node.log.clone(),
        node.store.clone(),
        live,
        notify::NotifySettings::default(),
        tidings::pipeline::WorkerHealth::default(),
        stop.clone(),
        &tasks,
    )
    .await
    .expect("start notify");
    Notifier { stop, tasks }
}

impl Notifier {
    async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Waits until `messages.sent` holds `events` events and the `notify` group committed them all.
async fn wait_notified(node: &Node, events: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lags = node.log.group_lag(NOTIFY_GROUP, EVENTS_TOPIC).unwrap();
        let relayed: u64 = lags.iter().map(|p| p.high).sum();
        let committed: u64 = lags.iter().map(|p| p.committed.unwrap_or(0)).sum();
        if relayed == events && committed == events {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{committed} of {relayed} events notified, {events} expected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// (content, recipient) of every notification, sorted (partitions have no order between them).
fn notified(node: &Node) -> Vec<(String, String)> {
    let mut got: Vec<(String, String)> = read_all(&node.log, NOTIFICATIONS_TOPIC)
        .iter()
        .map(|r| serde_json::from_slice::<Notification>(&r.value).unwrap())
        .map(|n| (n.message_content, n.recipient_id))
        .collect();
    got.sort();
    got
}

async fn send(node: &Node, from: &str, text: &str) -> SendMessage {
    let send = SendMessage::new("room", from, from, text);
    let landed = node.submit(&ChatCommand::Send(send.clone())).await;
    node.applied(landed).await;
    send
}

#[tokio::test]
async fn online_users_get_none_and_a_replay_of_notified_events_repeats_none() {
    let dir = tempfile::tempdir().unwrap();
    let node = node::start(dir.path(), node::config(2)).await;
    node.create_conversation("ann", "room", vec!["bob".into(), "cy".into()])
        .await;
    let notifier = start_notify(&node, &["bob"]).await;
    let first = send(&node, "ann", "one").await;
    let edit = ChatCommand::Edit(EditMessage {
        conversation_id: "room".into(),
        message_id: first.id.clone(),
        sender_id: "ann".into(),
        content: "one!".into(),
        at: tidings::store::now_rfc3339(),
    });
    node.applied(node.submit(&edit).await).await;
    let delete = ChatCommand::Delete(DeleteMessage {
        conversation_id: "room".into(),
        message_id: first.id.clone(),
        sender_id: "ann".into(),
        at: tidings::store::now_rfc3339(),
    });
    node.applied(node.submit(&delete).await).await;
    send(&node, "cy", "two").await;
    wait_notified(&node, 4).await;
    // bob is online: nothing for him; ann sent "one", cy sent "two".
    assert_eq!(
        notified(&node),
        [("one".into(), "cy".into()), ("two".into(), "ann".into())]
    );

    // As if the process had died after appending but before committing: the group starts again
    // from the first event, and finds the notifications already there.
    notifier.stop().await;
    node.log
        .reset_offsets(NOTIFY_GROUP, EVENTS_TOPIC, ResetTo::Earliest)
        .unwrap();
    let notifier = start_notify(&node, &["bob"]).await;
    send(&node, "ann", "three").await;
    wait_notified(&node, 5).await;
    assert_eq!(
        notified(&node),
        [
            ("one".into(), "cy".into()),
            ("three".into(), "cy".into()),
            ("two".into(), "ann".into()),
        ]
    );
    notifier.stop().await;
    node.stop().await;
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
