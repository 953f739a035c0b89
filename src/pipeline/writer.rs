//! One store writer: the consumer of one `messages` partition for group `store`.
//!
//! Its loop body is [`Worker::step`]: read what is ready (at most `max_batch` records), apply it
//! with [`Store::apply_batch`] on a blocking thread (plain writes), publish the progress, hand
//! the batch's changes to the hub ([`live`](super::live)), and queue the batch's events for the
//! partition's [`Relayer`], which appends them to `messages.sent`, then moves the store's
//! position and forgets the batch's outbox entries, batch after batch in order. So the next
//! batch is applied and delivered while the previous one's events are being made durable,
//! instead of after. It sleeps on the partition's high-watermark channel between steps, never
//! on a timer.

use std::ops::Range;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::follow::{follow, read_ready, PartitionConsumer};
use super::{live, relay, Outcomes, PipelineError, Result, MESSAGES_TOPIC, STORE_GROUP};
use crate::hub::Hub;
use crate::log::{Log, ReadLimits, StoredRecord};
use crate::store::{AppliedBatch, BatchPosition, ChatCommand, OutboxEntry, Store};

/// Upper bound on the bytes one batch reads.
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;
/// Applied batches whose events may wait for the relay: past this, the writer waits for it.
const RELAY_QUEUE: usize = 4;

pub(super) struct Worker {
    pub log: Log,
    pub store: Store,
    /// Where the batch's changes go live.
    pub hub: Hub,
    /// Where the outcomes of conversation commands wait for their edge.
    pub outcomes: Outcomes,
    pub partition: u32,
    pub max_batch: usize,
    pub relay: bool,
    /// "Applied up to": the next offset to apply.
    pub progress: watch::Sender<u64>,
    pub next: u64,
    /// The partition's high watermark when this writer started: records from there on were
    /// never applied before (see [`Store::apply_batch`]).
    pub new_from: u64,
    /// Where applied batches go to be relayed: set by [`Worker::run`] (stays `None` when
    /// `relay` is off).
    pub relays: Option<mpsc::Sender<RelayJob>>,
}

/// An applied batch's events, on their way to `messages.sent`; the batch's commit follows.
pub(super) struct RelayJob {
    events: Vec<OutboxEntry>,
    batch: Range<u64>,
}

impl Worker {
    /// Consumes the partition until `shutdown` (then catches up), while the partition's relayer
    /// runs alongside in the same task; returns once both are done, with the first failure.
    pub(super) async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        let relayer = if self.relay {
            let relayed = relay::recover(&self.log, &self.store, self.partition)?;
            let (jobs, queue) = mpsc::channel(RELAY_QUEUE);
            self.relays = Some(jobs);
            Some(Relayer {
                log: self.log.clone(),
                store: self.store.clone(),
                partition: self.partition,
                relayed,
                queue,
            })
        } else {
            None
        };
        let relaying = async {
            match relayer {
                Some(relayer) => relayer.run().await,
                None => Ok(()),
            }
        };
        let log = self.log.clone();
        let consuming = async {
            let consumed = follow(&log, MESSAGES_TOPIC, self.partition, &mut self, &shutdown).await;
            self.relays = None; // the relayer finishes what is queued, then stops
            consumed
        };
        let (consumed, relayed) = tokio::join!(consuming, relaying);
        consumed.and(relayed)
    }
}

impl PartitionConsumer for Worker {
    fn next_offset(&self) -> u64 {
        self.next
    }

    /// Applies the records from `self.next` on (at most `max_batch`, not past `goal`).
    async fn step(&mut self, goal: u64) -> Result<()> {
        let limits = ReadLimits {
            max_records: self.max_batch,
            max_bytes: MAX_BATCH_BYTES,
        };
        let at = (MESSAGES_TOPIC, self.partition);
        let records = read_ready(&self.log, at, &mut self.next, goal, limits, STORE_GROUP)?;
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(());
        };
        let batch = first.offset..last.offset + 1;
        let commands = decode(self.partition, records);
        let mut applied = self.apply(commands).await?;
        self.next = batch.end;
        let outcomes = std::mem::take(&mut applied.outcomes);
        self.outcomes.record(self.partition, outcomes);
        self.progress.send_replace(self.next);
        live::deliver(&self.store, &self.hub, std::mem::take(&mut applied.changes));
        tracing::debug!(
            partition = self.partition,
            next = self.next,
            stored = applied.stored,
            skipped = applied.skipped,
            "store batch applied"
        );
        let Some(relays) = &self.relays else {
            return Ok(()); // tests: a crash after the writes, before the relay and the commit
        };
        let events = self
            .store
            .batch_events(self.partition, batch.clone(), applied.events)?;
        let job = RelayJob { events, batch };
        // Refused only when the relayer stopped; its own error is the one reported.
        let _ = relays.send(job).await;
        Ok(())
    }
}

/// The relay of one partition: each applied batch's events to `messages.sent`, then the
/// batch's commit (the store's position) and the removal of its outbox entries, in order.
struct Relayer {
    log: Log,
    store: Store,
    partition: u32,
    /// The last source offset whose events are in `messages.sent`.
    relayed: relay::Relayed,
    queue: mpsc::Receiver<RelayJob>,
}

impl Relayer {
    async fn run(mut self) -> Result<()> {
        while let Some(job) = self.queue.recv().await {
            relay::relay(&self.log, self.partition, &job.events, &mut self.relayed).await?;
            self.store.commit_batch(&self.position(job.batch.end))?;
            self.store
                .remove_events_between(self.partition, job.batch)?;
        }
        Ok(())
    }

    /// This partition's place in `messages` for the group, up to `next_offset`.
    fn position(&self, next_offset: u64) -> BatchPosition<'static> {
        BatchPosition {
            group: STORE_GROUP,
            topic: MESSAGES_TOPIC,
            partition: self.partition,
            next_offset,
        }
    }
}

impl Worker {
    async fn apply(&self, commands: Vec<(u64, ChatCommand)>) -> Result<AppliedBatch> {
        let store = self.store.clone();
        let (partition, new_from) = (self.partition, self.new_from);
        tokio::task::spawn_blocking(move || store.apply_batch(partition, &commands, new_from))
            .await
            .map_err(|e| PipelineError::Worker(e.to_string()))?
            .map_err(PipelineError::from)
    }
}

/// Decodes records into commands; an undecodable record is skipped with a warning (its offset
/// is still committed: retrying cannot make it decodable).
fn decode(partition: u32, records: Vec<StoredRecord>) -> Vec<(u64, ChatCommand)> {
    records
        .into_iter()
        .filter_map(
            |record| match serde_json::from_slice::<ChatCommand>(&record.value) {
                Ok(command) => Some((record.offset, command)),
                Err(e) => {
                    tracing::warn!(partition, offset = record.offset, error = %e, "undecodable chat command; skipped");
                    None
                }
            },
        )
        .collect()
}
