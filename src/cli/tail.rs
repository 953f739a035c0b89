//! `tidings tail TOPIC`: prints a topic's records, like `kafka-console-consumer.sh`.
//!
//! Owns choosing where each partition starts, reading every chosen partition concurrently (one
//! task each, so records of one partition stay in offset order while partitions interleave), and
//! waiting for new records with the log's high-watermark subscription (no polling) when
//! following. It commits no offsets: tailing is not consuming as a group.
//!
//! As in Kafka, a tail starts at the end: without `--from-beginning` it prints only records
//! appended after it started, so without `--follow` it prints nothing.

use std::io::Write;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{open_log, record_text_line, runtime, write_json_line, Access, CommonArgs, RecordJson};
use crate::log::{Log, LogError, ReadLimits, StoredRecord};

/// Options of `tidings tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Topic to read.
    topic: String,
    /// Start at each partition's first retained record instead of at its end.
    #[arg(long)]
    from_beginning: bool,
    /// Read only this partition (default: all of them).
    #[arg(long, value_name = "P")]
    partition: Option<u32>,
    /// Keep waiting for new records until interrupted (Ctrl-C).
    #[arg(long)]
    follow: bool,
}

/// Prints the records; returns at the end of every partition, or on Ctrl-C / SIGTERM when
/// following.
pub fn run(args: TailArgs) -> anyhow::Result<()> {
    let log = open_log(&args.common, Access::MustExist)?;
    let starts = start_offsets(&log, &args.topic, args.partition, args.from_beginning)?;
    runtime()?.block_on(async {
        let mut tail = Tail::start(&log, &args.topic, starts, args.follow);
        print_until_interrupted(&mut tail, args.common.json).await
    })
}

/// Where each selected partition starts: its low watermark from the beginning, else its high
/// watermark.
pub fn start_offsets(
    log: &Log,
    topic: &str,
    partition: Option<u32>,
    from_beginning: bool,
) -> Result<Vec<(u32, u64)>, LogError> {
    let info = log.describe_topic(topic)?;
    let selected: Vec<_> = match partition {
        None => info.partitions,
        Some(wanted) => {
            let found = info.partitions.iter().find(|p| p.partition == wanted);
            vec![*found.ok_or(LogError::UnknownPartition {
                topic: topic.into(),
                partition: wanted,
                partitions: info.config.partitions,
            })?]
        }
    };
    Ok(selected
        .iter()
        .map(|p| (p.partition, if from_beginning { p.low } else { p.high }))
        .collect())
}

async fn print_until_interrupted(tail: &mut Tail, json: bool) -> anyhow::Result<()> {
    let interrupted = interrupted();
    tokio::pin!(interrupted);
    let mut out = std::io::stdout().lock();
    loop {
        tokio::select! {
            batch = tail.next_batch() => match batch {
                None => return Ok(()),
                Some(batch) => print_batch(&mut out, &batch?, json)?,
            },
            signal = &mut interrupted => return signal,
        }
    }
}

fn print_batch(out: &mut impl Write, records: &[StoredRecord], json: bool) -> anyhow::Result<()> {
    for record in records {
        if json {
            write_json_line(out, &RecordJson::new(record)?)?;
        } else {
            writeln!(out, "{}", record_text_line(record))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn interrupted() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        ctrl_c = tokio::signal::ctrl_c() => Ok(ctrl_c?),
        _ = terminate.recv() => Ok(()),
    }
}

/// Batches of records from several partitions of one topic, each partition in offset order.
pub struct Tail {
    batches: mpsc::Receiver<Result<Vec<StoredRecord>, LogError>>,
    /// The readers; dropping the `Tail` aborts them.
    _readers: JoinSet<()>,
}

impl Tail {
    /// Starts one reader per `(partition, first offset)`; must be called inside a tokio runtime.
    /// Without `follow` each reader stops at its partition's high watermark; with it, it waits
    /// for more.
    pub fn start(log: &Log, topic: &str, starts: Vec<(u32, u64)>, follow: bool) -> Tail {
        let (sender, batches) = mpsc::channel(16);
        let mut readers = JoinSet::new();
        for (partition, offset) in starts {
            let reader = PartitionReader {
                log: log.clone(),
                topic: topic.to_owned(),
                partition,
                next: offset,
                follow,
            };
            let sender = sender.clone();
            readers.spawn(async move {
                if let Err(e) = reader.run(&sender).await {
                    let _ = sender.send(Err(e)).await;
                }
            });
        }
        Tail {
            batches,
            _readers: readers,
        }
    }

    /// The next batch of some partition; `None` once every reader has stopped.
    pub async fn next_batch(&mut self) -> Option<Result<Vec<StoredRecord>, LogError>> {
        self.batches.recv().await
    }
}

struct PartitionReader {
    log: Log,
    topic: String,
    partition: u32,
    next: u64,
    follow: bool,
}

type BatchSender = mpsc::Sender<Result<Vec<StoredRecord>, LogError>>;

impl PartitionReader {
    /// Reads to the high watermark, then (following) waits for it to move and reads again.
    async fn run(mut self, sender: &BatchSender) -> Result<(), LogError> {
        let mut high_watermark = self.log.subscribe(&self.topic, self.partition)?;
        loop {
            let records = self.read()?;
            if let Some(last) = records.last() {
                self.next = last.offset + 1;
                if sender.send(Ok(records)).await.is_err() {
                    return Ok(()); // Nobody is printing any more.
                }
                continue;
            }
            if !self.follow {
                return Ok(());
            }
            let next = self.next;
            high_watermark
                .wait_for(|high| *high > next)
                .await
                .map_err(|_| LogError::Closed)?;
        }
    }

    /// The records from `next` on; skips ahead when retention deleted the ones at `next`.
    fn read(&mut self) -> Result<Vec<StoredRecord>, LogError> {
        let (topic, partition) = (&self.topic, self.partition);
        match self
            .log
            .read(topic, partition, self.next, ReadLimits::default())
        {
            Err(LogError::OffsetOutOfRange { earliest, .. }) if self.next < earliest => {
                self.next = earliest;
                self.log
                    .read(topic, partition, earliest, ReadLimits::default())
            }
            other => other,
        }
    }
}
