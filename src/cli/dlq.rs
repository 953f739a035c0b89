//! `tidings dlq replay`: re-publishes dead letters to the topic they came from.
//!
//! A dead-letter topic is named after the topic its records came from (`message.new.dlq` holds
//! dead letters of `message.new`), and replay sends them there and nowhere else: the target is
//! the topic's name without `.dlq`, never something a record says. A dead letter (see
//! `pipeline::sinks`) keeps its record's key and value and names its source in the header
//! `tidings-dlq-topic`; one whose header names another topic was not written by the sink of
//! that topic, so it is skipped and counted, not replayed (and does not stop the replay). Each
//! replayed record has the same key and value and no `tidings-dlq-*` headers (so it looks as it
//! did before it failed). The replay commits its own consumer group (`--group`, default
//! `dlq-replay`) on the dead-letter topic after each batch: a second replay starts where the
//! first one stopped and repeats nothing. It reads up to the end of the dead-letter topic as it
//! was when the replay started.
//!
//! A replayed dead letter is addressed to the sink that failed it (its `tidings-dlq-sink`
//! header becomes the record's `tidings-replay-sink` header), and only that sink delivers it:
//! the healthy sinks, which delivered the original, pass over it. `--sink NAME` replays only
//! the dead letters NAME failed, and remembers its progress in its own group
//! (`dlq-replay.NAME` by default), so it skips nothing a plain replay has yet to do (a plain
//! replay afterwards does replay them again, at least once as every delivery). A dead letter
//! without a sink header (not written by a sink) goes back to every sink, as it came.
//!
//! It reaches the log as every admin command does (`connect`): through a
//! running server's HTTP API (a consumer-group member that polls, publishes and commits), or
//! by opening the data directory when no server holds it.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Serialize;
use serde_json::{json, Value};

use super::connect::{connect, Target};
use super::remote::Remote;
use super::{runtime, write_json_line, Access, CommonArgs};
use crate::bench::progress_bar;
use crate::log::{Log, Record, StoredRecord};
use crate::pipeline::sinks::{DLQ_SINK_HEADER, DLQ_TOPIC, DLQ_TOPIC_HEADER, REPLAY_SINK_HEADER};

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
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The dead-letter topic to read (`SOURCE.dlq`; its records go back to `SOURCE`).
    #[arg(long, default_value = DLQ_TOPIC, value_name = "TOPIC")]
    topic: String,
    /// The consumer group that remembers how far replays got (default `dlq-replay`, or
    /// `dlq-replay.NAME` with `--sink NAME`).
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Replay only the dead letters this sink failed (to this sink only).
    #[arg(long, value_name = "NAME")]
    sink: Option<String>,
}

impl ReplayArgs {
    fn group(&self) -> String {
        match (&self.group, &self.sink) {
            (Some(group), _) => group.clone(),
            (None, Some(sink)) => format!("dlq-replay.{sink}"),
            (None, None) => "dlq-replay".into(),
        }
    }

    /// What becomes of a dead letter its sink header says `failed_by` failed: replayed to that
    /// sink only (or, without the header, to every sink), unless `--sink` names another one.
    fn replay_to(&self, failed_by: Option<&str>) -> Replay {
        match (&self.sink, failed_by) {
            (Some(wanted), Some(failed)) if wanted == failed => Replay::To(Some(failed.into())),
            (Some(_), _) => Replay::OtherSink,
            (None, failed) => Replay::To(failed.map(str::to_owned)),
        }
    }
}

/// What a replay does with one dead letter of the right topic.
#[derive(Debug, PartialEq, Eq)]
enum Replay {
    /// Re-publish it, addressed to this sink (None: every sink).
    To(Option<String>),
    /// Leave it: `--sink` names another sink than the one that failed it.
    OtherSink,
}

/// What a replay did.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReplayReport {
    /// The dead-letter topic.
    pub(crate) topic: String,
    /// The consumer group.
    pub(crate) group: String,
    /// Dead letters re-published.
    pub(crate) replayed: u64,
    /// Dead letters not replayed: their header names another source topic.
    pub(crate) skipped: u64,
    /// Dead letters not replayed: `--sink` names another sink than the one that failed them.
    pub(crate) other_sinks: u64,
    /// Re-published records per target topic.
    pub(crate) to: BTreeMap<String, u64>,
}

/// Runs `tidings dlq …`.
pub fn run(args: DlqArgs) -> anyhow::Result<()> {
    match args.command {
        DlqCommand::Replay(replay) => run_replay(replay),
    }
}

fn run_replay(args: ReplayArgs) -> anyhow::Result<()> {
    crate::log::validate_group_name(&args.group())?;
    let source = source_of(&args.topic)?;
    let mut report = ReplayReport {
        topic: args.topic.clone(),
        group: args.group(),
        ..ReplayReport::default()
    };
    let outcome = match connect(&args.common, Access::MustExist)? {
        Target::Local(log) => {
            let outcome = replay_partitions(&log, &args, &source, &mut report);
            log.shutdown();
            outcome
        }
        Target::Remote(remote) => {
            runtime()?.block_on(replay_over_http(&remote, &args, &source, &mut report))
        }
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
        if report.other_sinks > 0 {
            eprintln!(
                "left {} dead letters other sinks than the one asked for failed",
                report.other_sinks
            );
        }
        if report.skipped > 0 {
            eprintln!(
                "skipped {} records whose {DLQ_TOPIC_HEADER} header names another topic than {source}",
                report.skipped
            );
        }
    }
    outcome
}

/// The topic the dead letters of `dlq_topic` came from: its name without `.dlq`.
fn source_of(dlq_topic: &str) -> anyhow::Result<String> {
    match dlq_topic.strip_suffix(".dlq") {
        Some(source) if !source.is_empty() => Ok(source.to_owned()),
        _ => anyhow::bail!(
            "{dlq_topic:?} is not a dead-letter topic: those are named SOURCE.dlq, and their \
             records go back to SOURCE"
        ),
    }
}

/// Whether a dead letter belongs back in `source`: its `tidings-dlq-topic` header, when it has
/// one, must name that topic.
fn belongs_to(source: &str, header: Option<&str>) -> bool {
    header.is_none_or(|named| named == source)
}

fn is_dlq_header(name: &str) -> bool {
    name.starts_with(DLQ_HEADER_PREFIX)
}

// ----- directly on the data directory ---------------------------------------------------------

fn replay_partitions(
    log: &Log,
    args: &ReplayArgs,
    source: &str,
    report: &mut ReplayReport,
) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let group = args.group();
    let ranges: Vec<(u32, u64, u64)> = log
        .group_lag(&group, &args.topic)?
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
            let mut replayed = Vec::new();
            for record in records.iter().filter(|r| r.offset < high) {
                bar.inc(1);
                if !belongs_to(source, header(record, DLQ_TOPIC_HEADER)) {
                    report.skipped += 1;
                    continue;
                }
                match args.replay_to(header(record, DLQ_SINK_HEADER)) {
                    Replay::To(sink) => replayed.push(restored(record, sink.as_deref())),
                    Replay::OtherSink => report.other_sinks += 1,
                }
            }
            if !replayed.is_empty() {
                let n = replayed.len() as u64;
                runtime.block_on(log.append(source, replayed))?;
                report.replayed += n;
                *report.to.entry(source.to_owned()).or_default() += n;
            }
            offset = (last + 1).min(high);
            log.commit_offset(&group, &args.topic, partition, offset)?;
        }
    }
    runtime.block_on(log.sync())?;
    bar.finish_and_clear();
    Ok(())
}

fn header<'a>(record: &'a StoredRecord, name: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| std::str::from_utf8(&h.value).ok())
}

/// The record as it was before it failed (same key and value, no dead-letter headers),
/// addressed to `sink` when given.
fn restored(record: &StoredRecord, sink: Option<&str>) -> Record {
    let restored = Record {
        key: record.key.clone(),
        headers: record
            .headers
            .iter()
            .filter(|h| !is_dlq_header(&h.key) && h.key != REPLAY_SINK_HEADER)
            .cloned()
            .collect(),
        value: record.value.clone(),
    };
    match sink {
        Some(sink) => restored.with_header(REPLAY_SINK_HEADER, sink),
        None => restored,
    }
}

// ----- through a running server --------------------------------------------------------------

async fn replay_over_http(
    api: &Remote,
    args: &ReplayArgs,
    source: &str,
    report: &mut ReplayReport,
) -> anyhow::Result<()> {
    let group = &args.group();
    let ranges = snapshot(api, group, &args.topic).await?;
    let lag = ranges
        .values()
        .map(|(from, high)| high.saturating_sub(*from))
        .sum();
    let joined: Value = api
        .post(
            &format!("/api/groups/{group}/members"),
            &json!({"topics": [args.topic], "autoOffsetReset": "earliest"}),
        )
        .await?;
    let member = joined["memberId"]
        .as_str()
        .context("the join answer has no memberId")?
        .to_owned();
    let bar = progress_bar(lag, "dead letters");
    let outcome = replay_polled(api, args, (source, &member), ranges, report, &bar).await;
    bar.finish_and_clear();
    let left = api
        .delete(&format!("/api/groups/{group}/members/{member}"))
        .await;
    outcome.and(left.map_err(Into::into))
}

/// Each partition of the dead-letter topic: (where the group resumes, the high watermark now).
/// A replay goes up to those high watermarks and no further.
type Ranges = BTreeMap<u64, (u64, u64)>;

async fn snapshot(api: &Remote, group: &str, topic: &str) -> anyhow::Result<Ranges> {
    let described: Value = api.get(&format!("/api/topics/{topic}")).await?;
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
    if let Ok(described) = api.get::<Value>(&format!("/api/groups/{group}")).await {
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
    api: &Remote,
    args: &ReplayArgs,
    (source, member): (&str, &str),
    mut ranges: Ranges,
    report: &mut ReplayReport,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let group = &args.group();
    while ranges.values().any(|(next, high)| next < high) {
        let polled: Value = api
            .post(
                &format!("/api/groups/{group}/members/{member}/poll"),
                &json!({"limit": BATCH, "waitMs": 0}),
            )
            .await?;
        let records = polled["records"].as_array().cloned().unwrap_or_default();
        if records.is_empty() {
            return Ok(());
        }
        let mut replayed = Vec::new();
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
            bar.inc(1);
            let headers = &record["headers"];
            if !belongs_to(source, headers[DLQ_TOPIC_HEADER].as_str()) {
                report.skipped += 1;
            } else {
                match args.replay_to(headers[DLQ_SINK_HEADER].as_str()) {
                    Replay::To(sink) => replayed.push(restored_json(record, sink.as_deref())),
                    Replay::OtherSink => report.other_sinks += 1,
                }
            }
            commits.insert(partition, offset + 1);
        }
        if !replayed.is_empty() {
            let n = replayed.len() as u64;
            let _: Value = api
                .post(
                    &format!("/api/topics/{source}/records"),
                    &json!({ "records": replayed }),
                )
                .await?;
            report.replayed += n;
            *report.to.entry(source.to_owned()).or_default() += n;
        }
        if commits.is_empty() {
            continue;
        }
        let offsets: Vec<Value> = commits
            .iter()
            .map(|(p, o)| json!({"topic": args.topic, "partition": p, "offset": o}))
            .collect();
        api.post_no_content(
            &format!("/api/groups/{group}/offsets"),
            &json!({"memberId": member, "offsets": offsets}),
        )
        .await?;
    }
    Ok(())
}

/// A polled dead letter as a record to publish: key, value, headers without the dead-letter
/// ones, addressed to `sink` when given.
fn restored_json(record: &Value, sink: Option<&str>) -> Value {
    let mut headers: serde_json::Map<String, Value> = record["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .filter(|(name, _)| !is_dlq_header(name) && *name != REPLAY_SINK_HEADER)
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(sink) = sink {
        headers.insert(REPLAY_SINK_HEADER.into(), sink.into());
    }
    json!({"key": record["key"], "headers": headers, "value": record["value"]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_topic_replays_to_its_source_only() {
        assert_eq!(source_of("message.new.dlq").unwrap(), "message.new");
        assert!(source_of("messages").is_err());
        assert!(source_of(".dlq").is_err());
        assert!(belongs_to("message.new", Some("message.new")));
        assert!(belongs_to("message.new", None));
        assert!(!belongs_to("message.new", Some("messages")));
    }

    fn replay_args(sink: Option<&str>) -> ReplayArgs {
        ReplayArgs {
            common: CommonArgs {
                server: None,
                token: None,
                data_dir: None,
                config: None,
                json: false,
            },
            topic: DLQ_TOPIC.into(),
            group: None,
            sink: sink.map(str::to_owned),
        }
    }

    /// Without --sink a dead letter goes back to the sink that failed it; with --sink only the
    /// ones that sink failed are replayed, and their progress has its own group.
    #[test]
    fn a_dead_letter_is_replayed_to_the_sink_that_failed_it() {
        let all = replay_args(None);
        assert_eq!(all.replay_to(Some("push")), Replay::To(Some("push".into())));
        assert_eq!(all.replay_to(None), Replay::To(None));
        assert_eq!(all.group(), "dlq-replay");
        let push = replay_args(Some("push"));
        assert_eq!(
            push.replay_to(Some("push")),
            Replay::To(Some("push".into()))
        );
        assert_eq!(push.replay_to(Some("audit")), Replay::OtherSink);
        assert_eq!(push.replay_to(None), Replay::OtherSink);
        assert_eq!(push.group(), "dlq-replay.push");
    }
}
