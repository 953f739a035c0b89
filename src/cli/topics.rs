//! `tidings topics list|create|describe|delete`: the topic registry, like `kafka-topics.sh`.
//!
//! Owns the topic commands' options and their output (a table, or one JSON object per topic).
//! Validation (names, partition counts, retention values) is the log's: its errors are passed on
//! unchanged, and a refused command changes nothing.

use std::io::Write;

use serde::Serialize;

use super::{cell, open_log, runtime, write_json_line, Access, CommonArgs, Table};
use crate::log::{validate_topic_name, Log, TopicConfig, TopicInfo};

/// `tidings topics …`.
#[derive(Debug, clap::Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: TopicsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TopicsCommand {
    /// Lists the topics with their partition count, retained records and size.
    List,
    /// Creates a topic (and the data directory, when it does not exist yet).
    Create(CreateArgs),
    /// Shows a topic's configuration and each partition's watermarks.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Deletes a topic, its records and every consumer group's offsets on it.
    Delete {
        /// Topic name.
        name: String,
    },
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// Topic name: 1 to 249 characters from [A-Za-z0-9._-].
    name: String,
    /// Number of partitions (1 to 4096; can grow later, never shrink).
    #[arg(long, value_name = "N")]
    partitions: u32,
    /// Delete whole batches older than this many milliseconds (default: keep forever).
    #[arg(long, value_name = "MS")]
    retention_ms: Option<u64>,
    /// Delete the oldest batches while a partition holds more than this many bytes (default:
    /// no limit).
    #[arg(long, value_name = "BYTES")]
    retention_bytes: Option<u64>,
}

/// A topic as `--json` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TopicJson<'a> {
    name: &'a str,
    config: &'a TopicConfig,
    partitions: Vec<PartitionJson>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PartitionJson {
    partition: u32,
    low: u64,
    high: u64,
    records: u64,
    bytes: u64,
}

impl<'a> TopicJson<'a> {
    fn new(info: &'a TopicInfo) -> Self {
        let partitions = info
            .partitions
            .iter()
            .map(|p| PartitionJson {
                partition: p.partition,
                low: p.low,
                high: p.high,
                records: p.high - p.low,
                bytes: p.bytes,
            })
            .collect();
        TopicJson {
            name: &info.name,
            config: &info.config,
            partitions,
        }
    }
}

/// Runs a topics subcommand.
pub fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let out = &mut std::io::stdout().lock();
    match args.command {
        TopicsCommand::List => list(&open_log(common, Access::MustExist)?, common.json, out),
        TopicsCommand::Create(create_args) => create(common, create_args, out),
        TopicsCommand::Describe { name } => {
            let log = open_log(common, Access::MustExist)?;
            describe(&log.describe_topic(&name)?, common.json, out)
        }
        TopicsCommand::Delete { name } => delete(
            &open_log(common, Access::MustExist)?,
            &name,
            common.json,
            out,
        ),
    }
}

fn list(log: &Log, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let infos = log
        .topic_names()
        .iter()
        .map(|name| log.describe_topic(name))
        .collect::<Result<Vec<_>, _>>()?;
    if json {
        for info in &infos {
            write_json_line(out, &TopicJson::new(info))?;
        }
        return Ok(());
    }
    let mut table = Table::new(&[
        "TOPIC",
        "PARTITIONS",
        "RECORDS",
        "BYTES",
        "RETENTION_MS",
        "RETENTION_BYTES",
    ]);
    for info in &infos {
        let partitions = &info.partitions;
        table.row(vec![
            info.name.clone(),
            partitions.len().to_string(),
            partitions
                .iter()
                .map(|p| p.high - p.low)
                .sum::<u64>()
                .to_string(),
            partitions.iter().map(|p| p.bytes).sum::<u64>().to_string(),
            cell(info.config.retention_ms),
            cell(info.config.retention_bytes),
        ]);
    }
    table.write(out)?;
    Ok(())
}

fn create(common: &CommonArgs, args: CreateArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let config = TopicConfig {
        retention_ms: args.retention_ms,
        retention_bytes: args.retention_bytes,
        ..TopicConfig::with_partitions(args.partitions)
    };
    // Checked before opening, so that a refused topic leaves no new data directory behind.
    validate_topic_name(&args.name)?;
    config.validate()?;
    let log = open_log(common, Access::MayCreate)?;
    let info = runtime()?.block_on(log.create_topic(&args.name, config))?;
    if common.json {
        write_json_line(out, &TopicJson::new(&info))?;
    } else {
        let count = info.partitions.len();
        let plural = if count == 1 { "" } else { "s" };
        writeln!(
            out,
            "created topic {} with {count} partition{plural}",
            info.name
        )?;
    }
    Ok(())
}

fn describe(info: &TopicInfo, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    if json {
        return write_json_line(out, &TopicJson::new(info));
    }
    let config = &info.config;
    let protected = match config.protected_groups.as_slice() {
        [] => "-".to_owned(),
        groups => groups.join(","),
    };
    writeln!(out, "topic:            {}", info.name)?;
    writeln!(out, "partitions:       {}", config.partitions)?;
    writeln!(out, "retention ms:     {}", cell(config.retention_ms))?;
    writeln!(out, "retention bytes:  {}", cell(config.retention_bytes))?;
    writeln!(out, "protected groups: {protected}")?;
    writeln!(out)?;
    let mut table = Table::new(&["PARTITION", "LOW", "HIGH", "RECORDS", "BYTES"]);
    for p in &info.partitions {
        table.row(vec![
            p.partition.to_string(),
            p.low.to_string(),
            p.high.to_string(),
            (p.high - p.low).to_string(),
            p.bytes.to_string(),
        ]);
    }
    table.write(out)?;
    Ok(())
}

fn delete(log: &Log, name: &str, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    runtime()?.block_on(log.delete_topic(name))?;
    if json {
        write_json_line(out, &serde_json::json!({ "name": name, "deleted": true }))?;
    } else {
        writeln!(out, "deleted topic {name}")?;
    }
    Ok(())
}
