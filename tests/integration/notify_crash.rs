//! kill -9 of the server while the webhook sink delivers loses no notification: after a restart
//! on the same data directory, every message's notification reaches the receiver at least once.

use crate::common;

use std::time::Duration;

use common::chat::chat_process_in;
use common::notify::{webhook_sink, ConfigFile, Receiver};

const MESSAGES: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_delivery_loses_no_notification() {
    // A slow receiver, so that the kill lands while deliveries are in flight.
    let receiver = Receiver::start(0, Duration::from_millis(50)).await;
    let config = ConfigFile::new(&webhook_sink("push", &receiver.url(), 10));
    let args = config.args("always");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut chat = chat_process_in(tempfile::tempdir().unwrap(), &args).await;
    chat.conversation("alice", "pair", &["bob"]).await;
    let mut sent = Vec::new();
    for i in 0..MESSAGES {
        let ack = chat.send("alice", "pair", &format!("message {i}")).await;
        sent.push(ack["id"].as_str().unwrap().to_owned());
    }
    receiver
        .wait_until(Duration::from_secs(20), |r| r.len() >= 5)
        .await;
    chat.server.child.kill().unwrap(); // SIGKILL
    chat.server.child.wait().unwrap();
    let delivered_before = receiver.accepted_by_message().len();
    assert!(
        delivered_before < MESSAGES,
        "the kill came after every delivery ({delivered_before}); nothing was in flight"
    );

    let dir = std::mem::replace(&mut chat.dir, tempfile::tempdir().unwrap());
    let _restarted = chat_process_in(dir, &args).await;
    receiver
        .wait_until(Duration::from_secs(30), |_| {
            receiver.accepted_by_message().len() >= MESSAGES
        })
        .await;
    let by_message = receiver.accepted_by_message();
    for id in &sent {
        assert!(
            by_message.contains_key(id),
            "notification of {id} delivered"
        );
    }
    let total: usize = by_message.values().sum();
    println!(
        "{MESSAGES} messages: {} distinct notifications delivered, {total} deliveries \
         ({} before the kill)",
        by_message.len(),
        delivered_before
    );
}
