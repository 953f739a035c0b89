//! The webhook sink against a real local HTTP receiver: every request is signed (HMAC-SHA256 of
//! timestamp "." body, with a fresh timestamp); 503 answers are retried until the receiver
//! accepts. A log sink configured next to it writes the notification as a `tidings::notify`
//! line, and `/metrics` counts both deliveries.

use crate::common;

use std::time::Duration;

use common::notify::{bus_process_with_config, webhook_sink, Receiver};
use common::server::{sigterm, wait_exit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_notification_is_retried_after_503_until_accepted() {
    let receiver = Receiver::start(2, Duration::ZERO).await;
    let config = format!(
        "{}\n[[notify.sinks]]\nname = \"edge\"\ntype = \"log\"\n",
        webhook_sink("push", &receiver.url(), 5)
    );
    let (mut bus, _config) =
        bus_process_with_config(&config, &["--log-level", "warn,tidings::notify=info"]).await;
    let chat = &bus.chat;
    chat.conversation("alice", "pair", &["bob"]).await;
    let ack = chat.send("alice", "pair", "are you there?").await;
    let base = chat.server.base.clone();

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

    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for sink in ["push", "edge"] {
        let counted = metrics.lines().any(|line| {
            line.starts_with("tidings_notify_deliveries_total{")
                && line.contains(&format!("sink=\"{sink}\""))
                && line.contains("outcome=\"delivered\"")
                && line.ends_with(" 1")
        });
        assert!(counted, "{sink} counted once in {metrics}");
    }

    sigterm(&bus.chat.server);
    assert!(wait_exit(&mut bus.chat.server, Duration::from_secs(20)).success());
    let stderr = bus.chat.server.log.to_end();
    let line = stderr
        .lines()
        .find(|l| l.contains("tidings::notify:") && l.contains("sink=edge"))
        .unwrap_or_else(|| panic!("a log-sink line in {stderr}"));
    assert!(line.contains("recipient_id=bob"), "{line}");
    assert!(
        line.contains(&format!("message_id={}", ack["id"].as_str().unwrap())),
        "{line}"
    );
}
