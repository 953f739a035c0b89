//! `tidings groups list|describe|reset-offsets`: consumer groups' committed offsets and lag,
//! like `kafka-consumer-groups.sh`.
//!
//! Owns the group commands' options, parsing `--to`, their two implementations (the log opened
//! directly, or a server's `/api/groups` routes) and their one output, printed from the same
//! data either implementation fills. A group exists once it has committed (or been reset to) an
//! offset, or, on a server, while it has live members; the CLI never commits on its own. Live
//! members exist only on a server, so locally every member count is 0.

use std::io::Write;

use serde::{Deserialize, Serialize};

use super::connect::{connect, Target};
use super::remote::Remote;
use super::{
    cell, format_timestamp, parse_timestamp, runtime, write_json_line, Access, CommonArgs, Table,
};
use crate::log::{validate_group_name, validate_topic_name, Log, PartitionLag, ResetPlan, ResetTo};

/// `tidings groups …`.
#[derive(Debug, clap::Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: GroupsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum GroupsCommand {
    /// Lists the consumer groups (with committed offsets or live members), their topics,
    /// members and total lag.
    List,
    /// Shows a group's committed offset, watermarks, lag and member on every partition it has
    /// read or is assigned.
    Describe {
        /// Consumer group name.
        group: String,
    },
    /// Moves a group's committed offsets on a topic's partitions (all, or `--partition`s) to a
    /// place (`--to`) or by a number of records (`--shift-by`); refused while the group has
    /// live members: they would commit over the reset.
    ResetOffsets(ResetArgs),
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to", "shift_by"])))]
struct ResetArgs {
    /// Consumer group name (created if it has no offsets yet).
    group: String,
    /// Topic whose partitions to reset.
    #[arg(long, value_name = "TOPIC")]
    topic: String,
    /// Only this partition (repeat for several); every partition of the topic without it.
    #[arg(long = "partition", value_name = "P")]
    partitions: Vec<u32>,
    /// `earliest` (first retained record), `latest` (high watermark), an offset (clamped into
    /// each partition's retained range), or an RFC 3339 time such as 2024-05-01T10:00:00Z (the
    /// first record appended at or after it).
    #[arg(long, value_name = "WHERE", value_parser = parse_reset_to)]
    to: Option<ResetTo>,
    /// Move each partition's committed offset by N records (negative: back, to read them
    /// again; positive: forward, to skip them), clamped into the retained range.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// Print the offsets the reset would commit, and commit nothing.
    #[arg(long)]
    dry_run: bool,
    /// Reset a group the server's own workers consume with (`notify`, `notify.sink.NAME`)
    /// anyway, on a data directory no server holds: they resume from the new offsets at their
    /// next start (refused while a server runs, whatever the flag; `store` can never be reset).
    #[arg(long)]
    force: bool,
}

impl ResetArgs {
    fn plan(&self) -> ResetPlan {
        let to = match (self.to, self.shift_by) {
            (Some(to), _) => to,
            // clap's "target" group makes one of the two required.
            (None, shift) => ResetTo::ShiftBy(shift.unwrap_or(0)),
        };
        ResetPlan {
            to,
            partitions: self.partitions.clone(),
            dry_run: self.dry_run,
        }
    }
}

/// Parses `--to`: `earliest`, `latest`, an offset or an RFC 3339 time.
pub(crate) fn parse_reset_to(text: &str) -> Result<ResetTo, String> {
    match text {
        "earliest" => Ok(ResetTo::Earliest),
        "latest" => Ok(ResetTo::Latest),
        digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits
            .parse()
            .map(ResetTo::Offset)
            .map_err(|e| format!("offset {digits}: {e}")),
        time => parse_timestamp(time)
            .map(ResetTo::Timestamp)
            .map_err(|e| format!("expected earliest, latest, an offset or an RFC 3339 time; {e}")),
    }
}

/// A group as `groups list` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupSummary {
    name: String,
    /// Topics it has committed offsets on, or (on a server) is assigned.
    topics: Vec<String>,
    /// Live members (only a server has any).
    members: usize,
    lag: u64,
}

/// One partition as `groups describe` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PartitionPosition {
    group: String,
    topic: String,
    partition: u32,
    committed: Option<u64>,
    low: u64,
    high: u64,
    lag: u64,
    /// The live member the partition is assigned to, if any.
    member: Option<String>,
}

/// One partition in `groups reset-offsets --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ResetJson<'a> {
    group: &'a str,
    topic: &'a str,
    partition: u32,
    offset: u64,
}

/// Runs a groups subcommand.
pub fn run(args: GroupsArgs) -> anyhow::Result<()> {
    let json = args.common.json;
    let out = &mut std::io::stdout().lock();
    // Names are checked before opening, so that a typo cannot create the data directory.
    if let GroupsCommand::Describe { group }
    | GroupsCommand::ResetOffsets(ResetArgs { group, .. }) = &args.command
    {
        validate_group_name(group)?;
    }
    if let GroupsCommand::ResetOffsets(ResetArgs { topic, .. }) = &args.command {
        validate_topic_name(topic)?;
    }
    let target = connect(&args.common, Access::MustExist)?;
    match args.command {
        GroupsCommand::List => print_list(&list(&target)?, json, out),
        GroupsCommand::Describe { group } => {
            print_description(&describe(&target, &group)?, json, out)
        }
        GroupsCommand::ResetOffsets(reset) => {
            let moved = reset_offsets(&target, &reset)?;
            print_reset(&reset, &moved, json, out)
        }
    }
}

// ----- the log, opened directly ----------------------------------------------------------------

/// Every topic the group has offsets on, with its partitions' lag.
fn lag_by_topic(log: &Log, group: &str) -> anyhow::Result<Vec<(String, Vec<PartitionLag>)>> {
    log.group_topics(group)?
        .into_iter()
        .map(|topic| {
            let lag = log.group_lag(group, &topic)?;
            Ok((topic, lag))
        })
        .collect()
}

fn list(target: &Target) -> anyhow::Result<Vec<GroupSummary>> {
    let log = match target {
        Target::Local(log) => log,
        Target::Remote(remote) => return runtime()?.block_on(list_remote(remote)),
    };
    let mut groups = Vec::new();
    for name in log.group_names()? {
        let lags = lag_by_topic(log, &name)?;
        groups.push(GroupSummary {
            topics: lags.iter().map(|(topic, _)| topic.clone()).collect(),
            lag: lags.iter().flat_map(|(_, ps)| ps).map(|p| p.lag).sum(),
            members: 0,
            name,
        });
    }
    Ok(groups)
}

fn describe(target: &Target, group: &str) -> anyhow::Result<Vec<PartitionPosition>> {
    let log = match target {
        Target::Local(log) => log,
        Target::Remote(remote) => {
            return Ok(runtime()?
                .block_on(describe_remote(remote, group))?
                .positions())
        }
    };
    let lags = lag_by_topic(log, group)?;
    if lags.is_empty() {
        anyhow::bail!("consumer group {group:?} has no committed offsets");
    }
    let positions = lags.into_iter().flat_map(|(topic, partitions)| {
        partitions.into_iter().map(move |p| PartitionPosition {
            group: group.to_owned(),
            topic: topic.clone(),
            partition: p.partition,
            committed: p.committed,
            low: p.low,
            high: p.high,
            lag: p.lag,
            member: None,
        })
    });
    Ok(positions.collect())
}

/// The new committed offset of every partition reset, durable once this returns (for a dry
/// run: what they would be).
fn reset_offsets(target: &Target, args: &ResetArgs) -> anyhow::Result<Vec<(u32, u64)>> {
    refuse_internal_group(target, args)?;
    match target {
        Target::Local(log) => {
            let moved = log.reset_offsets_by_plan(&args.group, &args.topic, &args.plan())?;
            runtime()?.block_on(log.sync())?;
            Ok(moved)
        }
        Target::Remote(remote) => runtime()?.block_on(reset_remote(remote, args)),
    }
}

/// Fails for a group the server's own workers consume with: `store` always, the others while a
/// server runs (its workers would commit over the reset, or resume from it half-way) and,
/// with the server stopped, unless `--force` says the operator means it.
fn refuse_internal_group(target: &Target, args: &ResetArgs) -> anyhow::Result<()> {
    let group = &args.group;
    if group == crate::pipeline::STORE_GROUP {
        anyhow::bail!(
            "consumer group {group:?} follows the chat store's own applied position (kept in the \
             data directory's store/); it cannot be reset"
        );
    }
    if !crate::pipeline::is_internal_group(group) {
        return Ok(());
    }
    if let Target::Remote(remote) = target {
        anyhow::bail!(
            "consumer group {group:?} is one the server's own workers consume with, and the \
             server at {} is running: its workers would commit over the reset. Stop the server, \
             then run this again with --force on its data directory",
            remote.base()
        );
    }
    if !args.force {
        anyhow::bail!(
            "consumer group {group:?} is one the server's own workers consume with: moving it \
             back re-sends every notification in between to users, moving it forward skips them. \
             Pass --force to reset it anyway (with the server stopped)"
        );
    }
    Ok(())
}

// ----- a server, over HTTP ---------------------------------------------------------------------

/// `GET /api/groups` answer.
#[derive(Debug, Deserialize)]
struct GroupListWire {
    items: Vec<GroupNameWire>,
}

#[derive(Debug, Deserialize)]
struct GroupNameWire {
    group: String,
}

/// `GET /api/groups/{group}` answer.
#[derive(Debug, Deserialize)]
struct GroupWire {
    group: String,
    members: Vec<MemberWire>,
    offsets: Vec<TopicOffsetsWire>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemberWire {
    member_id: String,
    assignment: Vec<TopicPartitionWire>,
}

#[derive(Debug, Deserialize)]
struct TopicPartitionWire {
    topic: String,
    partition: u32,
}

#[derive(Debug, Deserialize)]
struct TopicOffsetsWire {
    topic: String,
    partitions: Vec<LagWire>,
}

#[derive(Debug, Deserialize)]
struct LagWire {
    partition: u32,
    committed: Option<u64>,
    low: u64,
    high: u64,
    lag: u64,
}

/// `POST /api/groups/{group}/offsets/reset` answer.
#[derive(Debug, Deserialize)]
struct ResetWire {
    offsets: Vec<ResetOffsetWire>,
}

#[derive(Debug, Deserialize)]
struct ResetOffsetWire {
    partition: u32,
    offset: u64,
}

impl GroupWire {
    /// The member a partition is assigned to.
    fn owner(&self, topic: &str, partition: u32) -> Option<String> {
        self.members
            .iter()
            .find(|m| {
                m.assignment
                    .iter()
                    .any(|tp| tp.topic == topic && tp.partition == partition)
            })
            .map(|m| m.member_id.clone())
    }

    fn positions(&self) -> Vec<PartitionPosition> {
        let mut positions = Vec::new();
        for topic in &self.offsets {
            for p in &topic.partitions {
                positions.push(PartitionPosition {
                    group: self.group.clone(),
                    topic: topic.topic.clone(),
                    partition: p.partition,
                    committed: p.committed,
                    low: p.low,
                    high: p.high,
                    lag: p.lag,
                    member: self.owner(&topic.topic, p.partition),
                });
            }
        }
        positions
    }

    fn summary(self) -> GroupSummary {
        let partitions = self.offsets.iter().flat_map(|t| &t.partitions);
        GroupSummary {
            topics: self.offsets.iter().map(|t| t.topic.clone()).collect(),
            lag: partitions.map(|p| p.lag).sum(),
            members: self.members.len(),
            name: self.group,
        }
    }
}

async fn describe_remote(remote: &Remote, group: &str) -> anyhow::Result<GroupWire> {
    Ok(remote.get(&format!("/api/groups/{group}")).await?)
}

/// Every group the server knows, each described; one that went away meanwhile is left out.
async fn list_remote(remote: &Remote) -> anyhow::Result<Vec<GroupSummary>> {
    let names: GroupListWire = remote.get("/api/groups").await?;
    let mut groups = Vec::with_capacity(names.items.len());
    for name in names.items {
        match remote
            .get::<GroupWire>(&format!("/api/groups/{}", name.group))
            .await
        {
            Ok(group) => groups.push(group.summary()),
            Err(gone) if gone.status() == Some(404) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(groups)
}

async fn reset_remote(remote: &Remote, args: &ResetArgs) -> anyhow::Result<Vec<(u32, u64)>> {
    let mut body = serde_json::json!({ "topic": args.topic });
    match args.plan().to {
        ResetTo::Earliest => body["to"] = "earliest".into(),
        ResetTo::Latest => body["to"] = "latest".into(),
        ResetTo::Offset(offset) => body["to"] = offset.into(),
        ResetTo::Timestamp(ms) => body["to"] = format_timestamp(ms).into(),
        ResetTo::ShiftBy(delta) => body["shiftBy"] = delta.into(),
    }
    if !args.partitions.is_empty() {
        body["partitions"] = serde_json::json!(args.partitions);
    }
    if args.dry_run {
        body["dryRun"] = true.into();
    }
    let path = format!("/api/groups/{}/offsets/reset", args.group);
    let answer: ResetWire = remote.post(&path, &body).await?;
    Ok(answer
        .offsets
        .into_iter()
        .map(|o| (o.partition, o.offset))
        .collect())
}

// ----- output ----------------------------------------------------------------------------------

fn print_list(groups: &[GroupSummary], json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    if json {
        for group in groups {
            write_json_line(out, group)?;
        }
        return Ok(());
    }
    let mut table = Table::new(&["GROUP", "TOPICS", "MEMBERS", "LAG"]);
    for group in groups {
        table.row(vec![
            group.name.clone(),
            group.topics.join(","),
            group.members.to_string(),
            group.lag.to_string(),
        ]);
    }
    table.write(out)?;
    Ok(())
}

fn print_description(
    positions: &[PartitionPosition],
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if json {
        for position in positions {
            write_json_line(out, position)?;
        }
        return Ok(());
    }
    let headings = [
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "LOW",
        "HIGH",
        "LAG",
        "MEMBER",
    ];
    let mut table = Table::new(&headings);
    for p in positions {
        table.row(vec![
            p.topic.clone(),
            p.partition.to_string(),
            cell(p.committed),
            p.low.to_string(),
            p.high.to_string(),
            p.lag.to_string(),
            p.member.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    table.write(out)?;
    Ok(())
}

fn print_reset(
    args: &ResetArgs,
    moved: &[(u32, u64)],
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if json {
        for &(partition, offset) in moved {
            let line = ResetJson {
                group: &args.group,
                topic: &args.topic,
                partition,
                offset,
            };
            write_json_line(out, &line)?;
        }
        return Ok(());
    }
    let verb = if args.dry_run {
        "would reset (dry run, nothing committed)"
    } else {
        "reset"
    };
    writeln!(out, "{verb} group {} on topic {}:", args.group, args.topic)?;
    let mut table = Table::new(&["TOPIC", "PARTITION", "OFFSET"]);
    for &(partition, offset) in moved {
        table.row(vec![
            args.topic.clone(),
            partition.to_string(),
            offset.to_string(),
        ]);
    }
    table.write(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_targets_parse() {
        assert_eq!(parse_reset_to("earliest"), Ok(ResetTo::Earliest));
        assert_eq!(parse_reset_to("latest"), Ok(ResetTo::Latest));
        assert_eq!(parse_reset_to("42"), Ok(ResetTo::Offset(42)));
        assert_eq!(
            parse_reset_to("2024-05-01T10:00:00Z"),
            Ok(ResetTo::Timestamp(1_714_557_600_000))
        );
        assert!(parse_reset_to("-1").is_err());
        assert!(parse_reset_to("soon").is_err());
    }
}
