//! `tidings dlq replay`: re-publishes dead letters to the topic they came from, each addressed
//! to the sink that failed it (the rules are [`crate::pipeline::replay`]'s).
//!
//! It reaches the log as every admin command does (`connect`): through a running server's HTTP
//! API (`POST /api/dlq/replay`, the same replay run by the server), or by opening the data
//! directory when no server holds it.

use serde_json::json;

use super::connect::{connect, Target};
use super::remote::Remote;
use super::{runtime, write_json_line, Access, CommonArgs};
use crate::bench::progress_bar;
use crate::log::Log;
use crate::pipeline::replay::{ranges, replay, ReplayPlan, ReplayReport};
use crate::pipeline::sinks::{DLQ_TOPIC, DLQ_TOPIC_HEADER};

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

/// The server runs the same replay (`POST /api/dlq/replay`), in its process, on its log.
async fn replay_over_http(
    api: &Remote,
    plan: &ReplayPlan,
    report: &mut ReplayReport,
) -> anyhow::Result<()> {
    *report = api
        .post(
            "/api/dlq/replay",
            &json!({"topic": plan.topic(), "group": plan.group(), "sink": plan.sink()}),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::replay::{belongs_to, Replay};

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
