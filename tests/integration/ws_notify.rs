//! The hub and offline notifications together: a participant with a live WebSocket session gets
//! the message over the socket and no `message.new`; an offline one gets `message.new`.

use crate::common;

use std::time::Duration;

use common::bus::Bus;
use common::notify::wait_records;
use common::ws::connect;
use serde_json::json;

/// The topic `message.new` notifications go to (docs/api.md).
const NOTIFICATIONS_TOPIC: &str = "message.new";

#[tokio::test]
async fn an_online_participant_gets_the_frame_and_only_offline_ones_are_notified() {
    let bus = Bus::start(&[]).await;
    let chat = &bus.chat;
    chat.conversation("alice", "team", &["bob", "carol"]).await;
    let mut bob = connect(chat, "bob").await;
    bob.send(json!({"type": "ping"})).await;
    for text in ["one", "two"] {
        chat.send("alice", "team", text).await;
        assert_eq!(bob.next_message().await["content"], text);
    }
    // Both messages are in `message.new` once two records are: the group keeps their order.
    let records = wait_records(&bus, NOTIFICATIONS_TOPIC, 2, Duration::from_secs(10)).await;
    let recipients: Vec<_> = records
        .iter()
        .map(|r| r["value"]["recipientId"].clone())
        .collect();
    assert_eq!(recipients, [json!("carol"), json!("carol")], "{records:?}");
}
