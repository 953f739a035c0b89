//! `tidings bench log`: durable appends from concurrent producers into the embedded log.
//!
//! Besides the log's own figures it measures, in the same run and directory, the two references
//! the log is judged against: the disk's rate of one `fdatasync` per 200-byte append, and the rate
//! of inserting the same records one per sled key with no sync at all.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::report::{progress_bar, resident_mib, LatencyReport};
use crate::log::{Durability, Log, LogConfig, ReadLimits, Record, TopicConfig};

const TOPIC: &str = "bench";

/// Options of `tidings bench log`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchLogArgs {
    /// Records to append in all.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) records: u64,
    /// Concurrent producers.
    #[arg(long, default_value_t = 64)]
    pub(crate) producers: usize,
    /// Appends each producer keeps in flight (1: wait for each ack before the next).
    #[arg(long, default_value_t = 1)]
    pub(crate) in_flight: usize,
    /// Value size of each record, in bytes.
    #[arg(long, default_value_t = 200)]
    pub(crate) size: usize,
    /// Durability mode: always, interval[:MS] or never.
    #[arg(long, default_value = "always")]
    pub(crate) durability: String,
    /// Partitions of the benchmark topic (records are unkeyed, spread round-robin).
    #[arg(long, default_value_t = 1)]
    pub(crate) partitions: u32,
    /// Total target rate in records/s (open loop); unset: as fast as acks allow. Latency is
    /// measured from each append call to its ack; how late the generator sent against its
    /// schedule is reported separately (a growing lateness means the log could not keep up).
    #[arg(long)]
    pub(crate) rate: Option<u64>,
    /// Append into this data directory and keep it (to time recovery on it); default: a
    /// temporary directory removed afterwards.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Storage-engine page cache, MiB (the log's default is 64).
    #[arg(long, default_value_t = 64)]
    pub(crate) cache_mib: u64,
    /// Skip the fdatasync-loop and sled-per-key reference measurements.
    #[arg(long)]
    pub(crate) skip_references: bool,
    /// After the run, close the log and time reopening it.
    #[arg(long)]
    pub(crate) reopen: bool,
    /// After the run, read every record back from offset 0 (a consumer lagging by the whole
    /// run) and report the rate and the process's peak memory.
    #[arg(long)]
    pub(crate) consume: bool,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub(crate) json: bool,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BenchLogReport {
    /// Durability mode the run used.
    pub(crate) durability: String,
    /// Producers.
    pub(crate) producers: usize,
    /// Appends in flight per producer.
    pub(crate) in_flight: usize,
    /// Value size.
    pub(crate) size: usize,
    /// Records appended.
    pub(crate) records: u64,
    /// Wall time of the append phase.
    pub(crate) seconds: f64,
    /// Acknowledged records per second.
    pub(crate) records_per_sec: f64,
    /// Value megabytes (10^6) per second.
    pub(crate) mb_per_sec: f64,
    /// Append latency percentiles, µs.
    pub(crate) p50_us: u64,
    /// 99th percentile, µs.
    pub(crate) p99_us: u64,
    /// 99.9th percentile, µs.
    pub(crate) p999_us: u64,
    /// With `--rate`: p99 of how late appends were sent against the schedule, µs (timer
    /// granularity is ~1 ms; far more means the log could not keep up).
    pub(crate) schedule_lateness_p99_us: Option<u64>,
    /// Flush + fdatasync rounds.
    pub(crate) syncs: u64,
    /// Records made durable per sync (the group commit's mean group size).
    pub(crate) mean_group_size: f64,
    /// Records per appender group (one storage write round; several may share a sync).
    pub(crate) records_per_write: f64,
    /// Mean duration of one flush + fdatasync, µs.
    pub(crate) mean_sync_us: f64,
    /// Bytes the data directory's storage engine takes on disk after the run.
    pub(crate) disk_bytes: u64,
    /// Disk bytes per record divided by the value size.
    pub(crate) disk_bytes_per_payload_byte: f64,
    /// Reference: appends of `size` bytes with one fdatasync each, per second.
    pub(crate) fdatasync_per_sec: Option<f64>,
    /// Reference: sled inserts, one key per record, no sync, one thread, per second.
    pub(crate) sled_per_key_per_sec: Option<f64>,
    /// `records_per_sec / fdatasync_per_sec`.
    pub(crate) ratio_to_fdatasync: Option<f64>,
    /// `records_per_sec / sled_per_key_per_sec`.
    pub(crate) ratio_to_sled_per_key: Option<f64>,
    /// Time to reopen the data directory, if `--reopen`.
    pub(crate) open_ms: Option<f64>,
    /// Records read back per second from offset 0, if `--consume`.
    pub(crate) consume_records_per_sec: Option<f64>,
    /// Largest resident set size seen while consuming, MiB.
    pub(crate) consume_peak_rss_mib: Option<f64>,
}

/// Runs the benchmark and prints its report.
pub fn run(args: BenchLogArgs) -> anyhow::Result<()> {
    let report = measure(&args)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(())
}

/// Runs the benchmark and returns its report.
pub(crate) fn measure(args: &BenchLogArgs) -> anyhow::Result<BenchLogReport> {
    anyhow::ensure!(
        args.records > 0 && args.producers > 0 && args.in_flight > 0,
        "records, producers and in-flight must be positive"
    );
    let durability: Durability = args.durability.parse()?;
    let temp = tempfile::Builder::new()
        .prefix("tidings-bench-")
        .tempdir()?;
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().join("data"));

    let (fdatasync_per_sec, sled_per_key_per_sec) = if args.skip_references {
        (None, None)
    } else {
        let fsync = fdatasync_reference(temp.path(), args.size, Duration::from_secs(2))?;
        let sled = sled_per_key_reference(
            &temp.path().join("sled-ref"),
            args.size,
            args.records.min(1_000_000),
        )?;
        (Some(fsync), Some(sled))
    };

    let mut config = LogConfig::new(&dir);
    config.durability = durability;
    config.cache_bytes = args.cache_mib * 1024 * 1024;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let log = Log::open(config.clone()).with_context(|| format!("opening {}", dir.display()))?;
    let (elapsed, latencies, lateness) = runtime.block_on(append_phase(&log, args))?;
    let stats = log.stats();
    runtime.block_on(log.sync())?;
    let consumed = if args.consume {
        Some(consume_all(&log)?)
    } else {
        None
    };
    let disk_bytes = allocated_bytes(&dir.join("engine"));
    drop(log);

    let open_ms = if args.reopen {
        let started = Instant::now();
        let reopened = Log::open(config)?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        drop(reopened);
        Some(ms)
    } else {
        None
    };

    let records_per_sec = args.records as f64 / elapsed.as_secs_f64();
    Ok(BenchLogReport {
        durability: durability.name().into(),
        producers: args.producers,
        in_flight: args.in_flight,
        size: args.size,
        records: args.records,
        seconds: elapsed.as_secs_f64(),
        records_per_sec,
        mb_per_sec: records_per_sec * args.size as f64 / 1e6,
        p50_us: latencies.quantile_us(0.5),
        p99_us: latencies.quantile_us(0.99),
        p999_us: latencies.quantile_us(0.999),
        schedule_lateness_p99_us: args.rate.map(|_| lateness.quantile_us(0.99)),
        syncs: stats.syncs,
        mean_group_size: stats.records as f64 / stats.syncs.max(1) as f64,
        records_per_write: stats.records as f64 / stats.groups.max(1) as f64,
        mean_sync_us: stats.sync_nanos as f64 / 1000.0 / stats.syncs.max(1) as f64,
        disk_bytes,
        disk_bytes_per_payload_byte: disk_bytes as f64
            / (args.records as f64 * args.size.max(1) as f64),
        fdatasync_per_sec,
        sled_per_key_per_sec,
        ratio_to_fdatasync: fdatasync_per_sec.map(|r| records_per_sec / r),
        ratio_to_sled_per_key: sled_per_key_per_sec.map(|r| records_per_sec / r),
        open_ms,
        consume_records_per_sec: consumed.map(|c| c.0),
        consume_peak_rss_mib: consumed.map(|c| c.1),
    })
}

/// Reads every partition of the benchmark topic from its first offset in pages, as a consumer
/// that lags by the whole run; returns (records/s, peak RSS in MiB while reading).
fn consume_all(log: &Log) -> anyhow::Result<(f64, f64)> {
    let topic = log.describe_topic(TOPIC)?;
    let total: u64 = topic.partitions.iter().map(|p| p.high - p.low).sum();
    let bar = progress_bar(total, "consuming");
    let started = Instant::now();
    let mut peak_rss = resident_mib(None);
    let mut read = 0u64;
    for partition in &topic.partitions {
        let mut offset = partition.low;
        while offset < partition.high {
            let records = log.read(
                TOPIC,
                partition.partition,
                offset,
                ReadLimits::records(1000),
            )?;
            let last = records
                .last()
                .context("a read below the high watermark returned nothing")?;
            offset = last.offset + 1;
            read += records.len() as u64;
            if read % 100_000 < 1000 {
                peak_rss = peak_rss.max(resident_mib(None));
                bar.set_position(read);
            }
        }
    }
    bar.finish_and_clear();
    anyhow::ensure!(read == total, "read {read} records, expected {total}");
    Ok((
        read as f64 / started.elapsed().as_secs_f64(),
        peak_rss.max(resident_mib(None)),
    ))
}

/// Appends `args.records` records from `producers × in_flight` concurrent appenders.
async fn append_phase(
    log: &Log,
    args: &BenchLogArgs,
) -> anyhow::Result<(Duration, LatencyReport, LatencyReport)> {
    if log.describe_topic(TOPIC).is_err() {
        log.create_topic(TOPIC, TopicConfig::with_partitions(args.partitions))
            .await?;
    }
    let appenders = args.producers * args.in_flight;
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(args.records, "appending");
    let payload = Arc::new(vec![b'x'; args.size]);
    let per_appender_rate = args.rate.map(|r| r as f64 / appenders as f64);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..appenders {
        let (log, next, done, payload) = (log.clone(), next.clone(), done.clone(), payload.clone());
        let total = args.records;
        tasks.spawn(async move {
            let mut latencies = LatencyReport::default();
            let mut lateness = LatencyReport::default();
            let mut sent = 0u64;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    break;
                }
                if let Some(rate) = per_appender_rate {
                    let at = started + Duration::from_secs_f64(sent as f64 / rate);
                    tokio::time::sleep_until(at.into()).await;
                    lateness.record(Instant::now().saturating_duration_since(at));
                }
                let sent_at = Instant::now();
                log.append(TOPIC, vec![Record::new(payload.as_slice())])
                    .await?;
                latencies.record(sent_at.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
                sent += 1;
            }
            anyhow::Ok((latencies, lateness))
        });
    }
    let ticker = {
        let (bar, done) = (bar.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(done.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let mut latencies = LatencyReport::default();
    let mut lateness = LatencyReport::default();
    while let Some(result) = tasks.join_next().await {
        let (appender_latencies, appender_lateness) = result??;
        latencies.merge(&appender_latencies);
        lateness.merge(&appender_lateness);
    }
    let elapsed = started.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    Ok((elapsed, latencies, lateness))
}

/// The disk's own rate: append `size` bytes to a file and `fdatasync` it, for `duration`.
pub(crate) fn fdatasync_reference(
    dir: &Path,
    size: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let path = dir.join("fdatasync-reference");
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    let payload = vec![b'x'; size];
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < duration {
        file.write_all(&payload)?;
        file.sync_data()?;
        count += 1;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// sled with one key per record and no sync: what a record-per-key log would cost at best.
pub(crate) fn sled_per_key_reference(dir: &Path, size: usize, records: u64) -> anyhow::Result<f64> {
    let db = sled::Config::new().path(dir).flush_every_ms(None).open()?;
    let payload = vec![b'x'; size];
    let started = Instant::now();
    for i in 0..records {
        db.insert(i.to_be_bytes(), payload.as_slice())?;
    }
    let rate = records as f64 / started.elapsed().as_secs_f64();
    drop(db);
    std::fs::remove_dir_all(dir)?;
    Ok(rate)
}

/// Bytes allocated on disk under `dir` (blocks, not apparent length).
fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => allocated_bytes(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

fn print_summary(r: &BenchLogReport) {
    println!(
        "log bench: {} records of {} B, {} producers x {} in flight, durability {}",
        r.records, r.size, r.producers, r.in_flight, r.durability
    );
    println!(
        "  {:.0} records/s, {:.1} MB/s in {:.2} s",
        r.records_per_sec, r.mb_per_sec, r.seconds
    );
    println!(
        "  append latency p50 {} us, p99 {} us, p999 {} us",
        r.p50_us, r.p99_us, r.p999_us
    );
    println!(
        "  {} syncs, mean group {:.1} records",
        r.syncs, r.mean_group_size
    );
    println!(
        "  disk {} bytes, {:.2}x the payload",
        r.disk_bytes, r.disk_bytes_per_payload_byte
    );
    if let (Some(f), Some(ratio)) = (r.fdatasync_per_sec, r.ratio_to_fdatasync) {
        println!("  reference fdatasync loop: {f:.0}/s -> {ratio:.1}x");
    }
    if let (Some(s), Some(ratio)) = (r.sled_per_key_per_sec, r.ratio_to_sled_per_key) {
        println!("  reference sled one key per record, no sync: {s:.0}/s -> {ratio:.2}x");
    }
    if let Some(ms) = r.open_ms {
        println!("  reopen: {ms:.1} ms");
    }
    if let (Some(rate), Some(rss)) = (r.consume_records_per_sec, r.consume_peak_rss_mib) {
        println!("  consume from offset 0: {rate:.0} records/s, peak RSS {rss:.0} MiB");
    }
}
