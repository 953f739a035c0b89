//! `tidings tail TOPIC`: prints a topic's records, like `kafka-console-consumer.sh`.
//!
//! Owns choosing where each partition starts, reading every chosen partition concurrently (one
//! task each, so records of one partition stay in offset order while partitions interleave), and
//! waiting for new records when following: on the log's high-watermark subscription when it
//! opened the log (no polling), with long polls (`waitMs`) when it asks a server. Both kinds of
//! reader hand the same records to the one printer. It commits no offsets: tailing is not
//! consuming as a group.
//!
//! As in Kafka, a tail starts at the end: without `--from-beginning` it prints only records
//! appended after it started, so without `--follow` it prints nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::connect::{connect, Target};
use super::remote::{Remote, RemoteError};
use super::topics::{describe_remote, PartitionWatermarks};
use super::{
    parse_timestamp, record_text_line, runtime, write_json_line, Access, CommonArgs, RecordJson,
};
use crate::log::{Header, Log, LogError, ReadLimits, StoredRecord};

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
    let runtime = runtime()?;
    match connect(&args.common, Access::MustExist)? {
        Target::Local(log) => {
            let starts = start_offsets(&log, &args.topic, args.partition, args.from_beginning)?;
            runtime.block_on(async {
                let mut tail = Tail::start(&log, &args.topic, starts, args.follow);
                print_until_interrupted(&mut tail, args.common.json).await
            })
        }
        Target::Remote(remote) => runtime.block_on(async {
            let topic = describe_remote(&remote, &args.topic).await?;
            let starts = select_starts(
                &args.topic,
                topic.partitions,
                args.partition,
                args.from_beginning,
            )?;
            let mut tail = Tail::start_remote(&remote, &args.topic, starts, args.follow);
            print_until_interrupted(&mut tail, args.common.json).await
        }),
    }
}

/// Where each selected partition starts: its low watermark from the beginning, else its high
/// watermark.
pub(crate) fn start_offsets(
    log: &Log,
    topic: &str,
    partition: Option<u32>,
    from_beginning: bool,
) -> Result<Vec<(u32, u64)>, LogError> {
    let info = log.describe_topic(topic)?;
    let partitions = info.partitions.iter().map(|p| PartitionWatermarks {
        partition: p.partition,
        low: p.low,
        high: p.high,
    });
    select_starts(topic, partitions.collect(), partition, from_beginning)
}

/// [`start_offsets`] from the partitions' watermarks, however they were learnt.
fn select_starts(
    topic: &str,
    partitions: Vec<PartitionWatermarks>,
    partition: Option<u32>,
    from_beginning: bool,
) -> Result<Vec<(u32, u64)>, LogError> {
    let count = u32::try_from(partitions.len()).unwrap_or(u32::MAX);
    let selected: Vec<_> = match partition {
        None => partitions,
        Some(wanted) => {
            let found = partitions.iter().find(|p| p.partition == wanted);
            vec![*found.ok_or(LogError::UnknownPartition {
                topic: topic.into(),
                partition: wanted,
                partitions: count,
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

/// How long one long poll of a following remote tail asks the server to wait (the server
/// caps it at 30 s).
const LONG_POLL: Duration = Duration::from_secs(20);
/// Most records one remote read asks for (the server's maximum).
const REMOTE_READ_LIMIT: usize = 1000;

/// One partition's next records, or why its reader stopped.
type Batch = anyhow::Result<Vec<StoredRecord>>;
type BatchSender = mpsc::Sender<Batch>;

/// Batches of records from several partitions of one topic, each partition in offset order.
pub(crate) struct Tail {
    batches: mpsc::Receiver<Batch>,
    /// The readers; dropping the `Tail` aborts them.
    _readers: JoinSet<()>,
}

impl Tail {
    /// Starts one reader of the log per `(partition, first offset)`; must be called inside a
    /// tokio runtime. Without `follow` each reader stops at its partition's high watermark; with
    /// it, it waits for more.
    pub(crate) fn start(log: &Log, topic: &str, starts: Vec<(u32, u64)>, follow: bool) -> Tail {
        Tail::spawn(topic, starts, follow, |at, sender| {
            let reader = PartitionReader {
                log: log.clone(),
                at,
            };
            async move { Ok(reader.run(&sender).await?) }
        })
    }

    /// [`start`](Self::start) reading from a server: each reader reads its partition until a
    /// read comes back empty, then (following) long-polls for more.
    pub(crate) fn start_remote(
        remote: &Remote,
        topic: &str,
        starts: Vec<(u32, u64)>,
        follow: bool,
    ) -> Tail {
        Tail::spawn(topic, starts, follow, |at, sender| {
            let reader = RemoteReader {
                remote: remote.clone(),
                at,
            };
            async move { reader.run(&sender).await }
        })
    }

    /// Spawns `reader(cursor, sender)` for every start; a reader's error is handed on as its
    /// last batch.
    fn spawn<F>(
        topic: &str,
        starts: Vec<(u32, u64)>,
        follow: bool,
        mut reader: impl FnMut(Cursor, BatchSender) -> F,
    ) -> Tail
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (sender, batches) = mpsc::channel(16);
        let mut readers = JoinSet::new();
        for (partition, next) in starts {
            let sender = sender.clone();
            let at = Cursor {
                topic: topic.to_owned(),
                partition,
                next,
                follow,
            };
            let reading = reader(at, sender.clone());
            readers.spawn(async move {
                if let Err(e) = reading.await {
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
    pub(crate) async fn next_batch(&mut self) -> Option<Batch> {
        self.batches.recv().await
    }
}

/// Where a partition's reader is: the next offset to read, and whether to wait for more at
/// the end.
struct Cursor {
    topic: String,
    partition: u32,
    next: u64,
    follow: bool,
}

/// Reads one partition of the log.
struct PartitionReader {
    log: Log,
    at: Cursor,
}

impl PartitionReader {
    /// Reads to the high watermark, then (following) waits for it to move and reads again.
    async fn run(mut self, sender: &BatchSender) -> Result<(), LogError> {
        let mut high_watermark = self.log.subscribe(&self.at.topic, self.at.partition)?;
        loop {
            let records = self.read()?;
            if let Some(last) = records.last() {
                self.at.next = last.offset + 1;
                if sender.send(Ok(records)).await.is_err() {
                    return Ok(()); // Nobody is printing any more.
                }
                continue;
            }
            if !self.at.follow {
                return Ok(());
            }
            let next = self.at.next;
            high_watermark
                .wait_for(|high| *high > next)
                .await
                .map_err(|_| LogError::Closed)?;
        }
    }

    /// The records from `next` on; skips ahead when retention deleted the ones at `next`.
    fn read(&mut self) -> Result<Vec<StoredRecord>, LogError> {
        let (topic, partition) = (&self.at.topic, self.at.partition);
        match self
            .log
            .read(topic, partition, self.at.next, ReadLimits::default())
        {
            Err(LogError::OffsetOutOfRange { earliest, .. }) if self.at.next < earliest => {
                self.at.next = earliest;
                self.log
                    .read(topic, partition, earliest, ReadLimits::default())
            }
            other => other,
        }
    }
}

/// A page of `GET /api/topics/{name}/partitions/{p}/records`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageWire {
    records: Vec<RecordWire>,
    next_offset: u64,
}

/// A record as the server answers it (`valueBase64` for a value that is not JSON, `keyBase64`
/// for a key that is not UTF-8).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordWire {
    partition: u32,
    offset: u64,
    key: Option<String>,
    key_base64: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    value: Option<Box<RawValue>>,
    value_base64: Option<String>,
    timestamp: String,
}

impl RecordWire {
    /// The record as the log would hand it out, so that one printer serves both modes. The
    /// server shows a value as JSON: one that is a JSON string becomes the string's text (what
    /// `tidings produce` appends is text), any other JSON stays its JSON text.
    fn into_stored(self) -> anyhow::Result<StoredRecord> {
        let value = match (&self.value, &self.value_base64) {
            (Some(json), _) if json.get().trim_start().starts_with('"') => {
                serde_json::from_str::<String>(json.get())?.into_bytes()
            }
            (Some(json), _) => json.get().as_bytes().to_vec(),
            (None, Some(encoded)) => BASE64.decode(encoded)?,
            (None, None) => anyhow::bail!("the server sent a record without a value"),
        };
        let key = match (self.key, &self.key_base64) {
            (Some(key), _) => Some(key.into_bytes()),
            (None, Some(encoded)) => Some(BASE64.decode(encoded)?),
            (None, None) => None,
        };
        let headers = self.headers.into_iter().map(|(key, value)| Header {
            key,
            value: value.into_bytes(),
        });
        Ok(StoredRecord {
            partition: self.partition,
            offset: self.offset,
            timestamp_ms: parse_timestamp(&self.timestamp).map_err(anyhow::Error::msg)?,
            key,
            headers: headers.collect(),
            value,
        })
    }
}

/// Reads one partition from a server, as [`PartitionReader`] reads the log.
struct RemoteReader {
    remote: Remote,
    at: Cursor,
}

impl RemoteReader {
    /// Reads until a read comes back empty, then (following) long-polls for more.
    async fn run(mut self, sender: &BatchSender) -> anyhow::Result<()> {
        let wait = if self.at.follow {
            LONG_POLL
        } else {
            Duration::ZERO
        };
        loop {
            let page = self.read(wait).await?;
            if page.records.is_empty() {
                if !self.at.follow {
                    return Ok(());
                }
                continue;
            }
            self.at.next = page.next_offset;
            let records = page.records.into_iter().map(RecordWire::into_stored);
            let records = records.collect::<anyhow::Result<Vec<_>>>()?;
            if sender.send(Ok(records)).await.is_err() {
                return Ok(()); // Nobody is printing any more.
            }
        }
    }

    /// The records from `next` on; skips ahead when retention deleted the ones at `next`
    /// (416), as the local reader does.
    async fn read(&mut self, wait: Duration) -> anyhow::Result<PageWire> {
        match self.fetch(wait).await {
            Err(refused) if refused.status() == Some(416) => {
                let topic = describe_remote(&self.remote, &self.at.topic).await?;
                let ours = topic
                    .partitions
                    .iter()
                    .find(|p| p.partition == self.at.partition);
                match ours {
                    Some(p) if self.at.next < p.low => {
                        self.at.next = p.low;
                        Ok(self.fetch(wait).await?)
                    }
                    _ => Err(refused.into()),
                }
            }
            other => Ok(other?),
        }
    }

    async fn fetch(&self, wait: Duration) -> Result<PageWire, RemoteError> {
        let path = format!(
            "/api/topics/{}/partitions/{}/records?offset={}&limit={REMOTE_READ_LIMIT}&waitMs={}",
            self.at.topic,
            self.at.partition,
            self.at.next,
            wait.as_millis()
        );
        self.remote.get_waiting(&path, wait).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{LogConfig, Record, TopicConfig};

    #[tokio::test]
    async fn following_tail_receives_records_appended_after_it_started() {
        // Proves the follow machinery behind `tail --follow` wakes on new records of every
        // partition (in-process: a CLI process holds the directory exclusively, so no other
        // process can append).
        let temp = tempfile::tempdir().unwrap();
        let log = Log::open(LogConfig::new(temp.path())).expect("open the log in the test");
        log.create_topic("t", TopicConfig::with_partitions(2))
            .await
            .unwrap();
        let starts = start_offsets(&log, "t", None, false).unwrap();
        let mut tail = Tail::start(&log, "t", starts, true);
        let waiting = tokio::time::timeout(Duration::from_millis(100), tail.next_batch()).await;
        assert!(waiting.is_err(), "nothing to print yet");
        log.append_to("t", 1, vec![Record::new("late")])
            .await
            .unwrap();
        let batch = tokio::time::timeout(Duration::from_secs(10), tail.next_batch())
            .await
            .expect("woken by the append")
            .expect("readers still running")
            .unwrap();
        assert_eq!((batch[0].partition, batch[0].offset), (1, 0));
        assert_eq!(batch[0].value, b"late");
    }
}
