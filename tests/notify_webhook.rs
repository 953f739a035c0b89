//! The webhook sink against a real local HTTP receiver: every request is signed (HMAC-SHA256 of
//! timestamp "." body, with a fresh timestamp); 503 answers are retried until the receiver
//! accepts; and a log sink configured next to it does not hold the webhook back.

mod common;

use std::time::Duration;

use common::notify::{bus_with_config, webhook_sink, Receiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_notification_is_retried_after_503_until_accepted() {
    let receiver = Receiver::start(2, Duration::ZERO).await;
    let config = format!(
        "{}\n[[notify.sinks]]\nname = \"edge\"\ntype = \"log\"\n",
        webhook_sink("push", &receiver.url(), 5)
    );
    let (bus, _config) = bus_with_config(&config).await;
    let chat = &bus.chat;
    chat.conversation("alice", "pair", &["bob"]).await;
    let ack = chat.send("alice", "pair", "are you there?").await;

    receiver
        .wait_until(Duration::from_secs(20), |requests| {
            requests.iter().any(|r| r.status == 200)
        })
        .await;
    let requests = receiver.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200], "two failures, then success");
    for request in &requests {
        assert!(request.signed, "signature verifies: {request:?}");
        assert!(request.fresh, "timestamp is now: {request:?}");
        assert_eq!(
            request.body, requests[0].body,
            "every attempt sends the same body"
        );
    }
    let body = &requests[0].body;
    assert_eq!(body["recipientId"], "bob");
    assert_eq!(body["senderId"], "alice");
    assert_eq!(body["messageId"], ack["id"]);
    assert_eq!(body["messageContent"], "are you there?");
}
