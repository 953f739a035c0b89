//! `tidings groups list|describe|reset-offsets`: consumer groups' committed offsets and lag,
//! like `kafka-consumer-groups.sh`.
//!
//! Owns the group commands' options, parsing `--to`, and their output. A group exists once it
//! has committed (or been reset to) an offset; the CLI never commits on its own.

use std::io::Write;

use serde::Serialize;

use super::{cell, open_log, parse_timestamp, runtime, write_json_line, Access, CommonArgs, Table};
use crate::log::{validate_group_name, Log, PartitionLag, ResetTo};

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
    /// Lists the consumer groups that have committed offsets, their topics and total lag.
    List,
    /// Shows a group's committed offset, watermarks and lag on every partition it has read.
    Describe {
        /// Consumer group name.
        group: String,
    },
    /// Moves a group's committed offsets on every partition of a topic (stop its consumers
    /// first: they would commit over the reset).
    ResetOffsets(ResetArgs),
}

#[derive(Debug, clap::Args)]
struct ResetArgs {
    /// Consumer group name (created if it has no offsets yet).
    group: String,
    /// Topic whose partitions to reset.
    #[arg(long, value_name = "TOPIC")]
    topic: String,
    /// `earliest` (first retained record), `latest` (high watermark), an offset (clamped into
    /// each partition's retained range), or an RFC 3339 time such as 2024-05-01T10:00:00Z (the
    /// first record appended at or after it).
    #[arg(long, value_name = "WHERE", value_parser = parse_reset_to)]
    to: ResetTo,
}

/// Parses `--to`: `earliest`, `latest`, an offset or an RFC 3339 time.
pub fn parse_reset_to(text: &str) -> Result<ResetTo, String> {
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

/// A group in `groups list --json`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupJson<'a> {
    name: &'a str,
    topics: &'a [String],
    lag: u64,
}

/// One partition in `groups describe --json`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PartitionLagJson<'a> {
    group: &'a str,
    topic: &'a str,
    partition: u32,
    committed: Option<u64>,
    low: u64,
    high: u64,
    lag: u64,
}

/// One partition in `groups reset-offsets --json`.
#[derive(Serialize)]
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
    let log = open_log(&args.common, Access::MustExist)?;
    match args.command {
        GroupsCommand::List => list(&log, json, out),
        GroupsCommand::Describe { group } => describe(&log, &group, json, out),
        GroupsCommand::ResetOffsets(reset) => reset_offsets(&log, &reset, json, out),
    }
}

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

fn list(log: &Log, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let mut table = Table::new(&["GROUP", "TOPICS", "LAG"]);
    for group in log.group_names()? {
        let lags = lag_by_topic(log, &group)?;
        let topics: Vec<String> = lags.iter().map(|(topic, _)| topic.clone()).collect();
        let lag = lags.iter().flat_map(|(_, ps)| ps).map(|p| p.lag).sum();
        if json {
            let line = GroupJson {
                name: &group,
                topics: &topics,
                lag,
            };
            write_json_line(out, &line)?;
        } else {
            table.row(vec![group.clone(), topics.join(","), lag.to_string()]);
        }
    }
    if !json {
        table.write(out)?;
    }
    Ok(())
}

fn describe(log: &Log, group: &str, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let lags = lag_by_topic(log, group)?;
    if lags.is_empty() {
        anyhow::bail!("consumer group {group:?} has no committed offsets");
    }
    let mut table = Table::new(&["TOPIC", "PARTITION", "COMMITTED", "LOW", "HIGH", "LAG"]);
    for (topic, partitions) in &lags {
        for p in partitions {
            if json {
                let line = PartitionLagJson {
                    group,
                    topic,
                    partition: p.partition,
                    committed: p.committed,
                    low: p.low,
                    high: p.high,
                    lag: p.lag,
                };
                write_json_line(out, &line)?;
            } else {
                table.row(vec![
                    topic.clone(),
                    p.partition.to_string(),
                    cell(p.committed),
                    p.low.to_string(),
                    p.high.to_string(),
                    p.lag.to_string(),
                ]);
            }
        }
    }
    if !json {
        table.write(out)?;
    }
    Ok(())
}

fn reset_offsets(
    log: &Log,
    args: &ResetArgs,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let moved = log.reset_offsets(&args.group, &args.topic, args.to)?;
    // Make the new offsets durable before reporting them.
    runtime()?.block_on(log.sync())?;
    let mut table = Table::new(&["TOPIC", "PARTITION", "OFFSET"]);
    for (partition, offset) in moved {
        if json {
            let line = ResetJson {
                group: &args.group,
                topic: &args.topic,
                partition,
                offset,
            };
            write_json_line(out, &line)?;
        } else {
            table.row(vec![
                args.topic.clone(),
                partition.to_string(),
                offset.to_string(),
            ]);
        }
    }
    if !json {
        writeln!(out, "reset group {} on topic {}:", args.group, args.topic)?;
        table.write(out)?;
    }
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
