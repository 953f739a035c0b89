//! Basic behaviour of the embedded log through its public API: append, read, wait, groups,
//! retention and reopen.

use std::time::Duration;

use tidings::log::{Log, LogConfig, LogError, ReadLimits, Record, ResetTo, TopicConfig};

fn open(dir: &std::path::Path) -> Log {
    Log::open(LogConfig::new(dir)).expect("open log")
}

#[tokio::test]
async fn appended_records_read_back_in_order_with_dense_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("chat", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    let acks = log
        .append(
            "chat",
            (0..5).map(|i| Record::new(format!("m{i}"))).collect(),
        )
        .await
        .unwrap();
    assert_eq!(
        acks.iter().map(|a| a.offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    let more = log.append("chat", vec![Record::new("m5")]).await.unwrap();
    assert_eq!(more[0].offset, 5);

    let records = log.read("chat", 0, 2, ReadLimits::records(3)).unwrap();
    let values: Vec<_> = records
        .iter()
        .map(|r| String::from_utf8(r.value.clone()).unwrap())
        .collect();
    assert_eq!(values, vec!["m2", "m3", "m4"]);
    assert_eq!(
        log.read("chat", 0, 6, ReadLimits::default()).unwrap().len(),
        0
    );
    assert!(matches!(
        log.read("chat", 0, 7, ReadLimits::default()),
        Err(LogError::OffsetOutOfRange {
            earliest: 0,
            latest: 6,
            ..
        })
    ));
}

#[tokio::test]
async fn keyed_records_keep_their_partition_and_order_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.create_topic("t", TopicConfig::with_partitions(4))
            .await
            .unwrap();
        for i in 0..20 {
            log.append(
                "t",
                vec![Record::keyed(format!("k{}", i % 3), format!("{i}"))],
            )
            .await
            .unwrap();
        }
    }
    let log = open(dir.path());
    let info = log.describe_topic("t").unwrap();
    assert_eq!(info.partitions.iter().map(|p| p.high).sum::<u64>(), 20);
    for key in ["k0", "k1", "k2"] {
        let partition = tidings::log::partition_for_key(key.as_bytes(), 4);
        let values: Vec<u32> = log
            .read("t", partition, 0, ReadLimits::default())
            .unwrap()
            .into_iter()
            .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
            .map(|r| String::from_utf8(r.value).unwrap().parse().unwrap())
            .collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "{key}: {values:?}");
        assert!(!values.is_empty());
    }
    let next = log
        .append("t", vec![Record::keyed("k0", "x")])
        .await
        .unwrap();
    let partition = tidings::log::partition_for_key(b"k0", 4);
    assert_eq!(next[0].partition, partition);
    assert_eq!(next[0].offset, info.partitions[partition as usize].high);
}

#[tokio::test]
async fn a_waiting_reader_wakes_when_a_record_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("t", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    assert!(!log
        .wait_for("t", 0, 0, Duration::from_millis(20))
        .await
        .unwrap());
    let writer = log.clone();
    let waiter =
        tokio::spawn(async move { log.wait_for("t", 0, 0, Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    writer.append("t", vec![Record::new("x")]).await.unwrap();
    assert!(waiter.await.unwrap().unwrap());
}

#[tokio::test]
async fn group_offsets_commit_forward_reset_and_report_lag() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("t", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    log.append("t", (0..10).map(|i| Record::new(vec![i])).collect())
        .await
        .unwrap();
    assert_eq!(log.committed_offset("g", "t", 0).unwrap(), None);
    assert_eq!(log.group_lag("g", "t").unwrap()[0].lag, 10);
    log.commit_offset("g", "t", 0, 4).unwrap();
    assert_eq!(log.group_lag("g", "t").unwrap()[0].lag, 6);
    assert!(matches!(
        log.commit_offset("g", "t", 0, 3),
        Err(LogError::CommitRegression { .. })
    ));
    assert!(matches!(
        log.commit_offset("g", "t", 0, 11),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        log.reset_offsets("g", "t", ResetTo::Earliest).unwrap(),
        vec![(0, 0)]
    );
    assert_eq!(
        log.reset_offsets("g", "t", ResetTo::Latest).unwrap(),
        vec![(0, 10)]
    );
    assert_eq!(log.group_names().unwrap(), vec!["g".to_string()]);
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.committed_offset("g", "t", 0).unwrap(), Some(10));
}

#[tokio::test]
async fn size_retention_drops_whole_old_batches_and_reports_the_low_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut config = TopicConfig::with_partitions(1);
    config.retention_bytes = Some(2_000);
    log.create_topic("t", config).await.unwrap();
    for i in 0..50u8 {
        log.append("t", vec![Record::new(vec![i; 100])])
            .await
            .unwrap();
    }
    assert_eq!(log.enforce_retention().await.unwrap(), 1);
    let (low, high) = log.watermarks("t", 0).unwrap();
    assert!(low > 0 && high == 50, "low {low} high {high}");
    assert!(log.describe_topic("t").unwrap().partitions[0].bytes <= 2_000);
    assert!(matches!(
        log.read("t", 0, low - 1, ReadLimits::default()),
        Err(LogError::OffsetOutOfRange { earliest, .. }) if earliest == low
    ));
    let rest = log.read("t", 0, low, ReadLimits::records(1000)).unwrap();
    assert_eq!(rest.len() as u64, high - low);
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.watermarks("t", 0).unwrap(), (low, high));
}

#[tokio::test]
async fn time_retention_stops_at_a_protected_groups_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut config = TopicConfig::with_partitions(1);
    config.retention_ms = Some(1);
    config.protected_groups = vec!["store".into()];
    log.create_topic("t", config.clone()).await.unwrap();
    for i in 0..10u8 {
        log.append("t", vec![Record::new(vec![i])]).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    log.enforce_retention().await.unwrap();
    assert_eq!(
        log.watermarks("t", 0).unwrap(),
        (0, 10),
        "an uncommitted protected group keeps all"
    );

    log.commit_offset("store", "t", 0, 4).unwrap();
    log.enforce_retention().await.unwrap();
    assert_eq!(
        log.watermarks("t", 0).unwrap(),
        (4, 10),
        "kept from the committed offset on"
    );

    config.protected_groups.clear();
    log.alter_topic("t", config).await.unwrap();
    log.enforce_retention().await.unwrap();
    assert_eq!(
        log.watermarks("t", 0).unwrap(),
        (10, 10),
        "everything expired"
    );
    drop(log);
    let log = open(dir.path());
    assert_eq!(
        log.watermarks("t", 0).unwrap(),
        (10, 10),
        "an emptied partition keeps its offsets"
    );
    let next = log.append("t", vec![Record::new("after")]).await.unwrap();
    assert_eq!(next[0].offset, 10);
}

#[tokio::test]
async fn adding_partitions_keeps_existing_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("t", TopicConfig::with_partitions(2))
        .await
        .unwrap();
    log.append(
        "t",
        (0..10)
            .map(|i| Record::keyed(format!("k{i}"), "v"))
            .collect(),
    )
    .await
    .unwrap();
    let before = log.describe_topic("t").unwrap().partitions;
    log.alter_topic("t", TopicConfig::with_partitions(5))
        .await
        .unwrap();
    let after = log.describe_topic("t").unwrap().partitions;
    assert_eq!(after.len(), 5);
    assert_eq!(&after[..2], &before[..]);
    assert!(after[2..].iter().all(|p| p.high == 0));
    assert!(matches!(
        log.alter_topic("t", TopicConfig::with_partitions(3)).await,
        Err(LogError::InvalidConfig(_))
    ));
    drop(log);
    assert_eq!(
        open(dir.path()).describe_topic("t").unwrap().partitions,
        after
    );
}

/// An embedded log with the given linger and a one-partition topic `events`.
async fn with_events_topic(dir: &std::path::Path, linger: Duration) -> Log {
    let log = Log::open(LogConfig {
        linger,
        ..LogConfig::new(dir)
    })
    .expect("open log");
    log.create_topic("events", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    log
}

/// A lingering append waits for another append's sync (here a plain one, under a linger far
/// longer than the test) and is acknowledged with it, after one sync for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lingering_append_shares_the_next_appends_sync() {
    let dir = tempfile::tempdir().unwrap();
    let log = with_events_topic(dir.path(), Duration::from_secs(600)).await;
    log.create_topic("commands", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    let syncs_before = log.stats().syncs;

    let lingering = tokio::spawn({
        let log = log.clone();
        async move {
            log.append_lingering("events", 0, vec![Record::new("event")])
                .await
        }
    });
    // Not acknowledged while nothing else is synced (the watermark stays too): the window in
    // which an append synced on its own would have been answered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!lingering.is_finished(), "acknowledged before any sync");
    assert_eq!(log.watermarks("events", 0).unwrap().1, 0);

    log.append("commands", vec![Record::new("command")])
        .await
        .unwrap();
    let landed = tokio::time::timeout(Duration::from_secs(10), lingering)
        .await
        .expect("acknowledged with the next append's sync")
        .unwrap()
        .unwrap();
    assert_eq!(landed[0].offset, 0);
    assert_eq!(log.watermarks("events", 0).unwrap().1, 1);
    assert_eq!(log.stats().syncs - syncs_before, 1, "one sync for both");
}

/// With nothing else to share a sync with, a lingering append is synced once its linger has
/// passed; a barrier (`Log::sync`) syncs it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lingering_append_alone_is_synced_after_its_linger_or_by_a_barrier() {
    let dir = tempfile::tempdir().unwrap();
    let log = with_events_topic(dir.path(), Duration::from_millis(20)).await;
    let alone = log.append_lingering("events", 0, vec![Record::new("a")]);
    tokio::time::timeout(Duration::from_secs(10), alone)
        .await
        .expect("synced after its linger")
        .unwrap();

    let other_dir = tempfile::tempdir().unwrap();
    let log = with_events_topic(other_dir.path(), Duration::from_secs(600)).await;
    // `join!` polls the append first, so it is queued ahead of the barrier.
    let both = async {
        tokio::join!(
            log.append_lingering("events", 0, vec![Record::new("b")]),
            log.sync()
        )
    };
    let (landed, synced) = tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .expect("synced by the barrier");
    synced.unwrap();
    assert_eq!(landed.unwrap()[0].offset, 0);
}
