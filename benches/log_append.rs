//! Criterion benchmarks of the embedded log, with their references measured in the same run:
//! - `append/64x1/always`: 64 producers each awaiting its ack (durable group commit);
//! - `append/64x16/always`: the same with 16 appends in flight each;
//! - `reference/fdatasync_200B`: the disk's rate of one write + fdatasync per record;
//! - `reference/sled_insert_per_key_no_sync`: one sled key per record, nothing synced;
//! - `read/1000_records`: reading 1,000 stored 200-byte records from a partition.
//!
//! Each append iteration appends `ROUND` records, so throughput is reported per record.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tidings::log::{Durability, Log, LogConfig, ReadLimits, Record, TopicConfig};

const ROUND: u64 = 6_400;
const SIZE: usize = 200;

fn open_log(dir: &std::path::Path, durability: Durability) -> Log {
    let mut config = LogConfig::new(dir);
    config.durability = durability;
    Log::open(config).expect("open log")
}

async fn append_round(log: &Log, producers: u64, in_flight: u64) {
    let appenders = producers * in_flight;
    let per_appender = ROUND / appenders;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..appenders {
        let log = log.clone();
        tasks.spawn(async move {
            for _ in 0..per_appender {
                log.append("bench", vec![Record::new(vec![b'x'; SIZE])])
                    .await
                    .expect("append");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("producer task");
    }
}

fn appends(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(ROUND));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for (producers, in_flight) in [(64, 1), (64, 16)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = open_log(dir.path(), Durability::Always);
        runtime
            .block_on(log.create_topic("bench", TopicConfig::with_partitions(1)))
            .expect("topic");
        group.bench_function(format!("{producers}x{in_flight}/always"), |b| {
            b.to_async(&runtime)
                .iter(|| append_round(&log, producers, in_flight));
        });
    }
    group.finish();
}

fn references(c: &mut Criterion) {
    let mut group = c.benchmark_group("reference");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    let dir = tempfile::tempdir().expect("temp dir");

    group.throughput(Throughput::Elements(1));
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("fsync"))
        .expect("reference file");
    group.bench_function("fdatasync_200B", |b| {
        b.iter(|| {
            file.write_all(&[b'x'; SIZE]).expect("write");
            file.sync_data().expect("fdatasync");
        });
    });

    group.throughput(Throughput::Elements(ROUND));
    let db = sled::Config::new()
        .path(dir.path().join("sled"))
        .flush_every_ms(None)
        .open()
        .expect("sled");
    let mut next: u64 = 0;
    group.bench_function("sled_insert_per_key_no_sync", |b| {
        b.iter(|| {
            for _ in 0..ROUND {
                db.insert(next.to_be_bytes(), &[b'x'; SIZE][..])
                    .expect("insert");
                next += 1;
            }
        });
    });
    group.finish();
}

fn reads(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open_log(dir.path(), Durability::Never);
    runtime.block_on(async {
        for _ in 0..100 {
            let records = (0..100).map(|_| Record::new(vec![b'x'; SIZE])).collect();
            log.append("bench", records).await.expect("append");
        }
    });
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("1000_records", |b| {
        b.iter(|| {
            let records = log
                .read("bench", 0, 4_000, ReadLimits::records(1_000))
                .expect("read");
            assert_eq!(records.len(), 1_000);
        });
    });
    group.finish();
}

criterion_group!(benches, appends, references, reads);
criterion_main!(benches);
