//! The closed-loop harness every append driver runs under: `producers` tasks, each with its own
//! connection and one request in flight, for a fixed duration, latencies in one hdrhistogram.
//! It knows nothing of any particular system: a driver only says how to connect and append.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::cpu::{CpuClock, CpuUse};

/// One producer's connection: appends one record and returns once the system acknowledged it.
pub trait Producer: Send + 'static {
    /// Appends `value`; resolves after the acknowledgement.
    fn append(&mut self, value: &[u8]) -> impl Future<Output = Result<()>> + Send;
}

/// The shape of a closed-loop run.
pub struct LoadSpec {
    /// Concurrent producers (one connection and one request in flight each).
    pub producers: usize,
    /// How long the producers append.
    pub duration: Duration,
    /// Bytes per record.
    pub size: usize,
    /// Server processes whose CPU use the report includes.
    pub server_pids: Vec<u32>,
}

/// What a closed-loop run measured.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    /// Producers and record size of the run.
    pub producers: usize,
    /// Bytes per record.
    pub size: usize,
    /// Wall time of the run.
    pub seconds: f64,
    /// Acknowledged records.
    pub ops: u64,
    /// Acknowledged records per second.
    pub ops_per_sec: f64,
    /// Append → acknowledgement latency.
    #[serde(flatten)]
    pub latency: Latency,
    /// Failed appends (the first error is in `firstError`).
    pub errors: u64,
    /// The first failure's message, if any.
    pub first_error: Option<String>,
    /// CPU of the generator and of the servers.
    #[serde(flatten)]
    pub cpu: CpuUse,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest sample.
    pub max_us: u64,
}

impl Latency {
    /// The percentiles of a histogram of microseconds.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        Latency {
            p50_us: histogram.value_at_quantile(0.50),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

/// A histogram of microseconds from 1 µs to 10 minutes, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant bounds are valid")
}

/// Records `elapsed` in microseconds, saturating at the histogram's top.
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

/// A printable record of `size` bytes (ASCII, so it is the same length as text and as JSON).
pub fn record_value(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Connects every producer, then lets them append `value` for the spec's duration.
pub async fn run_closed_loop<P, F, Fut>(spec: &LoadSpec, connect: F) -> Result<LoadReport>
where
    P: Producer,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<P>>,
{
    let mut producers = Vec::with_capacity(spec.producers);
    for i in 0..spec.producers {
        producers.push(
            connect(i)
                .await
                .with_context(|| format!("connecting producer {i}"))?,
        );
    }
    let value: std::sync::Arc<[u8]> = record_value(spec.size).into();
    let clock = CpuClock::start(&spec.server_pids);
    let started = Instant::now();
    let deadline = started + spec.duration;
    let mut tasks = JoinSet::new();
    for producer in producers {
        tasks.spawn(produce_until(producer, value.clone(), deadline));
    }
    let mut total = ProducerTally::default();
    while let Some(tally) = tasks.join_next().await {
        total.merge(tally?)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = clock.stop();
    let ops = total.histogram.len();
    Ok(LoadReport {
        producers: spec.producers,
        size: spec.size,
        seconds,
        ops,
        ops_per_sec: ops as f64 / seconds,
        latency: Latency::of(&total.histogram),
        errors: total.errors,
        first_error: total.first_error,
        cpu,
    })
}

/// One producer's latencies and failures.
struct ProducerTally {
    histogram: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Default for ProducerTally {
    fn default() -> Self {
        ProducerTally {
            histogram: new_histogram(),
            errors: 0,
            first_error: None,
        }
    }
}

impl ProducerTally {
    fn merge(&mut self, other: ProducerTally) -> Result<()> {
        self.histogram.add(&other.histogram)?;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }
}

/// Failures in a row after which a producer stops (the system is down, not slow).
const MAX_ERRORS_IN_A_ROW: u32 = 100;

async fn produce_until<P: Producer>(
    mut producer: P,
    value: std::sync::Arc<[u8]>,
    deadline: Instant,
) -> ProducerTally {
    let mut tally = ProducerTally::default();
    let mut errors_in_a_row = 0;
    while Instant::now() < deadline && errors_in_a_row < MAX_ERRORS_IN_A_ROW {
        let sent = Instant::now();
        match producer.append(&value).await {
            Ok(()) => {
                record(&mut tally.histogram, sent.elapsed());
                errors_in_a_row = 0;
            }
            Err(error) => {
                tally.errors += 1;
                errors_in_a_row += 1;
                tally
                    .first_error
                    .get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    tally
}
