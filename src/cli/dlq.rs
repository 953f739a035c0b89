//! `tidings dlq replay`: re-publishes dead letters to the topic they came from, each addressed
//! to the sink that failed it (the rules are [`crate::pipeline::replay`]'s).
//!
//! It reaches the log as every admin command does (`connect`): through a running server's HTTP
//! API (a consumer-group member that polls, publishes and commits, applying the same rules to
//! each polled record), or by opening the data directory when no server holds it (the replay
//! itself runs then, on the log).

use std::collections::BTreeMap;

use anyhow::Context;
use serde_json::{json, Value};

use super::connect::{connect, Target};
use super::remote::Remote;
use super::{runtime, write_json_line, Access, CommonArgs};
use crate::bench::progress_bar;
use crate::log::Log;
use crate::pipeline::replay::{
    belongs_to, is_dlq_header, ranges, replay, Replay, ReplayPlan, ReplayReport, BATCH,
};
use crate::pipeline::sinks::{DLQ_SINK_HEADER, DLQ_TOPIC, DLQ_TOPIC_HEADER, REPLAY_SINK_HEADER};

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
    /// What the options ask to replay.
    fn plan(&self) -> anyhow::Result<ReplayPlan> {
        Ok(ReplayPlan::new(
            &self.topic,
            self.group.clone(),
            self.sink.clone(),
        )?)
    }
}

/// Runs `tidings dlq …`.
pub fn run(args: DlqArgs) -> anyhow::Result<()> {
    match args.command {
        DlqCommand::Replay(replay) => run_replay(replay),
    }
}

fn run_replay(args: ReplayArgs) -> anyhow::Result<()> {
    let plan = args.plan()?;
    let source = plan.source().to_owned();
    let mut report = plan.report();
    let outcome = match connect(&args.common, Access::MustExist)? {
        Target::Local(log) => {
            let outcome = replay_partitions(&log, &plan, &mut report);
            log.shutdown();
            outcome
        }
        Target::Remote(remote) => {
            runtime()?.block_on(replay_over_http(&remote, &plan, &mut report))
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

// ----- directly on the data directory ---------------------------------------------------------

fn replay_partitions(
    log: &Log,
    plan: &ReplayPlan,
    report: &mut ReplayReport,
) -> anyhow::Result<()> {
    let ranges = ranges(log, plan)?;
    let bar = progress_bar(
        ranges.iter().map(|(_, from, high)| high - from).sum(),
        "dead letters",
    );
    let outcome = runtime()?.block_on(replay(log, plan, ranges, || bar.inc(1)));
    bar.finish_and_clear();
    *report = outcome?;
    Ok(())
}

// ----- through a running server --------------------------------------------------------------

async fn replay_over_http(
    api: &Remote,
    plan: &ReplayPlan,
    report: &mut ReplayReport,
) -> anyhow::Result<()> {
    let group = plan.group();
    let ranges = snapshot(api, group, plan.topic()).await?;
    let lag = ranges
        .values()
        .map(|(from, high)| high.saturating_sub(*from))
        .sum();
    let joined: Value = api
        .post(
            &format!("/api/groups/{group}/members"),
            &json!({"topics": [plan.topic()], "autoOffsetReset": "earliest"}),
        )
        .await?;
    let member = joined["memberId"]
        .as_str()
        .context("the join answer has no memberId")?
        .to_owned();
    let bar = progress_bar(lag, "dead letters");
    let outcome = replay_polled(api, plan, &member, ranges, report, &bar).await;
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
    plan: &ReplayPlan,
    member: &str,
    mut ranges: Ranges,
    report: &mut ReplayReport,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let (group, source) = (plan.group(), plan.source());
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
                match plan.replay_to(headers[DLQ_SINK_HEADER].as_str()) {
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
            report.replayed_to(source, n);
        }
        if commits.is_empty() {
            continue;
        }
        let offsets: Vec<Value> = commits
            .iter()
            .map(|(p, o)| json!({"topic": plan.topic(), "partition": p, "offset": o}))
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
                .filter(|(name, _)| !is_dlq_header(name))
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
        let plan = |topic: &str| ReplayPlan::new(topic, None, None);
        assert_eq!(plan("message.new.dlq").unwrap().source(), "message.new");
        assert!(plan("messages").is_err());
        assert!(plan(".dlq").is_err());
        assert!(belongs_to("message.new", Some("message.new")));
        assert!(belongs_to("message.new", None));
        assert!(!belongs_to("message.new", Some("messages")));
    }

    /// Without --sink a dead letter goes back to the sink that failed it; with --sink only the
    /// ones that sink failed are replayed, and their progress has its own group.
    #[test]
    fn a_dead_letter_is_replayed_to_the_sink_that_failed_it() {
        let all = ReplayPlan::new(DLQ_TOPIC, None, None).unwrap();
        assert_eq!(all.replay_to(Some("push")), Replay::To(Some("push".into())));
        assert_eq!(all.replay_to(None), Replay::To(None));
        assert_eq!(all.group(), "dlq-replay");
        let push = ReplayPlan::new(DLQ_TOPIC, None, Some("push".into())).unwrap();
        assert_eq!(
            push.replay_to(Some("push")),
            Replay::To(Some("push".into()))
        );
        assert_eq!(push.replay_to(Some("audit")), Replay::OtherSink);
        assert_eq!(push.replay_to(None), Replay::OtherSink);
        assert_eq!(push.group(), "dlq-replay.push");
    }
}
