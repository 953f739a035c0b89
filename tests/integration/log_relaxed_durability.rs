//! The relaxed durability modes through the public API: in `interval` mode an acknowledged
//! record becomes readable by the periodic sync alone (no later append or `sync()` needed), and
//! in `never` mode at once; `sync()` makes everything readable in both.

use std::time::Duration;

use tidings::log::{Durability, Log, LogConfig, ReadLimits, Record, TopicConfig};

async fn open(dir: &std::path::Path, durability: Durability) -> Log {
    let mut config = LogConfig::new(dir);
    config.durability = durability;
    let log = Log::open(config).expect("open log");
    log.create_topic("t", TopicConfig::with_partitions(1))
        .await
        .expect("create topic");
    log
}

#[tokio::test]
async fn interval_mode_publishes_acknowledged_records_at_the_periodic_sync() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::Interval(Duration::from_millis(20))).await;
    let acks = log.append("t", vec![Record::new("a")]).await.unwrap();
    assert_eq!(acks[0].offset, 0);
    // Nothing else is appended: only the writer's deadline can publish the record.
    let published = log
        .wait_for("t", 0, 0, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(published, "the periodic sync never published offset 0");
    assert_eq!(log.read("t", 0, 0, ReadLimits::default()).unwrap().len(), 1);
    assert!(log.stats().syncs >= 1);
}

#[tokio::test]
async fn never_mode_publishes_at_once_and_sync_still_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::Never).await;
    log.append("t", vec![Record::new("a"), Record::new("b")])
        .await
        .unwrap();
    assert_eq!(log.watermarks("t", 0).unwrap(), (0, 2));
    let syncs = log.stats().syncs;
    log.sync().await.unwrap();
    assert!(log.stats().syncs > syncs, "sync() did not sync");
}
