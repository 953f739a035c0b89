//! `tidings produce TOPIC`: one record per line of standard input, like
//! `kafka-console-producer.sh`.
//!
//! Owns reading stdin into batches of lines and appending them. Lines are appended in batches of
//! up to [`MAX_BATCH_LINES`], and a batch is sent early whenever stdin has nothing more buffered,
//! so an interactive producer sees each line appended as soon as it is typed. Every append is
//! durable before the next batch is read. Partitioning is the log's (by key, else round-robin).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;

use serde::Serialize;

use super::{open_log, runtime, write_json_line, Access, CommonArgs};
use crate::log::{Appended, Log, LogError, Record};

/// Most lines appended together.
pub const MAX_BATCH_LINES: usize = 500;

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
}

#[derive(Serialize)]
struct AppendedJson {
    partition: u32,
    offset: u64,
}

/// Appends stdin's lines and reports `produced N records to TOPIC` on stderr.
pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let log = open_log(&args.common, Access::MustExist)?;
    check_target(&log, &args.topic, args.partition)?;
    let stdin = File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let mut lines = LineBatches::new(stdin);
    let mut produced = 0u64;
    let outcome = produce(&log, &args, &mut lines, &mut produced);
    eprintln!("produced {produced} records to {}", args.topic);
    outcome
}

/// Fails before anything is read when the topic or the partition does not exist.
fn check_target(log: &Log, topic: &str, partition: Option<u32>) -> anyhow::Result<()> {
    let partitions = log.describe_topic(topic)?.config.partitions;
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

fn produce<R: Read>(
    log: &Log,
    args: &ProduceArgs,
    lines: &mut LineBatches<R>,
    produced: &mut u64,
) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let mut out = std::io::stdout().lock();
    loop {
        let batch = lines.next_batch()?;
        if batch.is_empty() {
            return Ok(());
        }
        let records = batch
            .into_iter()
            .map(|value| Record {
                key: args.key.as_ref().map(|k| k.as_bytes().to_vec()),
                headers: Vec::new(),
                value,
            })
            .collect();
        let appended = runtime.block_on(append(log, &args.topic, args.partition, records))?;
        *produced += appended.len() as u64;
        if args.common.json {
            for a in &appended {
                let line = AppendedJson {
                    partition: a.partition,
                    offset: a.offset,
                };
                write_json_line(&mut out, &line)?;
            }
            out.flush()?;
        }
    }
}

async fn append(
    log: &Log,
    topic: &str,
    partition: Option<u32>,
    records: Vec<Record>,
) -> Result<Vec<Appended>, LogError> {
    match partition {
        Some(partition) => log.append_to(topic, partition, records).await,
        None => log.append(topic, records).await,
    }
}

/// Splits a byte stream into lines (without `\n` or `\r\n`), handed out in batches.
pub struct LineBatches<R> {
    reader: BufReader<R>,
}

impl<R: Read> LineBatches<R> {
    /// Reads from `source` (unbuffered: the batches decide when reading would block).
    pub fn new(source: R) -> Self {
        LineBatches {
            reader: BufReader::with_capacity(64 * 1024, source),
        }
    }

    /// The next lines: at least one unless the input is exhausted, at most
    /// [`MAX_BATCH_LINES`], stopping early when no further input is buffered. A last line
    /// without a newline counts as a line.
    pub fn next_batch(&mut self) -> std::io::Result<Vec<Vec<u8>>> {
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
