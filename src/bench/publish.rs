//! `tidings bench publish`: a load generator for the event bus over real HTTP.
//!
//! Two phases against a running server, each on a fresh topic it deletes afterwards:
//! 1. **Throughput**: `--producers` keep-alive connections each POST batches of `--batch`
//!    records (`--size` bytes of value) as fast as the server answers 202, for `--duration`;
//!    it reports records/s and the 202 latency of a batch.
//! 2. **End-to-end latency**: producers publish one record per request at a fixed total
//!    `--rate` (records/s, open loop) while one consumer-group member long-polls the topic and
//!    commits after each poll; each record carries its publish time, so the consumer measures
//!    publish → poll latency (same machine, same clock). `--rate 0` skips this phase.
//!
//! The token is `--token`, else one with scope `admin` minted from the server's secret (found as
//! `tidings token` finds it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;
use serde_json::{json, Value};

use super::report::process_cpu_seconds;
use super::report::{progress_bar, run_and_print, LatencyReport, ServerArgs};

/// Options of `tidings bench publish`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchPublishArgs {
    /// The server and where its secret is (`--server`, `--data-dir`, `--config`).
    #[command(flatten)]
    pub(crate) target_server: ServerArgs,
    /// Records per publish request in the throughput phase.
    #[arg(long, default_value_t = 100)]
    pub(crate) batch: usize,
    /// Concurrent keep-alive connections, one request in flight each.
    #[arg(long, default_value_t = 8)]
    pub(crate) producers: usize,
    /// How long each phase runs, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,
    /// Records/s of the latency phase (one record per request); 0 skips it.
    #[arg(long, default_value_t = 1000)]
    pub(crate) rate: u64,
    /// Partitions of the benchmark topics.
    #[arg(long, default_value_t = 4)]
    pub(crate) partitions: u32,
    /// Bytes of each record's payload.
    #[arg(long, default_value_t = 200)]
    pub(crate) size: usize,
    /// Bearer token with scope admin (default: minted from the server's secret).
    #[arg(long, env = "TIDINGS_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub(crate) json: bool,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BenchPublishReport {
    /// Connections.
    pub(crate) producers: usize,
    /// Records per request in the throughput phase.
    pub(crate) batch: usize,
    /// Wall time of the throughput phase.
    pub(crate) seconds: f64,
    /// Records answered 202 in the throughput phase.
    pub(crate) records: u64,
    /// Records per second in the throughput phase.
    pub(crate) records_per_sec: f64,
    /// 202 latency of one batch, µs (median).
    pub(crate) batch_p50_us: u64,
    /// 99th percentile.
    pub(crate) batch_p99_us: u64,
    /// Failed requests by status (0: transport error), both phases.
    pub(crate) errors: BTreeMap<u16, u64>,
    /// The latency phase, unless `--rate 0`.
    pub(crate) latency: Option<LatencyPhase>,
    /// CPU the generator used over both phases, in cores.
    pub(crate) generator_cpu_cores: f64,
}

/// Publish → poll latency at a fixed rate.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LatencyPhase {
    /// Target records/s.
    pub(crate) rate: u64,
    /// Records published (202).
    pub(crate) published: u64,
    /// Records the consumer polled.
    pub(crate) received: u64,
    /// Publish (request sent) → returned by a poll, µs (median).
    pub(crate) p50_us: u64,
    /// 99th percentile.
    pub(crate) p99_us: u64,
    /// 99.9th percentile.
    pub(crate) p999_us: u64,
}

/// Runs the generator and prints its report.
pub fn run(args: BenchPublishArgs) -> anyhow::Result<()> {
    run_and_print(args.json, measure(&args), print_summary)
}

/// A client of the server with the benchmark's token.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    bearer: String,
}

impl Api {
    /// `method path` with a JSON body; the status, and the JSON answer (Null if none).
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value, u16> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", &self.bearer)
            .json(&body)
            .send()
            .await
            .map_err(|_| 0u16)?;
        let status = response.status();
        if !status.is_success() {
            return Err(status.as_u16());
        }
        Ok(response.json().await.unwrap_or(Value::Null))
    }
}

/// Runs both phases and returns the report.
pub(crate) async fn measure(args: &BenchPublishArgs) -> anyhow::Result<BenchPublishReport> {
    anyhow::ensure!(
        args.batch >= 1 && args.producers >= 1,
        "need at least 1 record per batch and 1 producer"
    );
    let token = match &args.token {
        Some(token) => token.clone(),
        None => args.target_server.authenticator()?.issue(
            "bench-publish",
            None,
            &["admin".into()],
            Duration::from_secs(24 * 3600),
        ),
    };
    let api = Api {
        http: reqwest::Client::new(),
        base: args.target_server.base(),
        bearer: format!("Bearer {token}"),
    };
    let run_id = crate::store::new_message_id();
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let throughput_topic = create_topic(&api, &format!("bench.publish.{run_id}"), args).await?;
    let (throughput, seconds) = throughput_phase(&api, &throughput_topic, args).await?;
    delete_topic(&api, &throughput_topic).await;
    let mut errors = throughput.errors.clone();
    let latency = if args.rate > 0 {
        let topic = create_topic(&api, &format!("bench.latency.{run_id}"), args).await?;
        let phase = latency_phase(&api, &topic, &run_id, args, &mut errors).await;
        delete_topic(&api, &topic).await;
        Some(phase?)
    } else {
        None
    };
    let cpu = process_cpu_seconds() - cpu_before;
    let records = throughput.latencies.count() * args.batch as u64;
    Ok(BenchPublishReport {
        producers: args.producers,
        batch: args.batch,
        seconds,
        records,
        records_per_sec: records as f64 / seconds,
        batch_p50_us: throughput.latencies.quantile_us(0.5),
        batch_p99_us: throughput.latencies.quantile_us(0.99),
        errors,
        latency,
        generator_cpu_cores: cpu / started.elapsed().as_secs_f64(),
    })
}

async fn create_topic(api: &Api, name: &str, args: &BenchPublishArgs) -> anyhow::Result<String> {
    api.call(
        reqwest::Method::POST,
        "/api/topics",
        json!({"name": name, "partitions": args.partitions}),
    )
    .await
    .map_err(|status| {
        anyhow::anyhow!(
            "creating topic {name} at {}: status {status} (0: unreachable)",
            api.base
        )
    })?;
    Ok(name.to_owned())
}

async fn delete_topic(api: &Api, name: &str) {
    if let Err(status) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/api/topics/{name}"),
            Value::Null,
        )
        .await
    {
        tracing::warn!(topic = name, status, "could not delete the benchmark topic");
    }
}

/// What the producers of one phase observed.
#[derive(Default, Clone)]
struct Outcome {
    latencies: LatencyReport,
    errors: BTreeMap<u16, u64>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.latencies.merge(&other.latencies);
        for (status, n) in other.errors {
            *self.errors.entry(status).or_default() += n;
        }
    }
}

/// `--producers` closed loops of batches for `--duration`.
async fn throughput_phase(
    api: &Api,
    topic: &str,
    args: &BenchPublishArgs,
) -> anyhow::Result<(Outcome, f64)> {
    let payload = "x".repeat(args.size);
    let records: Vec<Value> = (0..args.batch)
        .map(|i| json!({"key": format!("k{i}"), "value": {"p": payload}}))
        .collect();
    let body = Arc::new(json!({ "records": records }));
    let path = format!("/api/topics/{topic}/records");
    let started = Instant::now();
    let deadline = started + args.duration;
    let bar = progress_bar(args.duration.as_secs().max(1), "seconds (throughput)");
    let mut producers = tokio::task::JoinSet::new();
    for _ in 0..args.producers {
        let (api, body, path) = (api.clone(), body.clone(), path.clone());
        producers.spawn(async move {
            let mut outcome = Outcome::default();
            while Instant::now() < deadline {
                let sent = Instant::now();
                match api
                    .call(reqwest::Method::POST, &path, (*body).clone())
                    .await
                {
                    Ok(_) => outcome.latencies.record(sent.elapsed()),
                    Err(status) => *outcome.errors.entry(status).or_default() += 1,
                }
            }
            outcome
        });
    }
    let outcome = join_producers(producers, &bar, started).await?;
    Ok((outcome, started.elapsed().as_secs_f64()))
}

/// Waits for every producer, moving the progress bar (seconds since `started`) as each ends.
async fn join_producers(
    mut producers: tokio::task::JoinSet<Outcome>,
    bar: &indicatif::ProgressBar,
    started: Instant,
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    while let Some(done) = producers.join_next().await {
        outcome.merge(done?);
        bar.set_position(started.elapsed().as_secs());
    }
    bar.finish_and_clear();
    Ok(outcome)
}

/// Microseconds since the epoch: the publish time a record carries.
fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Open-loop producers at `--rate` records/s, one consumer-group member long-polling.
async fn latency_phase(
    api: &Api,
    topic: &str,
    run_id: &str,
    args: &BenchPublishArgs,
    errors: &mut BTreeMap<u16, u64>,
) -> anyhow::Result<LatencyPhase> {
    let group = format!("bench-{run_id}");
    let joined = api
        .call(
            reqwest::Method::POST,
            &format!("/api/groups/{group}/members"),
            json!({"topics": [topic], "autoOffsetReset": "earliest"}),
        )
        .await
        .map_err(|status| anyhow::anyhow!("joining group {group}: status {status}"))?;
    let member = joined["memberId"]
        .as_str()
        .context("the join answer has no memberId")?
        .to_owned();
    let published = Arc::new(AtomicU64::new(0));
    let producing = Arc::new(AtomicBool::new(true));
    let consumer = tokio::spawn(consume(
        api.clone(),
        group.clone(),
        member.clone(),
        published.clone(),
        producing.clone(),
    ));
    let producers = produce_at_rate(api, topic, args, &published).await?;
    producing.store(false, Ordering::SeqCst);
    let (received, latencies) = consumer.await??;
    for (status, n) in producers.errors {
        *errors.entry(status).or_default() += n;
    }
    let _ = api
        .call(
            reqwest::Method::DELETE,
            &format!("/api/groups/{group}/members/{member}"),
            Value::Null,
        )
        .await;
    Ok(LatencyPhase {
        rate: args.rate,
        published: published.load(Ordering::SeqCst),
        received,
        p50_us: latencies.quantile_us(0.5),
        p99_us: latencies.quantile_us(0.99),
        p999_us: latencies.quantile_us(0.999),
    })
}

/// Each producer publishes single records on its own schedule (rate / producers each).
async fn produce_at_rate(
    api: &Api,
    topic: &str,
    args: &BenchPublishArgs,
    published: &Arc<AtomicU64>,
) -> anyhow::Result<Outcome> {
    let per_producer = args.rate as f64 / args.producers as f64;
    let payload = Arc::new("x".repeat(args.size));
    let path = format!("/api/topics/{topic}/records");
    let started = Instant::now();
    let deadline = started + args.duration;
    let bar = progress_bar(args.duration.as_secs().max(1), "seconds (latency)");
    let mut producers = tokio::task::JoinSet::new();
    for producer in 0..args.producers {
        let (api, path, payload, published) = (
            api.clone(),
            path.clone(),
            payload.clone(),
            published.clone(),
        );
        producers.spawn(async move {
            let mut outcome = Outcome::default();
            let mut sent = 0u64;
            while Instant::now() < deadline {
                let due = started + Duration::from_secs_f64(sent as f64 / per_producer);
                tokio::time::sleep_until(due.into()).await;
                let body = json!({"records": [{
                    "key": format!("k{producer}-{sent}"),
                    "value": {"t": now_micros(), "p": *payload},
                }]});
                match api.call(reqwest::Method::POST, &path, body).await {
                    Ok(_) => {
                        published.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(status) => *outcome.errors.entry(status).or_default() += 1,
                }
                sent += 1;
            }
            outcome
        });
    }
    join_producers(producers, &bar, started).await
}

/// Polls (long-poll, commit after each poll) until the producers stopped and every published
/// record arrived, or 5 s after they stopped; the count and the publish → poll latencies.
async fn consume(
    api: Api,
    group: String,
    member: String,
    published: Arc<AtomicU64>,
    producing: Arc<AtomicBool>,
) -> anyhow::Result<(u64, LatencyReport)> {
    let mut latencies = LatencyReport::default();
    let mut received = 0u64;
    let mut stopped_at: Option<Instant> = None;
    loop {
        if !producing.load(Ordering::SeqCst) {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if received >= published.load(Ordering::SeqCst)
                || since.elapsed() > Duration::from_secs(5)
            {
                return Ok((received, latencies));
            }
        }
        let polled = api
            .call(
                reqwest::Method::POST,
                &format!("/api/groups/{group}/members/{member}/poll"),
                json!({"limit": 1000, "waitMs": 500}),
            )
            .await
            .map_err(|status| anyhow::anyhow!("poll: status {status}"))?;
        let now = now_micros();
        let records = polled["records"].as_array().cloned().unwrap_or_default();
        let mut next: BTreeMap<(String, u64), u64> = BTreeMap::new();
        for record in &records {
            if let Some(t) = record["value"]["t"].as_u64() {
                latencies.record(Duration::from_micros(now.saturating_sub(t)));
            }
            received += 1;
            let topic = record["topic"].as_str().unwrap_or_default().to_owned();
            let partition = record["partition"].as_u64().unwrap_or(0);
            next.insert(
                (topic, partition),
                record["offset"].as_u64().unwrap_or(0) + 1,
            );
        }
        if !next.is_empty() {
            let offsets: Vec<Value> = next
                .iter()
                .map(|((t, p), o)| json!({"topic": t, "partition": p, "offset": o}))
                .collect();
            let _ = api
                .call(
                    reqwest::Method::POST,
                    &format!("/api/groups/{group}/offsets"),
                    json!({"memberId": member, "offsets": offsets}),
                )
                .await;
        }
    }
}

fn print_summary(r: &BenchPublishReport) {
    println!(
        "publish bench: {} connections, batches of {}, {:.1} s",
        r.producers, r.batch, r.seconds
    );
    println!(
        "  {:.0} records/s ({} in all), batch 202 latency p50 {} us, p99 {} us",
        r.records_per_sec, r.records, r.batch_p50_us, r.batch_p99_us
    );
    if let Some(l) = &r.latency {
        println!(
            "  at {} records/s: publish -> poll p50 {} us, p99 {} us, p999 {} us ({} published, {} received)",
            l.rate, l.p50_us, l.p99_us, l.p999_us, l.published, l.received
        );
    }
    println!(
        "  errors {:?}, generator CPU: {:.2} cores",
        r.errors, r.generator_cpu_cores
    );
}
