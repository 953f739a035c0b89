//! `tidings dlq replay`: re-publishes dead letters to the topic they came from.
//!
//! A dead letter (see `pipeline::sinks`) keeps its record's key and value and names its source
//! in the header `tidings-dlq-topic`. Replay appends each one to `--to` if given, else to that
//! topic, with the same key and value and without the `tidings-dlq-*` headers (so the record
//! looks as it did before it failed), and commits its own consumer group (`--group`, default
//! `dlq-replay`) on the dead-letter topic after each batch: a second replay starts where the
//! first one stopped and repeats nothing. It reads up to the end of the dead-letter topic as it
//! was when the replay started.
//!
//! Two ways to reach the log: `--server URL` goes through a running server's HTTP API (a
//! consumer-group member that polls, publishes and commits; the token is `--token`, else one
//! minted with scope `admin` from the data directory's secret or the `--config` file's), and
//! without `--server` the data directory is opened directly (refused while a server holds it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde_json::{json, Value};

use super::{open_log, runtime, write_json_line, Access, CommonArgs};
use crate::bench::progress_bar;
use crate::log::{Log, Record, StoredRecord};
use crate::pipeline::sinks::{DLQ_TOPIC, DLQ_TOPIC_HEADER};

/// Prefix of the headers a dead letter gets; replay drops them.
const DLQ_HEADER_PREFIX: &str = "tidings-dlq-";
/// Most dead letters read (and re-published) at once.
const BATCH: usize = 500;

/// `tidings dlq …`.
#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DlqCommand {
    /// Re-publish dead letters to the topic they came from; a second run repeats nothing.
    Replay(ReplayArgs),
}

/// Options of `tidings dlq replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The dead-letter topic to read.
    #[arg(long, default_value = DLQ_TOPIC, value_name = "TOPIC")]
    topic: String,
    /// Re-publish everything to this topic instead of the one each dead letter names.
    #[arg(long, value_name = "TOPIC")]
    to: Option<String>,
    /// The consumer group that remembers how far replays got.
    #[arg(long, default_value = "dlq-replay", value_name = "GROUP")]
    group: String,
    /// Go through this running server's HTTP API instead of opening the data directory.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Bearer token for --server (default: one with scope admin, signed with the server's
    /// secret from --config or the data directory).
    #[arg(
        long,
        env = "TIDINGS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// The server's configuration file, whose auth.jwtSecret signs the default token.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// What a replay did.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// The dead-letter topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Dead letters re-published.
    pub replayed: u64,
    /// Re-published records per target topic.
    pub to: BTreeMap<String, u64>,
}

/// Runs `tidings dlq …`.
pub fn run(args: DlqArgs) -> anyhow::Result<()> {
    match args.command {
        DlqCommand::Replay(replay) => run_replay(replay),
    }
}

fn run_replay(args: ReplayArgs) -> anyhow::Result<()> {
    crate::log::validate_group_name(&args.group)?;
    let mut report = ReplayReport {
        topic: args.topic.clone(),
        group: args.group.clone(),
        ..ReplayReport::default()
    };
    let outcome = match &args.server {
        Some(server) => runtime()?.block_on(replay_over_http(&args, server, &mut report)),
        None => replay_on_disk(&args, &mut report),
    };
    let mut out = std::io::stdout().lock();
    if args.common.json {
        write_json_line(&mut out, &report)?;
    } else {
        let targets: Vec<String> = report.to.iter().map(|(t, n)| format!("{t}: {n}")).collect();
        eprintln!(
            "replayed {} dead letters from {} ({})",
            report.replayed,
            report.topic,
            if targets.is_empty() {
                "nothing new".into()
            } else {
                targets.join(", ")
            }
        );
    }
    outcome
}

/// Where a dead letter goes: `--to`, else the topic its header names.
fn target_of(to: Option<&str>, header: Option<&str>, at: (u32, u64)) -> anyhow::Result<String> {
    to.or(header).map(str::to_owned).with_context(|| {
        format!(
            "dead letter {}:{} has no {DLQ_TOPIC_HEADER} header; say where it goes with --to",
            at.0, at.1
        )
    })
}

fn is_dlq_header(name: &str) -> bool {
    name.starts_with(DLQ_HEADER_PREFIX)
}

// ----- directly on the data directory ---------------------------------------------------------

fn replay_on_disk(args: &ReplayArgs, report: &mut ReplayReport) -> anyhow::Result<()> {
    let log = open_log(&args.common, Access::MustExist)?;
    let outcome = replay_partitions(&log, args, report);
    log.shutdown();
    outcome
}

fn replay_partitions(
    log: &Log,
    args: &ReplayArgs,
    report: &mut ReplayReport,
) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let ranges: Vec<(u32, u64, u64)> = log
        .group_lag(&args.group, &args.topic)?
        .iter()
        .map(|p| (p.partition, p.committed.unwrap_or(p.low).max(p.low), p.high))
        .collect();
    let bar = progress_bar(
        ranges.iter().map(|(_, from, high)| high - from).sum(),
        "dead letters",
    );
    for (partition, mut offset, high) in ranges {
        while offset < high {
            let records = log.read(
                &args.topic,
                partition,
                offset,
                crate::log::ReadLimits::records(BATCH),
            )?;
            let Some(last) = records.last().map(|r| r.offset) else {
                break;
            };
            let mut by_target: BTreeMap<String, Vec<Record>> = BTreeMap::new();
            for record in records.iter().filter(|r| r.offset < high) {
                let target = target_of(
                    args.to.as_deref(),
                    dlq_topic_header(record),
                    (partition, record.offset),
                )?;
                by_target.entry(target).or_default().push(restored(record));
            }
            for (target, records) in by_target {
                let n = records.len() as u64;
                runtime.block_on(log.append(&target, records))?;
                report.replayed += n;
                *report.to.entry(target).or_default() += n;
                bar.inc(n);
            }
            offset = (last + 1).min(high);
            log.commit_offset(&args.group, &args.topic, partition, offset)?;
        }
    }
    runtime.block_on(log.sync())?;
    bar.finish_and_clear();
    Ok(())
}

fn dlq_topic_header(record: &StoredRecord) -> Option<&str> {
    record
        .headers
        .iter()
        .find(|h| h.key == DLQ_TOPIC_HEADER)
        .and_then(|h| std::str::from_utf8(&h.value).ok())
}

/// The record as it was before it failed: same key and value, no dead-letter headers.
fn restored(record: &StoredRecord) -> Record {
    Record {
        key: record.key.clone(),
        headers: record
            .headers
            .iter()
            .filter(|h| !is_dlq_header(&h.key))
            .cloned()
            .collect(),
        value: record.value.clone(),
    }
}

// ----- through a running server --------------------------------------------------------------

/// A client of one server's event-bus API with one token.
struct Api {
    http: reqwest::Client,
    base: String,
    bearer: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("authorization", &self.bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        anyhow::ensure!(
            status.is_success(),
            "{method} {path}: {status}: {}",
            problem_detail(&text)
        );
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// The `detail` of a problem+json answer, else the body itself.
fn problem_detail(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned())
}

async fn replay_over_http(
    args: &ReplayArgs,
    server: &str,
    report: &mut ReplayReport,
) -> anyhow::Result<()> {
    let token = match &args.token {
        Some(token) => token.clone(),
        None => {
            let authenticator = super::token::server_authenticator(
                args.config.as_deref(),
                Some(args.common.data_dir.clone()),
            )?;
            authenticator.issue(
                "tidings-dlq",
                None,
                &["admin".into()],
                Duration::from_secs(3600),
            )
        }
    };
    let api = Api {
        http: reqwest::Client::new(),
        base: server.trim_end_matches('/').to_owned(),
        bearer: format!("Bearer {token}"),
    };
    let group = &args.group;
    let ranges = snapshot(&api, group, &args.topic).await?;
    let lag = ranges
        .values()
        .map(|(from, high)| high.saturating_sub(*from))
        .sum();
    let joined = api
        .call(
            reqwest::Method::POST,
            &format!("/api/groups/{group}/members"),
            Some(json!({"topics": [args.topic], "autoOffsetReset": "earliest"})),
        )
        .await?;
    let member = joined["memberId"]
        .as_str()
        .context("the join answer has no memberId")?
        .to_owned();
    let bar = progress_bar(lag, "dead letters");
    let outcome = replay_polled(&api, args, &member, ranges, report, &bar).await;
    bar.finish_and_clear();
    let left = api
        .call(
            reqwest::Method::DELETE,
            &format!("/api/groups/{group}/members/{member}"),
            None,
        )
        .await;
    outcome.and(left.map(|_| ()))
}

/// Each partition of the dead-letter topic: (where the group resumes, the high watermark now).
/// A replay goes up to those high watermarks and no further.
type Ranges = BTreeMap<u64, (u64, u64)>;

async fn snapshot(api: &Api, group: &str, topic: &str) -> anyhow::Result<Ranges> {
    let described = api
        .call(reqwest::Method::GET, &format!("/api/topics/{topic}"), None)
        .await?;
    let number = |v: &Value, field: &str| v[field].as_u64().unwrap_or(0);
    let mut ranges: Ranges = described["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                number(p, "partition"),
                (number(p, "low"), number(p, "high")),
            )
        })
        .collect();
    // A group that never committed is unknown (404): it starts at the low watermarks.
    if let Ok(described) = api
        .call(reqwest::Method::GET, &format!("/api/groups/{group}"), None)
        .await
    {
        let offsets = described["offsets"].as_array().cloned().unwrap_or_default();
        let committed = offsets
            .iter()
            .filter(|t| t["topic"] == topic)
            .filter_map(|t| t["partitions"].as_array())
            .flatten();
        for p in committed {
            if let (Some(range), Some(offset)) = (
                ranges.get_mut(&number(p, "partition")),
                p["committed"].as_u64(),
            ) {
                range.0 = range.0.max(offset);
            }
        }
    }
    Ok(ranges)
}

/// Polls until every partition reached its high watermark of `ranges` (or a poll is empty),
/// re-publishing and committing each batch. Records polled beyond those watermarks (dead
/// letters written since the replay started) are neither replayed nor committed.
async fn replay_polled(
    api: &Api,
    args: &ReplayArgs,
    member: &str,
    mut ranges: Ranges,
    report: &mut ReplayReport,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let group = &args.group;
    while ranges.values().any(|(next, high)| next < high) {
        let polled = api
            .call(
                reqwest::Method::POST,
                &format!("/api/groups/{group}/members/{member}/poll"),
                Some(json!({"limit": BATCH, "waitMs": 0})),
            )
            .await?;
        let records = polled["records"].as_array().cloned().unwrap_or_default();
        if records.is_empty() {
            return Ok(());
        }
        let mut by_target: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut commits: BTreeMap<u64, u64> = BTreeMap::new();
        for record in &records {
            let partition = record["partition"].as_u64().unwrap_or(0);
            let offset = record["offset"].as_u64().unwrap_or(0);
            let Some((next, high)) = ranges.get_mut(&partition) else {
                continue;
            };
            *next = (*next).max(offset + 1);
            if offset >= *high {
                continue;
            }
            let header = record["headers"][DLQ_TOPIC_HEADER].as_str();
            let target = target_of(args.to.as_deref(), header, (partition as u32, offset))?;
            by_target
                .entry(target)
                .or_default()
                .push(restored_json(record));
            commits.insert(partition, offset + 1);
        }
        for (target, batch) in by_target {
            let n = batch.len() as u64;
            api.call(
                reqwest::Method::POST,
                &format!("/api/topics/{target}/records"),
                Some(json!({ "records": batch })),
            )
            .await?;
            report.replayed += n;
            *report.to.entry(target).or_default() += n;
            bar.inc(n);
        }
        if commits.is_empty() {
            continue;
        }
        let offsets: Vec<Value> = commits
            .iter()
            .map(|(p, o)| json!({"topic": args.topic, "partition": p, "offset": o}))
            .collect();
        api.call(
            reqwest::Method::POST,
            &format!("/api/groups/{group}/offsets"),
            Some(json!({"memberId": member, "offsets": offsets})),
        )
        .await?;
    }
    Ok(())
}

/// A polled dead letter as a record to publish: key, value, headers without the dead-letter
/// ones.
fn restored_json(record: &Value) -> Value {
    let headers: serde_json::Map<String, Value> = record["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .filter(|(name, _)| !is_dlq_header(name))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect()
        })
        .unwrap_or_default();
    json!({"key": record["key"], "headers": headers, "value": record["value"]})
}
