//! `/metrics` reports each consumer group's lag and committed offset per partition, so an
//! operator can see the write-behind store fall behind.

use crate::common;

use common::chat::chat_server;

#[tokio::test]
async fn the_store_groups_lag_and_committed_offsets_are_scraped() {
    let chat = chat_server(&[]).await;
    chat.conversation("alice", "lagged", &["bob"]).await;
    for n in 0..3 {
        chat.send("alice", "lagged", &format!("message {n}")).await;
    }
    chat.wait_messages("alice", "lagged", 3, std::time::Duration::from_secs(5))
        .await;

    // The store commits a batch once its events are relayed, a moment after the messages
    // became readable: wait for the scrape to show it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (text, committed) = loop {
        let text = chat.metrics().await;
        let committed = sum_of(
            &text,
            "tidings_consumer_committed_offset{group=\"store\",topic=\"messages\"",
        );
        if committed >= 4 || std::time::Instant::now() > deadline {
            break (text, committed);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(text.contains("# TYPE tidings_consumer_lag gauge"), "{text}");
    // Four commands: the conversation's creation and the three sends.
    assert_eq!(
        committed, 4,
        "the store committed past the creation and the three sends:\n{text}"
    );
    let store_lag = sum_of(
        &text,
        "tidings_consumer_lag{group=\"store\",topic=\"messages\"",
    );
    assert_eq!(store_lag, 0, "{text}");
}

/// The sum of the values of the scraped lines that start with `prefix`.
fn sum_of(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}
