//! `message.new` at library level: none for a user who is online, and none twice when the
//! `notify` group replays events it had already turned into notifications (a crash between the
//! append and the commit).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::node::{self, read_all, Node};
use crate::log::ResetTo;
use crate::pipeline::notify::{
    self, LiveSessions, Notification, NOTIFICATIONS_TOPIC, NOTIFY_GROUP,
};
use crate::pipeline::EVENTS_TOPIC;
use crate::store::{now_rfc3339, ChatCommand, DeleteMessage, EditMessage, SendMessage};

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
        &crate::pipeline::Supervision::default(),
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
        at: now_rfc3339(),
    });
    node.applied(node.submit(&edit).await).await;
    let delete = ChatCommand::Delete(DeleteMessage {
        conversation_id: "room".into(),
        message_id: first.id.clone(),
        sender_id: "ann".into(),
        at: now_rfc3339(),
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
