//! What any log backend must do, stated once: an acknowledged append survives a reopen (a
//! lingering one too, and it lands where it was told), offsets
//! are dense per partition (also across concurrent appenders), reads return what was appended in
//! order, a waiter on the high watermark wakes when a record is appended and not before, commits
//! only move forward, committed offsets survive a reopen, and topic administration refuses what
//! exists or does not.
//!
//! The checks in [`suite`] take a `make` function that opens a backend on a directory (again on
//! the same directory for a reopen); [`conformance_tests!`] turns them into one test each, and
//! [`suite::run_all`] runs them one after the other (for a backend whose tests share one costly
//! fixture, such as a NATS cluster). A backend's test file includes this module and calls one of
//! them with its own `make`: `tests/integration/log_conformance.rs` for the embedded log,
//! `tests/integration/cluster_log.rs` for the log on JetStream.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use tidings::log::Log;

/// Opens a backend on a directory; called again on the same directory to reopen it, after every
/// handle of the previous one was dropped.
pub type Make = fn(&Path) -> Log;

pub mod suite {
    use std::collections::BTreeSet;

    use tidings::log::{LogError, ReadLimits, Record, ResetTo, TopicConfig};

    use super::*;

    /// Generous: a check waits this long for something that must happen, never for something
    /// that must not.
    const PATIENCE: Duration = Duration::from_secs(10);

    fn all() -> ReadLimits {
        ReadLimits {
            max_records: 100_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }

    async fn with_topic(make: Make, dir: &Path, topic: &str, partitions: u32) -> Log {
        let log = make(dir);
        log.create_topic(topic, TopicConfig::with_partitions(partitions))
            .await
            .expect("create topic");
        log
    }

    fn close(log: Log) {
        log.shutdown();
        drop(log);
    }

    fn values(log: &Log, topic: &str, partition: u32) -> Vec<(u64, Vec<u8>)> {
        log.read(topic, partition, 0, all())
            .expect("read")
            .into_iter()
            .map(|r| (r.offset, r.value))
            .collect()
    }

    /// Every append that was acknowledged is there, at the acknowledged offset, after reopening.
    pub async fn acknowledged_appends_survive_reopen(make: Make) {
        let dir = tempfile::tempdir().unwrap();
        let log = with_topic(make, dir.path(), "t", 2).await;
        let mut acked = Vec::new();
        for n in 0..20u32 {
            let record = Record::keyed(format!("k{}", n % 5), format!("v{n}"));
            let landed = log.append("t", vec![record]).await.expect("append");
            acked.push((landed[0], format!("v{n}").into_bytes()));
        }
        close(log);

        let log = make(dir.path());
        for (appended, value) in acked {
            let read = log
                .read("t", appended.partition, appended.offset, all())
                .expect("read after reopen");
            assert_eq!(read.first().map(|r| &r.value), Some(&value), "{appended:?}");
        }
    }

    /// A lingering append resolves (within the patience: its sync may wait only for a moment),
    /// is readable at the offsets it was told once it has, and survives a reopen, as any
    /// acknowledged append; it shares the partition's dense offsets with plain appends.
    pub async fn lingering_appends_are_durable_once_acknowledged(make: Make) {
        let dir = tempfile::tempdir().unwrap();
        let log = with_topic(make, dir.path(), "t", 2).await;
        log.append_to("t", 1, vec![Record::new("plain")])
            .await
            .expect("append");
        let records = vec![Record::new("lingering-0"), Record::new("lingering-1")];
        let landed = tokio::time::timeout(PATIENCE, log.append_lingering("t", 1, records))
            .await
            .expect("a lingering append resolves by itself")
            .expect("lingering append");
        assert_eq!(
            landed
                .iter()
                .map(|a| (a.partition, a.offset))
                .collect::<Vec<_>>(),
            vec![(1, 1), (1, 2)]
        );
        assert_eq!(log.watermarks("t", 1).expect("watermarks").1, 3);
        close(log);

        let log = make(dir.path());
        assert_eq!(
            values(&log, "t", 1),
            vec![
                (0, b"plain".to_vec()),
                (1, b"lingering-0".to_vec()),
                (2, b"lingering-1".to_vec())
            ]
        );
    }

    /// Offsets of one partition are 0, 1, 2 … without a gap or a repeat, however many
    /// appenders race, and each offset holds what its appender was told.
    pub async fn offsets_are_dense_across_concurrent_appenders(make: Make) {
        let dir = tempfile::tempdir().unwrap();
        let log = with_topic(make, dir.path(), "t", 1).await;
        let appenders = (0..8).map(|writer| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut landed = Vec::new();
                for n in 0..25 {
                    let batch: Vec<Record> = (0..1 + n % 3)
                        .map(|i| Record::new(format!("{writer}/{n}/{i}")))
                        .collect();
                    let expected: Vec<Vec<u8>> = batch.iter().map(|r| r.value.clone()).collect();
                    let acks = log.append_to("t", 0, batch).await.expect("append");
                    landed.extend(acks.into_iter().map(|a| a.offset).zip(expected));
                }
                landed
            })
        });
        let mut landed = Vec::new();
        for appender in appenders {
            landed.extend(appender.await.expect("appender task"));
        }
        landed.sort();
        let offsets: Vec<u64> = landed.iter().map(|(offset, _)| *offset).collect();
        assert_eq!(offsets, (0..landed.len() as u64).collect::<Vec<_>>());
        assert_eq!(values(&log, "t", 0), landed, "each offset holds its record");
        assert_eq!(log.watermarks("t", 0).unwrap(), (0, landed.len() as u64));
    }

    /// A read returns the records appended, in append order, from any offset on; at the high
    /// watermark it returns nothing, past it `OffsetOutOfRange`.
    pub async fn reads_return_appends_in_order(make: Make) {
        let dir = tempfile::tempdir().unwrap();
        let log = with_topic(make, dir.path(), "t", 1).await;
        let sent: Vec<Vec<u8>> = (0..30).map(|n| format!("r{n}").into_bytes()).collect();
        for chunk in sent.chunks(7) {
            let records = chunk.iter().cloned().map(Record::new).collect();
            log.append("t", records).await.expect("append");
        }
        let read = log.read("t", 0, 10, all()).expect("read");
        let got: Vec<&Vec<u8>> = read.iter().map(|r| &r.value).collect();
        assert_eq!(got, sent[10..].iter().collect::<Vec<_>>());
        assert!(read.windows(2).all(|w| w[1].offset == w[0].offset + 1));
        assert!(log.read("t", 0, 30, all()).expect("at high").is_empty());
        assert!(matches!(
            log.read("t", 0, 31, all()),
            Err(LogError::OffsetOutOfRange { .. })
        ));
    }

    /// A waiter on the high watermark wakes once a record at its offset is readable, and does
    /// not before; a wait with nothing appended ends false at its timeout.
    pub async fn a_waiter_wakes_on_append_and_not_before(make: Make) {
        let dir = tempfile::tempdir().unwrap();
        let log = with_topic(make, dir.path(), "t", 1).await;
        let waiting = log.clone();
        let waiter = tokio::spawn(async move {
            let woke = waiting.wait_for("t", 0, 0, PATIENCE).await.expect("wait");
            let readable = waiting.read("t", 0, 0, all()).expect("read on waking");
            (woke, readable.len())
        });
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished(), "the waiter woke before any append");
        assert!(
            !log.wait_for("t", 0, 0, Duration::from_millis(10))
                .await
                .unwrap(),
            "a wait with nothing appended ends false"
        );

        log.append("t", vec![Record::new("one")]).await.unwrap();
        let (woke, readable) = tokio::time::timeout(PATIENCE, waiter)
            .await
            .expect("the waiter wakes after the append")
            .expect("waiter task");
        assert!(woke);
        assert_eq!(readable, 1, "what woke the waiter is readable");
        assert!(log.wait_for("t", 0, 0, Duration::ZERO).await.unwrap());
        assert!(
            !log.wait_for("t", 0, 1, Duration::ZERO).await.unwrap(),
            "offset 1 is not readable yet"
        );

        let mut high = log.subscribe("t", 0).unwrap();
        assert_eq!(*high.borrow_and_update(), 1);
        log.append("t", vec![Record::new("two")]).await.unwrap();
        tokio::time::timeout(PATIENCE, high.wait_for(|high| *high == 2))
            .await
            .expect("the subscription sees the new high watermark")
            .expect("log open");
    }

    /// A commit moves forward or stays; a move back is `CommitRegression` and changes nothing;
    /// past the high watermark is `OffsetOutOfRange`; only a reset moves back.
    pub async fn commits_only_move_forward(make: Make) {
        let dir = tempfile::tempdir().unwrap();
        let log = with_topic(make, dir.path(), "t", 1).await;
        let records = (0..10).map(|n| Record::new(format!("{n}"))).collect();
        log.append("t", records).await.unwrap();
        assert_eq!(log.committed_offset("g", "t", 0).unwrap(), None);
        log.commit_offset("g", "t", 0, 5).unwrap();
        log.commit_offset("g", "t", 0, 5).unwrap();
        assert!(matches!(
            log.commit_offset("g", "t", 0, 3),
            Err(LogError::CommitRegression {
                committed: 5,
                offset: 3,
                ..
            })
        ));
        assert!(matches!(
            log.commit_offset("g", "t", 0, 11),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(log.committed_offset("g", "t", 0).unwrap(), Some(5));
        log.commit_offset("g", "t", 0, 10).unwrap();
        let lag = log.group_lag("g", "t").unwrap();
        assert_eq!((lag[0].committed, lag[0].lag), (Some(10), 0));
        assert_eq!(
            log.reset_offsets("g", "t", ResetTo::Offset(2)).unwrap(),
            [(0, 2)]
        );
        assert_eq!(log.committed_offset("g", "t", 0).unwrap(), Some(2));
        assert_eq!(log.group_names().unwrap(), ["g"]);
        assert_eq!(log.group_topics("g").unwrap(), ["t"]);
    }

    /// Committed offsets are there after closing and reopening.
    pub async fn committed_offsets_survive_reopen(make: Make) {
        let dir = tempfile::tempdir().unwrap();
        let log = with_topic(make, dir.path(), "t", 2).await;
        for partition in 0..2 {
            let records = (0..4).map(|n| Record::new(format!("{n}"))).collect();
            log.append_to("t", partition, records).await.unwrap();
        }
        log.commit_offset("g", "t", 0, 3).unwrap();
        log.commit_offset("g", "t", 1, 4).unwrap();
        close(log);

        let log = make(dir.path());
        assert_eq!(log.committed_offset("g", "t", 0).unwrap(), Some(3));
        assert_eq!(log.committed_offset("g", "t", 1).unwrap(), Some(4));
        assert!(matches!(
            log.commit_offset("g", "t", 0, 2),
            Err(LogError::CommitRegression { .. })
        ));
    }

    /// Creating a topic that exists is `TopicExists`; describing, altering, deleting or reading
    /// one that does not is `UnknownTopic`; a deleted topic takes its groups'
    /// offsets with it.
    pub async fn topic_admin_refuses_what_exists_or_does_not(make: Make) {
        let dir = tempfile::tempdir().unwrap();
        let log = with_topic(make, dir.path(), "t", 2).await;
        assert!(matches!(
            log.create_topic("t", TopicConfig::with_partitions(2)).await,
            Err(LogError::TopicExists(_))
        ));
        let unknown = |e: &LogError| matches!(e, LogError::UnknownTopic(_));
        assert!(log.describe_topic("nope").is_err_and(|e| unknown(&e)));
        assert!(log
            .alter_topic("nope", TopicConfig::with_partitions(1))
            .await
            .is_err_and(|e| unknown(&e)));
        assert!(log.delete_topic("nope").await.is_err_and(|e| unknown(&e)));
        assert!(log.read("nope", 0, 0, all()).is_err_and(|e| unknown(&e)));
        assert!(log.watermarks("nope", 0).is_err_and(|e| unknown(&e)));
        // An append to an unknown topic depends on the backend's configuration (the embedded
        // log creates it by default, as Kafka's `auto.create.topics.enable`): not checked here.

        let grown = log
            .alter_topic("t", TopicConfig::with_partitions(3))
            .await
            .expect("grow");
        assert_eq!(grown.partitions.len(), 3);
        log.create_topic("u", TopicConfig::with_partitions(1))
            .await
            .unwrap();
        let names: BTreeSet<String> = log.topic_names().into_iter().collect();
        assert_eq!(names, BTreeSet::from(["t".to_owned(), "u".to_owned()]));

        log.append_to("t", 0, vec![Record::new("x")]).await.unwrap();
        log.commit_offset("g", "t", 0, 1).unwrap();
        log.delete_topic("t").await.unwrap();
        assert!(log.describe_topic("t").is_err_and(|e| unknown(&e)));
        log.create_topic("t", TopicConfig::with_partitions(1))
            .await
            .unwrap();
        assert_eq!(log.committed_offset("g", "t", 0).unwrap(), None);
        assert_eq!(log.watermarks("t", 0).unwrap(), (0, 0));
    }

    /// Every check above, one after the other; a check added above is added here too.
    pub async fn run_all(make: Make) {
        acknowledged_appends_survive_reopen(make).await;
        lingering_appends_are_durable_once_acknowledged(make).await;
        offsets_are_dense_across_concurrent_appenders(make).await;
        reads_return_appends_in_order(make).await;
        a_waiter_wakes_on_append_and_not_before(make).await;
        commits_only_move_forward(make).await;
        committed_offsets_survive_reopen(make).await;
        topic_admin_refuses_what_exists_or_does_not(make).await;
    }
}

/// One `#[tokio::test]` per check of [`suite`], for the backend that `$make` opens.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn acknowledged_appends_survive_reopen() {
            $crate::conformance::suite::acknowledged_appends_survive_reopen($make).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn lingering_appends_are_durable_once_acknowledged() {
            $crate::conformance::suite::lingering_appends_are_durable_once_acknowledged($make)
                .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn offsets_are_dense_across_concurrent_appenders() {
            $crate::conformance::suite::offsets_are_dense_across_concurrent_appenders($make).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn reads_return_appends_in_order() {
            $crate::conformance::suite::reads_return_appends_in_order($make).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_waiter_wakes_on_append_and_not_before() {
            $crate::conformance::suite::a_waiter_wakes_on_append_and_not_before($make).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn commits_only_move_forward() {
            $crate::conformance::suite::commits_only_move_forward($make).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn committed_offsets_survive_reopen() {
            $crate::conformance::suite::committed_offsets_survive_reopen($make).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn topic_admin_refuses_what_exists_or_does_not() {
            $crate::conformance::suite::topic_admin_refuses_what_exists_or_does_not($make).await;
        }
    };
}
