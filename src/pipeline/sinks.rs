//! The sink consumers: each configured notification sink is its own consumer group on
//! `message.new` (`notify.sink.NAME`), with one task per partition.
//!
//! A task delivers its partition's records one at a time, in order, through the sink (at most
//! the sink's `concurrency` deliveries in flight over all partitions), and commits the offset,
//! synced to disk, after each record is delivered or dead-lettered. A record the sink gives up on is appended to
//! `message.new.dlq` (same key and value, plus headers naming the error, the attempts, the sink
//! and the source topic, partition and offset) before its offset is committed. So a restart
//! resumes after the last finished record: delivery is at least once, and only the record in
//! flight at a crash can be delivered twice.
//!
//! A sink whose group has no committed offset yet starts where its `startFrom` says (the high
//! watermark by default, so a sink added to a running install does not push every old
//! notification); that offset is committed before its first read. A replayed dead letter
//! carrying [`REPLAY_SINK_HEADER`] is delivered by the sink it names only; the others commit
//! past it.
//!
//! A task that fails is started again from the committed offset ([`super::supervise`]);
//! `/readyz` answers 503 meanwhile.
//!
//! Shutdown: a task stops between records; a delivery waiting to retry stops at once and is
//! neither committed nor dead-lettered (it is tried again after restart). The sinks run on
//! their own tasks, so a slow or dead endpoint holds back notifications, never chat.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::follow::{follow, read_ready, PartitionConsumer};
use super::notify::NOTIFICATIONS_TOPIC;
use super::supervise::{commit_forward, spawn_supervised};
use super::{ensure_topic, PipelineError, Result, Supervision};
use crate::log::{Log, ReadLimits, Record, StoredRecord};
use crate::metrics::Metrics;
use crate::notify::{Outcome, Sink, SinkConfig, StartFrom};

/// The dead-letter topic of the notification sinks.
pub(crate) const DLQ_TOPIC: &str = "message.new.dlq";
/// Dead-letter header: the last error.
pub(crate) const DLQ_ERROR_HEADER: &str = "tidings-dlq-error";
/// Dead-letter header: attempts made (decimal).
pub(crate) const DLQ_ATTEMPTS_HEADER: &str = "tidings-dlq-attempts";
/// Dead-letter header: the sink that gave up.
pub(crate) const DLQ_SINK_HEADER: &str = "tidings-dlq-sink";
/// Dead-letter header: the topic the record came from (where a replay puts it back).
pub(crate) const DLQ_TOPIC_HEADER: &str = "tidings-dlq-topic";
/// Dead-letter header: its partition there (decimal).
pub(crate) const DLQ_PARTITION_HEADER: &str = "tidings-dlq-partition";
/// Dead-letter header: its offset there (decimal).
pub(crate) const DLQ_OFFSET_HEADER: &str = "tidings-dlq-offset";
/// Header of a replayed dead letter: the one sink that delivers it (the one that failed it, or
/// the one `tidings dlq replay --sink` names); every other sink passes over it.
pub(crate) const REPLAY_SINK_HEADER: &str = "tidings-replay-sink";
/// Records one step reads.
const RECORDS_PER_STEP: usize = 100;

/// Prefix of the sinks' consumer groups.
pub(crate) const SINK_GROUP_PREFIX: &str = "notify.sink.";

/// The consumer group of the sink called `name`.
pub(crate) fn sink_group(name: &str) -> String {
    format!("{SINK_GROUP_PREFIX}{name}")
}

/// Creates `message.new` and `message.new.dlq` if missing (with `partitions` partitions) and
/// starts the consumers of every sink on `tracker`; they stop when `shutdown` is cancelled.
pub(crate) async fn start(
    log: Log,
    sinks: &[SinkConfig],
    partitions: u32,
    metrics: Metrics,
    supervision: &Supervision,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<()> {
    let partitions = ensure_topic(&log, NOTIFICATIONS_TOPIC, partitions).await?;
    ensure_topic(&log, DLQ_TOPIC, partitions).await?;
    for config in sinks {
        let sink = Arc::new(Sink::new(config).map_err(|e| PipelineError::Worker(e.to_string()))?);
        let permits = Arc::new(Semaphore::new(sink.concurrency()));
        let group = sink_group(sink.name());
        commit_start_offsets(&log, &group, config.start_from, partitions).await?;
        for partition in 0..partitions {
            let context = SinkContext {
                log: log.clone(),
                sink: sink.clone(),
                permits: permits.clone(),
                group: group.clone(),
                metrics: metrics.clone(),
                shutdown: shutdown.clone(),
            };
            let run = move || {
                let worker = context.worker(partition);
                async move {
                    let mut worker = worker?;
                    let (log, shutdown) = (worker.log.clone(), worker.shutdown.clone());
                    follow(&log, NOTIFICATIONS_TOPIC, partition, &mut worker, &shutdown).await
                }
            };
            let name = format!("{group}/{partition}");
            spawn_supervised(
                tracker,
                supervision.health.clone(),
                name,
                shutdown.clone(),
                &supervision.placement,
                run,
            );
        }
    }
    Ok(())
}

/// Gives a sink's group, on every partition where it has no committed offset yet (the sink's
/// first start), the offset `start_from` says, committed and synced at once: the choice is made
/// once, and a restart before the first delivery does not make it again against a later log.
/// The sinks start before the `notify` worker, so no notification appended by this start is
/// counted as an old one.
async fn commit_start_offsets(
    log: &Log,
    group: &str,
    start_from: StartFrom,
    partitions: u32,
) -> Result<()> {
    let mut committed_any = false;
    for partition in 0..partitions {
        if log
            .committed_offset(group, NOTIFICATIONS_TOPIC, partition)?
            .is_some()
        {
            continue;
        }
        let (low, high) = log.watermarks(NOTIFICATIONS_TOPIC, partition)?;
        let start = match start_from {
            StartFrom::Latest => high,
            StartFrom::Earliest => low,
        };
        log.commit_offset(group, NOTIFICATIONS_TOPIC, partition, start)?;
        committed_any = true;
    }
    if committed_any {
        log.sync().await?;
    }
    Ok(())
}

/// Whether a record is for `sink`: any record but a replayed dead letter addressed to another
/// sink ([`REPLAY_SINK_HEADER`]).
fn addressed_to(record: &StoredRecord, sink: &str) -> bool {
    record
        .headers
        .iter()
        .find(|h| h.key == REPLAY_SINK_HEADER)
        .is_none_or(|h| h.value == sink.as_bytes())
}

/// What every consumer of one sink is made of but its partition.
#[derive(Clone)]
struct SinkContext {
    log: Log,
    sink: Arc<Sink>,
    permits: Arc<Semaphore>,
    group: String,
    metrics: Metrics,
    shutdown: CancellationToken,
}

impl SinkContext {
    /// The sink's consumer of `partition`, from the group's committed offset.
    fn worker(&self, partition: u32) -> Result<SinkWorker> {
        let (low, _) = self.log.watermarks(NOTIFICATIONS_TOPIC, partition)?;
        let committed = self
            .log
            .committed_offset(&self.group, NOTIFICATIONS_TOPIC, partition)?;
        Ok(SinkWorker {
            log: self.log.clone(),
            sink: self.sink.clone(),
            permits: self.permits.clone(),
            group: self.group.clone(),
            partition,
            next: committed.unwrap_or(low).max(low),
            metrics: self.metrics.clone(),
            shutdown: self.shutdown.clone(),
        })
    }
}

/// One sink's consumer of one `message.new` partition.
struct SinkWorker {
    log: Log,
    sink: Arc<Sink>,
    permits: Arc<Semaphore>,
    group: String,
    partition: u32,
    next: u64,
    metrics: Metrics,
    shutdown: CancellationToken,
}

impl PartitionConsumer for SinkWorker {
    fn next_offset(&self) -> u64 {
        self.next
    }

    /// Delivers the records from `self.next` on, committing after each; stops early on
    /// shutdown (the rest waits for the next start).
    async fn step(&mut self, goal: u64) -> Result<()> {
        if self.shutdown.is_cancelled() {
            // Stop between records instead of catching up: what is left is delivered after
            // the restart, from the committed offset.
            self.next = goal;
            return Ok(());
        }
        let limits = ReadLimits::records(RECORDS_PER_STEP);
        let at = (NOTIFICATIONS_TOPIC, self.partition);
        let records = read_ready(&self.log, at, &mut self.next, goal, limits, &self.group)?;
        for record in records {
            if !self.handle(&record).await? {
                self.next = goal;
                return Ok(());
            }
            let at = (NOTIFICATIONS_TOPIC, self.partition);
            self.next = commit_forward(&self.log, &self.group, at, record.offset + 1)?;
            // A commit is a plain write; syncing it now is what keeps a crash from repeating
            // more than the record in flight. One sync per delivery costs far less than the
            // delivery itself.
            self.log.sync().await?;
        }
        Ok(())
    }
}

impl SinkWorker {
    /// Delivers one record or dead-letters it; false if shutdown interrupted it.
    async fn handle(&self, record: &StoredRecord) -> Result<bool> {
        if !addressed_to(record, self.sink.name()) {
            tracing::debug!(sink = %self.sink.name(), partition = self.partition, offset = record.offset, "replayed notification for another sink passed over");
            return Ok(true);
        }
        let outcome = {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|e| PipelineError::Worker(e.to_string()))?;
            let key = record.key.as_deref().unwrap_or_default();
            self.sink.deliver(key, &record.value, &self.shutdown).await
        };
        match outcome {
            Outcome::Delivered { attempts } => {
                self.metrics
                    .count_notification(self.sink.name(), "delivered");
                tracing::debug!(sink = %self.sink.name(), partition = self.partition, offset = record.offset, attempts, "notification delivered");
                Ok(true)
            }
            Outcome::Dead { error, attempts } => {
                tracing::warn!(sink = %self.sink.name(), partition = self.partition, offset = record.offset, attempts, %error, "notification dead-lettered");
                let dead = dead_letter(record, self.sink.name(), &error, attempts);
                self.log.append(DLQ_TOPIC, vec![dead]).await?;
                self.metrics.count_notification(self.sink.name(), "dead");
                Ok(true)
            }
            Outcome::Interrupted => Ok(false),
        }
    }
}

/// The dead letter of `record`: its key and value, and headers saying why and where from.
fn dead_letter(record: &StoredRecord, sink: &str, error: &str, attempts: u32) -> Record {
    Record {
        key: record.key.clone(),
        headers: Vec::new(),
        value: record.value.clone(),
    }
    .with_header(DLQ_ERROR_HEADER, error)
    .with_header(DLQ_ATTEMPTS_HEADER, attempts.to_string())
    .with_header(DLQ_SINK_HEADER, sink)
    .with_header(DLQ_TOPIC_HEADER, NOTIFICATIONS_TOPIC)
    .with_header(DLQ_PARTITION_HEADER, record.partition.to_string())
    .with_header(DLQ_OFFSET_HEADER, record.offset.to_string())
}
