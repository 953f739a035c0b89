//! `/metrics` reports each consumer group's lag and committed offset per partition, so an
//! operator can see the write-behind store fall behind.

mod common;

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

    let text = chat.metrics().await;
    assert!(text.contains("# TYPE tidings_consumer_lag gauge"), "{text}");
    let committed: u64 = text
        .lines()
        .filter(|l| {
            l.starts_with("tidings_consumer_committed_offset{group=\"store\",topic=\"messages\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        committed, 3,
        "the store committed past the three sends:\n{text}"
    );
    let store_lag: u64 = text
        .lines()
        .filter(|l| l.starts_with("tidings_consumer_lag{group=\"store\",topic=\"messages\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(store_lag, 0, "{text}");
}
