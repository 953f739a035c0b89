//! `tidings produce TOPIC`: one record per line of standard input, like
//! `kafka-console-producer.sh`.
//!
//! Owns reading stdin into batches of lines and appending them, to the log opened directly or
//! through a server's publish routes. Lines are appended in batches of up to
//! `MAX_BATCH_LINES`, and a batch is sent early whenever stdin has nothing more buffered, so an
//! interactive producer sees each line appended as soon as it is typed. Every append is durable
//! before the next batch is read. Partitioning is the log's (by key, else round-robin).
//!
//! Over HTTP a record's value must be JSON: a line that is one JSON document is published as
//! that JSON, any other line as a JSON string of its text (so an HTTP consumer reads every line
//! alike in both modes). A batch is split into requests of at most `MAX_REQUEST_BYTES`.
//!
//! The server's own topics are refused unless `--force` is given, and refused whatever the flag
//! while a server runs (`--server`, or a data directory a server holds): the server's workers
//! read them, so appending there is an offline repair only.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::os::fd::AsFd;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::runtime::Runtime;

use super::connect::{connect, Target};
use super::remote::Remote;
use super::topics::describe_remote;
use super::{runtime, write_json_line, Access, CommonArgs};
use crate::api::topics::InternalTopic;
use crate::log::{Log, LogError, Record};

/// Most lines appended together.
pub(crate) const MAX_BATCH_LINES: usize = 500;
/// Most bytes of records in one publish request (the server's default body limit is 1 MiB).
pub(crate) const MAX_REQUEST_BYTES: usize = 512 * 1024;

/// Options of `tidings produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Topic to append to; it must exist (see `tidings topics create`).
    topic: String,
    /// Key of every record (records with the same key go to the same partition).
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Append every record to this partition instead of choosing by key or round-robin.
    #[arg(long, value_name = "P")]
    partition: Option<u32>,
    /// Append to one of the server's own topics (`messages`, `messages.sent`, `message.new`,
    /// `message.new.dlq`) anyway, on a data directory no server holds: what is appended there
    /// is applied or pushed as if the server had written it (refused while a server runs).
    #[arg(long)]
    force: bool,
}

/// Where one record landed, as `--json` prints it.
#[derive(Debug, Serialize, Deserialize)]
struct Position {
    partition: u32,
    offset: u64,
}

/// The publish routes' answer.
#[derive(Debug, Deserialize)]
struct Published {
    offsets: Vec<Position>,
}

/// The publish routes' body.
#[derive(Debug, Serialize)]
struct PublishBody<'a> {
    records: Vec<PublishedRecord<'a>>,
}

/// One record as the publish routes take it.
#[derive(Debug, Serialize)]
struct PublishedRecord<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    value: Box<RawValue>,
}

/// Appends stdin's lines and reports `produced N records to TOPIC` on stderr.
pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    if !args.force {
        refuse_server_topic(&args.topic)?;
    }
    let runtime = runtime()?;
    let target = connect(&args.common, Access::MustExist)?;
    if let Target::Remote(remote) = &target {
        refuse_server_topic_while_running(&args.topic, remote)?;
    }
    let partitions = match &target {
        Target::Local(log) => log.describe_topic(&args.topic)?.config.partitions,
        Target::Remote(remote) => {
            let topic = runtime.block_on(describe_remote(remote, &args.topic))?;
            u32::try_from(topic.partitions.len()).unwrap_or(u32::MAX)
        }
    };
    check_partition(&args.topic, args.partition, partitions)?;
    let stdin = File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let mut lines = LineBatches::new(stdin);
    let progress = progress_spinner();
    let outcome = produce(&runtime, &target, &args, &mut lines, &progress);
    progress.finish_and_clear();
    eprintln!("produced {} records to {}", progress.position(), args.topic);
    outcome
}

/// Fails, before anything is opened, for a topic the server writes itself: a line produced
/// there by mistake is a chat command the store applies, an event other services act on, or a
/// notification every sink pushes to users.
fn refuse_server_topic(topic: &str) -> anyhow::Result<()> {
    let Some(internal) = crate::api::topics::internal_topic(topic) else {
        return Ok(());
    };
    let effect = match internal {
        InternalTopic::Commands => "the chat store applies every record there as a chat write",
        InternalTopic::Events => "other services act on every record there as a chat event",
        InternalTopic::Notifications => {
            "every notification sink pushes every record there to users"
        }
        InternalTopic::DeadLetters => "`tidings dlq replay` re-delivers every record there",
    };
    anyhow::bail!(
        "topic {topic:?} is written by the server itself: {effect}. To put dead letters back \
         use `tidings dlq replay`; to append anyway, stop the server and pass --force"
    )
}

/// Fails for a topic the server writes itself when the server is running, whatever `--force`
/// says: its workers are consuming that topic at this moment.
fn refuse_server_topic_while_running(topic: &str, remote: &Remote) -> anyhow::Result<()> {
    if crate::api::topics::internal_topic(topic).is_none() {
        return Ok(());
    }
    anyhow::bail!(
        "topic {topic:?} is written by the server itself, and the server at {} is running: its \
         workers would act on what is appended at once. Stop the server, then run this again \
         with --force on its data directory (to put dead letters back use `tidings dlq replay`)",
        remote.base()
    )
}

/// Fails before anything is read when the partition does not exist.
fn check_partition(topic: &str, partition: Option<u32>, partitions: u32) -> anyhow::Result<()> {
    match partition {
        Some(partition) if partition >= partitions => Err(LogError::UnknownPartition {
            topic: topic.into(),
            partition,
            partitions,
        }
        .into()),
        _ => Ok(()),
    }
}

/// A count of records produced, drawn on stderr while stdin is a pipe or a file and stderr a
/// terminal (an interactive producer's typing is left alone); hidden otherwise.
fn progress_spinner() -> ProgressBar {
    if std::io::stdin().is_terminal() {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} produced {pos} records ({per_sec})")
            .expect("valid progress template"),
    );
    spinner
}

fn produce<R: Read>(
    runtime: &Runtime,
    target: &Target,
    args: &ProduceArgs,
    lines: &mut LineBatches<R>,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    loop {
        let batch = lines.next_batch()?;
        if batch.is_empty() {
            return Ok(());
        }
        let appended = runtime.block_on(async {
            match target {
                Target::Local(log) => append_local(log, args, batch).await,
                Target::Remote(remote) => append_remote(remote, args, &batch, progress).await,
            }
        })?;
        if matches!(target, Target::Local(_)) {
            progress.inc(appended.len() as u64);
        }
        if args.common.json {
            for position in &appended {
                write_json_line(&mut out, position)?;
            }
            out.flush()?;
        }
    }
}

async fn append_local(
    log: &Log,
    args: &ProduceArgs,
    batch: Vec<Vec<u8>>,
) -> anyhow::Result<Vec<Position>> {
    let records = batch
        .into_iter()
        .map(|value| Record {
            key: args.key.as_ref().map(|k| k.as_bytes().to_vec()),
            headers: Vec::new(),
            value,
        })
        .collect();
    let appended = match args.partition {
        Some(partition) => log.append_to(&args.topic, partition, records).await?,
        None => log.append(&args.topic, records).await?,
    };
    Ok(appended
        .into_iter()
        .map(|a| Position {
            partition: a.partition,
            offset: a.offset,
        })
        .collect())
}

/// Publishes the lines in requests of at most [`MAX_REQUEST_BYTES`], one after the other (so
/// records keep their order), counting each answered request on `progress`.
async fn append_remote(
    remote: &Remote,
    args: &ProduceArgs,
    batch: &[Vec<u8>],
    progress: &ProgressBar,
) -> anyhow::Result<Vec<Position>> {
    let path = match args.partition {
        Some(partition) => format!("/api/topics/{}/partitions/{partition}/records", args.topic),
        None => format!("/api/topics/{}/records", args.topic),
    };
    let mut positions = Vec::with_capacity(batch.len());
    for records in requests(args.key.as_deref(), batch)? {
        let count = records.len() as u64;
        // Serialized as it is (not through `serde_json::Value`), so each value keeps its text.
        let published: Published = remote.post(&path, &PublishBody { records }).await?;
        positions.extend(published.offsets);
        progress.inc(count);
    }
    Ok(positions)
}

/// The lines as publish requests' records, split so that no request carries more than
/// [`MAX_REQUEST_BYTES`] of values and keys (a longer single line goes alone).
fn requests<'a>(
    key: Option<&'a str>,
    batch: &[Vec<u8>],
) -> anyhow::Result<Vec<Vec<PublishedRecord<'a>>>> {
    let mut requests = Vec::new();
    let mut current: Vec<PublishedRecord<'a>> = Vec::new();
    let mut bytes = 0;
    for line in batch {
        let value = line_value(line)?;
        let size = value.get().len() + key.map_or(0, str::len);
        if !current.is_empty() && bytes + size > MAX_REQUEST_BYTES {
            requests.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(PublishedRecord { key, value });
    }
    if !current.is_empty() {
        requests.push(current);
    }
    Ok(requests)
}

/// A line as a JSON value: itself when it is one JSON document, else a JSON string of its text
/// (invalid UTF-8 replaced by U+FFFD, as the server's reads do).
fn line_value(line: &[u8]) -> anyhow::Result<Box<RawValue>> {
    if let Ok(document) = serde_json::from_slice::<Box<RawValue>>(line) {
        return Ok(document);
    }
    Ok(serde_json::value::to_raw_value(&String::from_utf8_lossy(
        line,
    ))?)
}

/// Splits a byte stream into lines (without `\n` or `\r\n`), handed out in batches.
pub(crate) struct LineBatches<R> {
    reader: BufReader<R>,
}

impl<R: Read> LineBatches<R> {
    /// Reads from `source` (unbuffered: the batches decide when reading would block).
    pub(crate) fn new(source: R) -> Self {
        LineBatches {
            reader: BufReader::with_capacity(64 * 1024, source),
        }
    }

    /// The next lines: at least one unless the input is exhausted, at most
    /// [`MAX_BATCH_LINES`], stopping early when no further input is buffered. A last line
    /// without a newline counts as a line.
    pub(crate) fn next_batch(&mut self) -> std::io::Result<Vec<Vec<u8>>> {
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            if self.reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(lines);
            }
            strip_line_end(&mut line);
            lines.push(line);
            if lines.len() >= MAX_BATCH_LINES || self.reader.buffer().is_empty() {
                return Ok(lines);
            }
        }
    }
}

fn strip_line_end(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_json_values_and_requests_stay_under_the_size_limit() {
        assert_eq!(line_value(br#"{"n": 1}"#).unwrap().get(), r#"{"n": 1}"#);
        assert_eq!(line_value(b"42").unwrap().get(), "42");
        assert_eq!(line_value(b"hello").unwrap().get(), r#""hello""#);
        assert_eq!(line_value(b"").unwrap().get(), r#""""#);
        assert_eq!(line_value(&[b'a', 0xff]).unwrap().get(), "\"a\u{fffd}\"");
        let big = vec![b'x'; MAX_REQUEST_BYTES / 3];
        let batch = vec![big.clone(), big.clone(), big.clone(), b"tail".to_vec()];
        let split = requests(Some("k"), &batch).unwrap();
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2]);
        assert!(split.iter().flatten().all(|r| r.key == Some("k")));
        let alone = requests(None, &[vec![b'y'; MAX_REQUEST_BYTES * 2]]).unwrap();
        assert_eq!(alone.len(), 1);
    }

    #[test]
    fn lines_lose_their_line_ends_and_batches_are_capped() {
        let input: Vec<u8> = (0..1200)
            .flat_map(|i| format!("line {i}\r\n").into_bytes())
            .chain(b"\nlast".iter().copied())
            .collect();
        let mut lines = LineBatches::new(std::io::Cursor::new(input));
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        loop {
            let batch = lines.next_batch().unwrap();
            if batch.is_empty() {
                break;
            }
            sizes.push(batch.len());
            all.extend(batch);
        }
        assert!(sizes.iter().all(|n| *n <= MAX_BATCH_LINES));
        assert_eq!(all.len(), 1202);
        assert_eq!(all[0], b"line 0");
        assert_eq!(all[1200], b"");
        assert_eq!(all[1201], b"last");
    }
}
