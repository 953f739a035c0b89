//! The consumers that join the log to the store and to notifications: the write-behind store
//! writer, the relay of its events to `messages.sent`, the `notify` group and the sink
//! consumers. Each is a task holding a shutdown signal; this module knows
//! nothing of HTTP.
//!
//! The path: the edge validates a write against the store's in-memory view and appends a
//! [`ChatCommand`] to the `messages` topic ([`submit`]; key = conversation id, so one
//! conversation lives in one partition). One worker per partition (consumer group `store`)
//! wakes on the partition's high watermark — no timers, no polling — takes everything ready up
//! to `max_batch` records and half a session's queue (one at low load, large batches under
//! load) and applies it with
//! [`Store::apply_batch`]: plain writes in an order that a replay after a crash completes
//! exactly once, making the same events again. Then it publishes its progress
//! ([`Pipeline::wait_applied`]), relays the batch's events to the same partition of
//! `messages.sent` ([`relay`]), and only then commits the group's offset.
//!
//! Shutdown: on cancel, each worker applies everything its partition holds up to the high
//! watermark of that moment, relays it, and exits, so history is complete at restart.
//!
//! Live delivery needs no consumer of its own: each writer hands its applied batch's changes
//! (messages stored, edited, deleted; read marks) to the hub from memory ([`live`]) before it
//! relays them. Downstream of `messages.sent`, the durable event stream: [`notify`] (consumer
//! group `notify`, which appends `message.new` for offline recipients) and [`sinks`] (one
//! consumer group per notification sink on `message.new`, with the dead-letter topic
//! `message.new.dlq`). Cancelled after the store writers, `notify` handles every event up to
//! the high watermark before it exits.

mod follow;
mod live;
pub(crate) mod notify;
mod relay;
pub(crate) mod replay;
pub(crate) mod sinks;
mod supervise;
#[cfg(test)]
mod tests;
mod writer;

use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;
use crate::log::{Appended, Log, LogError, ReadLimits, Record, TopicConfig, IDEMPOTENCY_HEADER};
use crate::store::{Conversation, Outcome, SendMessage, Store, StoreError};

pub(crate) use supervise::{
    BoxedRun, LeasedWork, Placement, Supervision, WorkLeases, WorkerHealth,
};

pub(crate) use crate::store::ChatCommand;

/// The topic of chat commands (key = conversation id).
pub(crate) const MESSAGES_TOPIC: &str = "messages";
/// The topic of message events (key = conversation id, same partition as the source record).
pub(crate) const EVENTS_TOPIC: &str = "messages.sent";
/// The consumer group of the store writer.
pub(crate) const STORE_GROUP: &str = "store";
/// Whether `group` is one the server's own workers consume with (the store writer, `notify`
/// and the sinks): a client that joined or committed it would take records from a worker or
/// move its position under it.
pub(crate) fn is_internal_group(group: &str) -> bool {
    matches!(group, STORE_GROUP | notify::NOTIFY_GROUP)
        || group.starts_with(sinks::SINK_GROUP_PREFIX)
}

/// Header of every event: the offset (decimal) of its source record in `messages`.
pub(crate) const SOURCE_OFFSET_HEADER: &str = "tidings-source-offset";

/// Why the pipeline failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The log refused a read or an append.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The store refused a batch.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `messages.sent` exists with another partition count than `messages`, so events could
    /// not follow their conversation's partition.
    #[error("topic {EVENTS_TOPIC} has {events} partitions but {MESSAGES_TOPIC} has {messages}")]
    PartitionMismatch {
        /// Partitions of `messages`.
        messages: u32,
        /// Partitions of `messages.sent`.
        events: u32,
    },
    /// A worker's blocking task panicked.
    #[error("a store writer task failed: {0}")]
    Worker(String),
    /// A conversation command is durable in the log but the store did not apply it within the
    /// wait (it will: its outcome is then visible in the conversation).
    #[error("the change is durable but the store has not applied it yet; read the conversation again shortly")]
    NotApplied,
}

/// Result of a pipeline operation.
pub(crate) type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// How the pipeline runs.
#[derive(Debug, Clone)]
pub(crate) struct PipelineConfig {
    /// Partitions of `messages` and `messages.sent` when they are created (existing topics keep
    /// theirs).
    pub partitions: u32,
    /// Most records one store batch (one transaction) takes.
    pub max_batch: usize,
    /// Relay events and commit after each batch. Only tests turn this off, to simulate a crash
    /// after a batch's writes, before its relay and its commit.
    #[doc(hidden)]
    pub relay: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            partitions: 4,
            max_batch: 1000,
            relay: true,
        }
    }
}

/// Most records one writer step applies: `max_batch`, and at most half a session's outbound
/// queue. A step's changes reach the sessions at once, so a larger step could overflow the queue
/// of a session that keeps reading whenever the writer falls behind (a 100-message burst into a
/// 64-frame queue); 4008 is meant for sessions that stop reading, not for the writer's bursts.
fn step_limit(config: &PipelineConfig, hub: &Hub) -> usize {
    config.max_batch.min(hub.config().queue_frames / 2).max(1)
}

/// The running store writers: their progress, lag and failure.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    log: Log,
    applied: Vec<watch::Receiver<u64>>,
    failure: Arc<Mutex<Option<String>>>,
    outcomes: Outcomes,
    /// The store writers alone (they also run on the server's tracker), so that the consumers
    /// of `messages.sent` can wait until the last events are relayed ([`Pipeline::stopped`]).
    writers: TaskTracker,
}

/// Creates `messages` and `messages.sent` if missing and starts one store writer per
/// partition on `tracker`, delivering what they apply to `hub`'s sessions; they stop when
/// `shutdown` is cancelled (after catching up, see the module doc).
pub(crate) async fn start(
    log: Log,
    store: Store,
    hub: Hub,
    config: PipelineConfig,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<Pipeline> {
    let partitions = ensure_topics(&log, config.partitions).await?;
    let failure = Arc::new(Mutex::new(None));
    let outcomes = Outcomes::default();
    let writers = TaskTracker::new();
    let mut applied = Vec::with_capacity(partitions as usize);
    for partition in 0..partitions {
        let (low, high) = log.watermarks(MESSAGES_TOPIC, partition)?;
        let next = store.applied_offset(partition).unwrap_or(low);
        let (progress, receiver) = watch::channel(next);
        applied.push(receiver);
        let worker = writer::Worker {
            log: log.clone(),
            store: store.clone(),
            hub: hub.clone(),
            outcomes: outcomes.clone(),
            partition,
            max_batch: step_limit(&config, &hub),
            relay: config.relay,
            progress,
            next,
            // A node's replica may start behind what its store applied before a restart.
            new_from: if log.is_shared() { u64::MAX } else { high },
            relays: None,
        };
        let failure = failure.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(writers.track_future(async move {
            if let Err(e) = worker.run(shutdown).await {
                tracing::error!(partition, error = %e, "store writer stopped");
                let mut slot = failure.lock();
                slot.get_or_insert(format!("partition {partition}: {e}"));
            }
        }));
    }
    writers.close();
    let done = writers.clone();
    let mirror = store.mirror_position(log.clone(), STORE_GROUP, MESSAGES_TOPIC, async move {
        done.wait().await
    });
    tracker.spawn(mirror);
    Ok(Pipeline {
        log,
        applied,
        failure,
        outcomes,
        writers,
    })
}

/// Creates the two topics with the same partition count if missing; returns the count.
async fn ensure_topics(log: &Log, partitions: u32) -> Result<u32> {
    let messages = ensure_topic(log, MESSAGES_TOPIC, partitions).await?;
    let events = ensure_topic(log, EVENTS_TOPIC, messages).await?;
    if events != messages {
        return Err(PipelineError::PartitionMismatch { messages, events });
    }
    Ok(messages)
}

pub(crate) async fn ensure_topic(log: &Log, topic: &str, partitions: u32) -> Result<u32> {
    match log.describe_topic(topic) {
        Ok(info) => return Ok(info.partitions.len() as u32),
        Err(LogError::UnknownTopic(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match log
        .create_topic(topic, TopicConfig::with_partitions(partitions))
        .await
    {
        Ok(info) => Ok(info.partitions.len() as u32),
        Err(LogError::TopicExists(_)) => Ok(log.describe_topic(topic)?.partitions.len() as u32),
        Err(e) => Err(e.into()),
    }
}

/// The `Nats-Msg-Id` of a send with a client message id: a digest of (sender, conversation,
/// clientMessageId), so any characters they hold make a valid header value.
fn send_idempotency_key(send: &SendMessage) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for part in [
        send.sender_id.as_str(),
        send.conversation_id.as_str(),
        send.client_message_id.as_deref().unwrap_or(""),
    ] {
        digest.update(part.len().to_be_bytes());
        digest.update(part.as_bytes());
    }
    let hex: String = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("send/{hex}")
}

/// Appends a command to `messages` (key = its conversation id) and returns where it landed,
/// once durable. The edge calls this after validating the command against the store's view.
pub(crate) async fn submit(log: &Log, command: &ChatCommand) -> Result<Appended> {
    let value = serde_json::to_vec(command).expect("a command of strings always serializes");
    let record = Record::keyed(command.conversation_id().as_bytes(), value);
    let mut landed = log.append(MESSAGES_TOPIC, vec![record]).await?;
    landed
        .pop()
        .ok_or(PipelineError::Log(LogError::EmptyAppend))
}

impl Pipeline {
    /// Number of partitions (of both topics).
    pub(crate) fn partitions(&self) -> u32 {
        self.applied.len() as u32
    }

    /// [`submit`] through this pipeline's log.
    pub(crate) async fn submit(&self, command: &ChatCommand) -> Result<Appended> {
        submit(&self.log, command).await
    }

    /// Submits a send that carries a client message id. On a shared log (`--cluster`) the
    /// record carries an idempotency key made of (sender, conversation, clientMessageId), so a
    /// retry through another node, before any store applied the first copy, is stored once
    /// (within the cluster's duplicate window); the send returned is the one stored at the
    /// offset returned (the first copy: its id and time are the ones the message keeps).
    pub(crate) async fn submit_send(&self, send: &SendMessage) -> Result<(Appended, SendMessage)> {
        let command = ChatCommand::Send(send.clone());
        if !self.log.is_shared() {
            return Ok((self.submit(&command).await?, send.clone()));
        }
        let value = serde_json::to_vec(&command).expect("a command of strings always serializes");
        let record = Record::keyed(send.conversation_id.as_bytes(), value)
            .with_header(IDEMPOTENCY_HEADER, send_idempotency_key(send));
        let appended = self
            .log
            .append(MESSAGES_TOPIC, vec![record])
            .await?
            .pop()
            .ok_or(PipelineError::Log(LogError::EmptyAppend))?;
        Ok((
            appended,
            self.stored_send(appended).unwrap_or_else(|| send.clone()),
        ))
    }

    /// The send stored at `appended` (the node's replica holds it once the append returned).
    fn stored_send(&self, appended: Appended) -> Option<SendMessage> {
        let records = self
            .log
            .read(
                MESSAGES_TOPIC,
                appended.partition,
                appended.offset,
                ReadLimits::records(1),
            )
            .ok()?;
        let record = records.into_iter().find(|r| r.offset == appended.offset)?;
        match serde_json::from_slice(&record.value).ok()? {
            ChatCommand::Send(stored) => Some(stored),
            _ => None,
        }
    }

    /// The store's progress on a partition: every record below the value is applied (stored
    /// and visible in the store's queries).
    pub(crate) fn applied(&self, partition: u32) -> Option<watch::Receiver<u64>> {
        self.applied.get(partition as usize).cloned()
    }

    /// Whether the record at `offset` of `partition` is applied.
    pub(crate) fn has_applied(&self, partition: u32, offset: u64) -> bool {
        self.applied
            .get(partition as usize)
            .is_some_and(|progress| *progress.borrow() > offset)
    }

    /// Waits until the record at `appended` is applied or `timeout` passes; true if it was.
    pub(crate) async fn wait_applied(&self, appended: Appended, timeout: Duration) -> bool {
        self.wait_applied_at(appended.partition, appended.offset, timeout)
            .await
    }

    /// Waits until the record at `offset` of `partition` is applied or `timeout` passes.
    async fn wait_applied_at(&self, partition: u32, offset: u64, timeout: Duration) -> bool {
        let Some(mut progress) = self.applied(partition) else {
            return false;
        };
        let reached = tokio::time::timeout(timeout, progress.wait_for(|next| *next > offset)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// Waits (at most `timeout`) until the store applied every command of `conversation`
    /// appended before now; true if it did. A read that misses something the caller was told is
    /// accepted (a message id from a 202) waits for this before it answers 404: one
    /// conversation's commands are all in its partition, in order.
    pub(crate) async fn caught_up(&self, conversation: &str, timeout: Duration) -> bool {
        let partition = crate::log::partition_for_key(conversation.as_bytes(), self.partitions());
        let Ok((_, high)) = self.log.watermarks(MESSAGES_TOPIC, partition) else {
            return false;
        };
        match high.checked_sub(1) {
            Some(last) => self.wait_applied_at(partition, last, timeout).await,
            None => true,
        }
    }

    /// Appends a conversation command and waits (at most `wait`) until the store applied it:
    /// the conversation as it is then, or the store's refusal (`PipelineError::Store`: the
    /// command changed nothing). `NotApplied` after the wait: durable, applied later.
    pub(crate) async fn change_conversation(
        &self,
        command: &ChatCommand,
        wait: Duration,
    ) -> Result<Conversation> {
        let appended = self.submit(command).await?;
        if !self.wait_applied(appended, wait).await {
            return Err(PipelineError::NotApplied);
        }
        let outcome = self.outcomes.take(appended.partition, appended.offset);
        outcome
            .ok_or(PipelineError::NotApplied)?
            .map_err(PipelineError::from)
    }

    /// Records appended to `messages` and not yet applied, summed over partitions (for
    /// backpressure and metrics).
    ///
    /// From memory (the writers' published progress and the partitions' high watermarks), not
    /// from the committed offsets on disk: every send asks it.
    pub(crate) fn lag(&self) -> Result<u64> {
        let mut lag = 0;
        for (partition, applied) in self.applied.iter().enumerate() {
            let (_, high) = self.log.watermarks(MESSAGES_TOPIC, partition as u32)?;
            lag += high.saturating_sub(*applied.borrow());
        }
        Ok(lag)
    }

    /// Waits until every store writer has exited (after its shutdown signal, having applied and
    /// relayed everything accepted): from then on `messages.sent` receives nothing more.
    pub(crate) async fn stopped(&self) {
        self.writers.close();
        self.writers.wait().await;
    }

    /// Why a store writer stopped, if one did (the server is then not ready).
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.lock().clone()
    }
}

/// Most outcomes kept for edges that have not taken theirs (a waiter that gave up, commands
/// replayed at start): the oldest go first.
const MAX_OUTCOMES: usize = 4096;

/// The outcomes of conversation commands by (partition, source offset), from the writer that
/// applied each until the edge that appended it takes it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcomes(Arc<Mutex<BTreeMap<(u32, u64), Outcome>>>);

impl Outcomes {
    /// The writer's, before it publishes its progress (so a waiter woken by the progress finds
    /// its outcome).
    pub(crate) fn record(&self, partition: u32, outcomes: Vec<(u64, Outcome)>) {
        if outcomes.is_empty() {
            return;
        }
        let mut kept = self.lock();
        kept.extend(
            outcomes
                .into_iter()
                .map(|(o, outcome)| ((partition, o), outcome)),
        );
        while kept.len() > MAX_OUTCOMES {
            kept.pop_first();
        }
    }

    fn take(&self, partition: u32, offset: u64) -> Option<Outcome> {
        self.lock().remove(&(partition, offset))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(u32, u64), Outcome>> {
        // Entries are whole values: a panic elsewhere leaves the map usable.
        self.0.lock()
    }
}
