//! A node's replica of a partition keeps only a bounded tail in memory
//! (`cluster.replicaCacheBytes`): on a three-node NATS JetStream cluster, with a budget of a few
//! KiB, thousands of records are all read back from offset 0 in order, equal to what was
//! appended, through reads that go to the stream below the tail; a node opened afterwards
//! reads the same records with the same timestamps; a time lookup of an old record is answered
//! from the stream; and the memory each node holds stays within the budget.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use tidings::config::ClusterConfig;
use tidings::log::{JetStreamConfig, Log, ReadLimits, Record, StoredRecord};

use crate::common;

use common::nats::NatsCluster;

const TOPIC: &str = "history";
const RECORDS: usize = 3_000;
const BUDGET: u64 = 4 * 1024;

fn open(cluster: &NatsCluster) -> Log {
    let urls = ClusterConfig::with_urls(ClusterConfig::parse_urls(&cluster.urls()));
    let config = JetStreamConfig {
        replica_cache_bytes: BUDGET,
        ..JetStreamConfig::new("replica")
    };
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| handle.block_on(Log::open_cluster(&urls, config)))
        .expect("open the log on the cluster")
}

/// Record `i`: a key on every third, a header on every fifth, values of varying length.
fn record(i: usize) -> Record {
    let value = format!("record {i} {}", "x".repeat(i % 97));
    let record = if i.is_multiple_of(3) {
        Record::keyed(format!("key-{i}"), value)
    } else {
        Record::new(value)
    };
    if i.is_multiple_of(5) {
        record.with_header("n", i.to_string())
    } else {
        record
    }
}

/// Every record from offset 0 to the high watermark, read in order with `limits`.
fn read_all(log: &Log, limits: ReadLimits) -> Vec<StoredRecord> {
    let mut out: Vec<StoredRecord> = Vec::new();
    loop {
        let batch = log
            .read(TOPIC, 0, out.len() as u64, limits)
            .expect("read a batch");
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

fn assert_is_what_was_appended(read: &[StoredRecord]) {
    assert_eq!(read.len(), RECORDS, "nothing missing, nothing repeated");
    for (i, stored) in read.iter().enumerate() {
        let appended = record(i);
        assert_eq!(stored.offset, i as u64);
        assert_eq!(stored.key, appended.key, "key of {i}");
        assert_eq!(stored.headers, appended.headers, "headers of {i}");
        assert_eq!(stored.value, appended.value, "value of {i}");
    }
    assert!(
        read.windows(2)
            .all(|pair| pair[0].timestamp_ms <= pair[1].timestamp_ms),
        "timestamps never decrease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_cache_still_reads_every_record_from_the_stream() {
    let cluster = tokio::task::block_in_place(|| NatsCluster::start(3));
    let writer = open(&cluster);
    for start in (0..RECORDS).step_by(100) {
        let batch = (start..start + 100).map(record).collect();
        let appended = writer.append_to(TOPIC, 0, batch).await.expect("append");
        assert_eq!(appended.last().map(|a| a.offset), Some(start as u64 + 99));
    }
    let cached = writer.stats().cached_bytes;
    assert!(
        cached > 0 && cached <= BUDGET,
        "the writer holds {cached} bytes"
    );
    assert_eq!(writer.watermarks(TOPIC, 0).unwrap(), (0, RECORDS as u64));

    let written = read_all(&writer, ReadLimits::default());
    assert_is_what_was_appended(&written);
    let one_by_one = read_all(&writer, ReadLimits::records(1));
    assert_eq!(one_by_one, written, "batches of one read the same");

    // A node opened afterwards starts its tail near the end, and knows the whole stream.
    let later = open(&cluster);
    assert_eq!(later.watermarks(TOPIC, 0).unwrap(), (0, RECORDS as u64));
    let cached = later.stats().cached_bytes;
    assert!(
        cached > 0 && cached <= BUDGET,
        "the later node holds {cached} bytes"
    );
    let read_later = read_all(&later, ReadLimits::default());
    assert_eq!(
        read_later, written,
        "same offsets, timestamps, keys, headers and values on both nodes"
    );

    // An old record's time is looked up in the stream.
    for i in [0, 1, 10, 1_234] {
        let at = written[i].timestamp_ms;
        let expected = written.partition_point(|r| r.timestamp_ms < at) as u64;
        assert_eq!(later.offset_for_time(TOPIC, 0, at).unwrap(), expected);
    }
    assert_eq!(later.offset_for_time(TOPIC, 0, i64::MIN).unwrap(), 0);
    assert_eq!(
        later.offset_for_time(TOPIC, 0, i64::MAX).unwrap(),
        RECORDS as u64
    );

    // Any read, from anywhere, within any limits, is a prefix of what is there from that offset.
    let mut runner = TestRunner::new(ProptestConfig::with_cases(64));
    let reads = (0..RECORDS as u64, 1..300_usize, 1..8_192_usize);
    runner
        .run(&reads, |(offset, max_records, max_bytes)| {
            let limits = ReadLimits {
                max_records,
                max_bytes,
            };
            let batch = later.read(TOPIC, 0, offset, limits).expect("read");
            let expected = &written[offset as usize..];
            prop_assert!(!batch.is_empty() && batch.len() <= max_records);
            prop_assert_eq!(&batch[..], &expected[..batch.len()]);
            let bytes: usize = batch.iter().map(StoredRecord::size).sum();
            prop_assert!(batch.len() == 1 || bytes <= max_bytes);
            Ok(())
        })
        .expect("every read is what the stream holds");

    assert!(later.stats().cached_bytes <= BUDGET);
    writer.shutdown();
    later.shutdown();
}
