//! `tidings topics list|create|describe|delete`: the topic registry, like `kafka-topics.sh`.
//!
//! Owns the topic commands' options, their two implementations (the log opened directly, or a
//! server's `/api/topics` routes) and their one output (a table, or one JSON object per topic),
//! printed from a `TopicSummary` either implementation fills. Validation (names, partition
//! counts, retention values) is the log's, also before a request is sent: its errors are passed
//! on unchanged, and a refused command changes nothing.

use std::io::Write;

use serde::{Deserialize, Serialize};

use super::connect::{connect, Target};
use super::remote::Remote;
use super::{cell, runtime, write_json_line, Access, CommonArgs, Table};
use crate::log::{validate_topic_name, TopicConfig, TopicInfo};

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

/// A topic as every topics command prints it (`--json`: one per line, in this shape).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TopicSummary {
    name: String,
    config: TopicSettings,
    partitions: Vec<PartitionSummary>,
}

/// A topic's configuration; what a server does not report over HTTP is `None` (`null`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TopicSettings {
    partitions: u32,
    retention_ms: Option<u64>,
    retention_bytes: Option<u64>,
    protected_groups: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PartitionSummary {
    partition: u32,
    low: u64,
    high: u64,
    records: u64,
    /// Bytes of retained batches; the HTTP API does not report them.
    bytes: Option<u64>,
}

impl PartitionSummary {
    fn new(partition: u32, low: u64, high: u64, bytes: Option<u64>) -> Self {
        PartitionSummary {
            partition,
            low,
            high,
            records: high.saturating_sub(low),
            bytes,
        }
    }
}

impl From<&TopicInfo> for TopicSummary {
    fn from(info: &TopicInfo) -> Self {
        let partitions = info
            .partitions
            .iter()
            .map(|p| PartitionSummary::new(p.partition, p.low, p.high, Some(p.bytes)))
            .collect();
        let config = &info.config;
        TopicSummary {
            name: info.name.clone(),
            config: TopicSettings {
                partitions: config.partitions,
                retention_ms: config.retention_ms,
                retention_bytes: config.retention_bytes,
                protected_groups: Some(config.protected_groups.clone()),
            },
            partitions,
        }
    }
}

/// A topic as the server's `/api/topics` routes answer it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TopicWire {
    name: String,
    pub(crate) partitions: Vec<PartitionWatermarks>,
    retention_ms: Option<u64>,
    retention_bytes: Option<u64>,
}

/// One partition's watermarks, as the server answers them.
#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) struct PartitionWatermarks {
    pub(crate) partition: u32,
    pub(crate) low: u64,
    pub(crate) high: u64,
}

#[derive(Debug, Deserialize)]
struct TopicListWire {
    items: Vec<TopicWire>,
}

impl From<TopicWire> for TopicSummary {
    fn from(wire: TopicWire) -> Self {
        let partitions: Vec<_> = wire
            .partitions
            .iter()
            .map(|p| PartitionSummary::new(p.partition, p.low, p.high, None))
            .collect();
        TopicSummary {
            name: wire.name,
            config: TopicSettings {
                partitions: u32::try_from(partitions.len()).unwrap_or(u32::MAX),
                retention_ms: wire.retention_ms,
                retention_bytes: wire.retention_bytes,
                protected_groups: None,
            },
            partitions,
        }
    }
}

/// `GET /api/topics/{name}`: one topic with its partitions' watermarks (also used by `produce`
/// and `tail`). The name is checked first, so that a bad one gets the log's message.
pub(crate) async fn describe_remote(remote: &Remote, name: &str) -> anyhow::Result<TopicWire> {
    validate_topic_name(name)?;
    Ok(remote.get(&format!("/api/topics/{name}")).await?)
}

/// Runs a topics subcommand.
pub fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let out = &mut std::io::stdout().lock();
    match args.command {
        TopicsCommand::List => print_list(&list(common)?, common.json, out),
        TopicsCommand::Create(create_args) => {
            let topic = create(common, create_args)?;
            print_created(&topic, common.json, out)
        }
        TopicsCommand::Describe { name } => describe(common, &name, out),
        TopicsCommand::Delete { name } => {
            delete(common, &name)?;
            print_deleted(&name, common.json, out)
        }
    }
}

fn list(common: &CommonArgs) -> anyhow::Result<Vec<TopicSummary>> {
    match connect(common, Access::MustExist)? {
        Target::Local(log) => log
            .topic_names()
            .iter()
            .map(|name| Ok(TopicSummary::from(&log.describe_topic(name)?)))
            .collect(),
        Target::Remote(remote) => {
            let list: TopicListWire = runtime()?.block_on(remote.get("/api/topics"))?;
            Ok(list.items.into_iter().map(TopicSummary::from).collect())
        }
    }
}

fn create(common: &CommonArgs, args: CreateArgs) -> anyhow::Result<TopicSummary> {
    let config = TopicConfig {
        retention_ms: args.retention_ms,
        retention_bytes: args.retention_bytes,
        ..TopicConfig::with_partitions(args.partitions)
    };
    // Checked before opening, so that a refused topic leaves no new data directory behind.
    validate_topic_name(&args.name)?;
    config.validate()?;
    match connect(common, Access::MayCreate)? {
        Target::Local(log) => {
            let info = runtime()?.block_on(log.create_topic(&args.name, config))?;
            Ok(TopicSummary::from(&info))
        }
        Target::Remote(remote) => {
            let body = serde_json::json!({
                "name": args.name,
                "partitions": config.partitions,
                "retentionMs": config.retention_ms,
                "retentionBytes": config.retention_bytes,
            });
            let created: TopicWire = runtime()?.block_on(remote.post("/api/topics", &body))?;
            Ok(created.into())
        }
    }
}

fn describe(common: &CommonArgs, name: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let topic = match connect(common, Access::MustExist)? {
        Target::Local(log) => TopicSummary::from(&log.describe_topic(name)?),
        Target::Remote(remote) => runtime()?.block_on(describe_remote(&remote, name))?.into(),
    };
    print_description(&topic, common.json, out)
}

fn delete(common: &CommonArgs, name: &str) -> anyhow::Result<()> {
    match connect(common, Access::MustExist)? {
        Target::Local(log) => runtime()?.block_on(log.delete_topic(name))?,
        Target::Remote(remote) => {
            validate_topic_name(name)?;
            runtime()?.block_on(remote.delete(&format!("/api/topics/{name}")))?;
        }
    }
    Ok(())
}

/// A sum of byte counts, unless one is unknown.
fn total_bytes(partitions: &[PartitionSummary]) -> Option<u64> {
    partitions.iter().map(|p| p.bytes).sum()
}

fn print_list(topics: &[TopicSummary], json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    if json {
        for topic in topics {
            write_json_line(out, topic)?;
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
    for topic in topics {
        let partitions = &topic.partitions;
        table.row(vec![
            topic.name.clone(),
            partitions.len().to_string(),
            partitions
                .iter()
                .map(|p| p.records)
                .sum::<u64>()
                .to_string(),
            cell(total_bytes(partitions)),
            cell(topic.config.retention_ms),
            cell(topic.config.retention_bytes),
        ]);
    }
    table.write(out)?;
    Ok(())
}

fn print_created(topic: &TopicSummary, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    if json {
        return write_json_line(out, topic);
    }
    let count = topic.partitions.len();
    let plural = if count == 1 { "" } else { "s" };
    writeln!(
        out,
        "created topic {} with {count} partition{plural}",
        topic.name
    )?;
    Ok(())
}

fn print_description(topic: &TopicSummary, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    if json {
        return write_json_line(out, topic);
    }
    let config = &topic.config;
    let protected = match config.protected_groups.as_deref() {
        None | Some([]) => "-".to_owned(),
        Some(groups) => groups.join(","),
    };
    writeln!(out, "topic:            {}", topic.name)?;
    writeln!(out, "partitions:       {}", config.partitions)?;
    writeln!(out, "retention ms:     {}", cell(config.retention_ms))?;
    writeln!(out, "retention bytes:  {}", cell(config.retention_bytes))?;
    writeln!(out, "protected groups: {protected}")?;
    writeln!(out)?;
    let mut table = Table::new(&["PARTITION", "LOW", "HIGH", "RECORDS", "BYTES"]);
    for p in &topic.partitions {
        table.row(vec![
            p.partition.to_string(),
            p.low.to_string(),
            p.high.to_string(),
            p.records.to_string(),
            cell(p.bytes),
        ]);
    }
    table.write(out)?;
    Ok(())
}

fn print_deleted(name: &str, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    if json {
        write_json_line(out, &serde_json::json!({ "name": name, "deleted": true }))?;
    } else {
        writeln!(out, "deleted topic {name}")?;
    }
    Ok(())
}
