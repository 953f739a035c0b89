//! Consumer group `notify`: turns `MessageSent` events into `message.new` notifications for the
//! participants who are not connected.
//!
//! One task per partition of `messages.sent` reads the events in order. For each `MessageSent`
//! (edits and deletes notify nobody) it looks up the conversation's participants at that moment
//! ([`Store::conversation`]) and appends, for every participant other than the sender for whom
//! [`LiveSessions::has_live_session`] says no, one [`Notification`] to `message.new` (key = the
//! recipient id). It commits the group's offset only after those records are durable.
//!
//! Exactly once, across crashes: every notification carries the header `tidings-source`
//! (`PARTITION:OFFSET` of its event in `messages.sent`). A crash between the append and the
//! commit replays the uncommitted events; before starting, [`recover_delivered`] reads the tail
//! of each `message.new` partition back to the committed offsets and the workers skip every
//! (event, recipient) pair found there. Limit: the look-back stops after
//! [`RECOVERY_LOOKBACK`] records per partition (far more than one batch produces), so only a
//! replay older than that could repeat a notification; none is ever lost.
//!
//! A notification carries the message's text cut to `notify.previewBytes` (the message itself
//! is read by its id), and the records of one event are made and appended in bounded chunks,
//! so a message to a large conversation costs bounded memory. A worker that fails (or whose
//! commit finds the offset moved) goes on from the committed offset ([`super::supervise`]).
//!
//! Who is online is not this module's business: it asks a [`LiveSessions`]. This module knows
//! nothing of HTTP nor of how notifications are delivered (`notify/` and [`super::sinks`]).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::follow::{follow, read_ready, PartitionConsumer};
use super::relay::source_offset;
use super::supervise::{commit_forward, spawn_supervised};
use super::{ensure_topic, PipelineError, Result, Supervision, EVENTS_TOPIC};

/// Longest wait, on a cluster, for this node's store to apply what an event was made from.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How often that wait looks at the store's position.
const STORE_POLL: std::time::Duration = std::time::Duration::from_millis(5);
use crate::log::{Log, ReadLimits, Record, StoredRecord};
use crate::store::{EventType, Store};

/// The topic of notifications for offline recipients (key = recipient id).
pub(crate) const NOTIFICATIONS_TOPIC: &str = "message.new";
/// The consumer group that reads `messages.sent` to produce `message.new`.
pub(crate) const NOTIFY_GROUP: &str = "notify";
/// Header of every notification: `PARTITION:OFFSET` of its event in `messages.sent`.
pub(crate) const NOTIFY_SOURCE_HEADER: &str = "tidings-source";
/// How many records at the end of each `message.new` partition recovery reads at most.
pub(crate) const RECOVERY_LOOKBACK: u64 = 10_000;
/// Most events one step reads.
const MAX_EVENTS_PER_STEP: usize = 500;
/// Default most bytes of a message's text in a notification (`notify.previewBytes`).
pub(crate) const DEFAULT_PREVIEW_BYTES: usize = 256;
/// Notifications gathered before they are appended (bounds the memory of one step).
const MAX_RECORDS_PER_APPEND: usize = 1000;

/// Says whether a user has a connection open right now. The server answers it with the
/// WebSocket hub (`Hub::has_live_session`); tests answer it with a set of online users.
pub(crate) trait LiveSessions: Send + Sync + 'static {
    /// True while `user_id` has at least one live session.
    fn has_live_session(&self, user_id: &str) -> bool;
}

/// The value of a `message.new` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Notification {
    /// Who is notified (also the record's key).
    pub recipient_id: String,
    /// Who sent the message.
    pub sender_id: String,
    /// The sender's display name when it was sent.
    pub sender_name: String,
    /// The message text, or its first `notify.previewBytes` bytes (the message itself is read
    /// by `messageId`).
    pub message_content: String,
    /// The conversation.
    pub conversation_id: String,
    /// The message id (UUIDv7).
    pub message_id: String,
    /// The message's seq in its conversation.
    pub seq: u64,
    /// When the message was sent (its `sentAt`, RFC 3339 UTC).
    pub timestamp: String,
}

/// Notifications already in `message.new` for events at or above the committed offset of one
/// `messages.sent` partition: (event offset, recipient id).
type Delivered = HashSet<(u64, String)>;

/// Creates `message.new` if missing and starts one `notify` worker per partition of
/// `messages.sent` on `tracker`. They stop when `shutdown` is cancelled, after handling every
/// event the partition held at that moment (cancel it once the store's relay has drained).
pub(crate) async fn start(
    log: Log,
    store: Store,
    live: Arc<dyn LiveSessions>,
    settings: NotifySettings,
    supervision: &Supervision,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<()> {
    let partitions = log.describe_topic(EVENTS_TOPIC)?.partitions.len() as u32;
    ensure_topic(&log, NOTIFICATIONS_TOPIC, partitions).await?;
    let starts = (0..partitions)
        .map(|partition| start_offset(&log, partition))
        .collect::<Result<Vec<_>>>()?;
    let delivered = recover_delivered(&log, &starts)?;
    for (partition, (next, delivered)) in starts.into_iter().zip(delivered).enumerate() {
        let partition = partition as u32;
        let context = WorkerContext {
            log: log.clone(),
            store: store.clone(),
            live: live.clone(),
            settings,
        };
        // The first run goes on from what was recovered for every partition at once; a run
        // after a failure recovers its own partition again.
        let mut first = Some((next, delivered));
        let stop = shutdown.clone();
        let run = move || {
            let worker = match first.take() {
                Some((next, delivered)) => Ok(context.worker(partition, next, delivered)),
                None => context.recovered_worker(partition),
            };
            let shutdown = stop.clone();
            async move { worker?.run(shutdown).await }
        };
        let name = format!("{NOTIFY_GROUP}/{partition}");
        spawn_supervised(
            tracker,
            supervision.health.clone(),
            name,
            shutdown.clone(),
            &supervision.placement,
            run,
        );
    }
    Ok(())
}

/// Where the `notify` worker of `partition` starts: the committed offset, never below the low
/// watermark.
fn start_offset(log: &Log, partition: u32) -> Result<u64> {
    let (low, _) = log.watermarks(EVENTS_TOPIC, partition)?;
    let committed = log.committed_offset(NOTIFY_GROUP, EVENTS_TOPIC, partition)?;
    Ok(committed.unwrap_or(low).max(low))
}

/// What every `notify` worker is made of but its partition and position.
#[derive(Clone)]
struct WorkerContext {
    log: Log,
    store: Store,
    live: Arc<dyn LiveSessions>,
    settings: NotifySettings,
}

impl WorkerContext {
    fn worker(&self, partition: u32, next: u64, delivered: Delivered) -> Worker {
        Worker {
            log: self.log.clone(),
            store: self.store.clone(),
            live: self.live.clone(),
            settings: self.settings,
            partition,
            next,
            delivered,
        }
    }

    /// The worker of `partition` from its committed offset, with what `message.new` holds for
    /// that partition's uncommitted events.
    fn recovered_worker(&self, partition: u32) -> Result<Worker> {
        let next = start_offset(&self.log, partition)?;
        let partitions = self.log.describe_topic(EVENTS_TOPIC)?.partitions.len();
        // Every other partition counts as fully committed, so recovery looks at this one only.
        let mut committed = vec![u64::MAX; partitions];
        committed[partition as usize] = next;
        let delivered = recover_delivered(&self.log, &committed)?
            .into_iter()
            .nth(partition as usize)
            .unwrap_or_default();
        Ok(self.worker(partition, next, delivered))
    }
}

/// How notifications are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotifySettings {
    /// Most bytes of a message's text a notification carries in `messageContent` (cut at a
    /// character boundary); the message itself is read by its id.
    pub preview_bytes: usize,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            preview_bytes: DEFAULT_PREVIEW_BYTES,
        }
    }
}

/// What `message.new` already holds for the events at or above `committed[p]` of each partition
/// `p` of `messages.sent`, read from the end of every `message.new` partition.
pub(crate) fn recover_delivered(log: &Log, committed: &[u64]) -> Result<Vec<Delivered>> {
    let mut delivered = vec![Delivered::new(); committed.len()];
    let info = log.describe_topic(NOTIFICATIONS_TOPIC)?;
    for partition in info.partitions {
        let mut seen_older = vec![false; committed.len()];
        let floor = partition
            .low
            .max(partition.high.saturating_sub(RECOVERY_LOOKBACK));
        let mut end = partition.high;
        while end > floor && !seen_older.iter().all(|s| *s) {
            let from = end.saturating_sub(256).max(floor);
            let records = read_range(log, partition.partition, from, end)?;
            // Newest first: one source partition's notifications are in its offset order, so
            // the first one below its committed offset means all older ones are too.
            for record in records.iter().rev() {
                let Some((source, offset)) = notify_source(record) else {
                    continue;
                };
                let Some(slot) = seen_older.get_mut(source as usize) else {
                    continue;
                };
                if *slot {
                    continue;
                }
                if offset < committed[source as usize] {
                    *slot = true;
                } else if let Some(key) = record.key.as_deref() {
                    let recipient = String::from_utf8_lossy(key).into_owned();
                    delivered[source as usize].insert((offset, recipient));
                }
            }
            end = from;
        }
    }
    Ok(delivered)
}

/// Every record of a `message.new` partition in `from..end`.
fn read_range(log: &Log, partition: u32, from: u64, end: u64) -> Result<Vec<StoredRecord>> {
    let mut records = Vec::new();
    let mut offset = from;
    while offset < end {
        let wanted = (end - offset) as usize;
        let chunk = log.read(
            NOTIFICATIONS_TOPIC,
            partition,
            offset,
            ReadLimits::records(wanted),
        )?;
        let Some(last) = chunk.last().map(|r| r.offset) else {
            break;
        };
        offset = last + 1;
        records.extend(chunk.into_iter().filter(|r| r.offset < end));
    }
    Ok(records)
}

/// The (partition, offset) of the event a notification came from.
fn notify_source(record: &StoredRecord) -> Option<(u32, u64)> {
    let header = record
        .headers
        .iter()
        .find(|h| h.key == NOTIFY_SOURCE_HEADER)?;
    let text = std::str::from_utf8(&header.value).ok()?;
    let (partition, offset) = text.split_once(':')?;
    Some((partition.parse().ok()?, offset.parse().ok()?))
}

/// The notify consumer of one `messages.sent` partition.
struct Worker {
    log: Log,
    store: Store,
    live: Arc<dyn LiveSessions>,
    settings: NotifySettings,
    partition: u32,
    /// The next event offset to handle (everything below is committed or being committed).
    next: u64,
    /// Notifications a previous run appended without committing them.
    delivered: Delivered,
}

impl Worker {
    /// On a cluster (a shared log) the events may have been relayed by another node's writer
    /// before this node's store applied their commands: waits until it has, so that the
    /// participants looked up are the ones the event was made with. A store that does not get
    /// there within [`STORE_WAIT`] fails the step (the supervisor runs it again).
    async fn wait_for_store(&self, events: &[StoredRecord]) -> Result<()> {
        if !self.log.is_shared() {
            return Ok(());
        }
        let Some(source) = events.iter().filter_map(source_offset).max() else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + STORE_WAIT;
        while self
            .store
            .applied_offset(self.partition)
            .is_none_or(|next| next <= source)
        {
            if tokio::time::Instant::now() >= deadline {
                return Err(PipelineError::NotApplied);
            }
            tokio::time::sleep(STORE_POLL).await;
        }
        Ok(())
    }

    async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        let log = self.log.clone();
        follow(&log, EVENTS_TOPIC, self.partition, &mut self, &shutdown).await
    }
}

impl PartitionConsumer for Worker {
    fn next_offset(&self) -> u64 {
        self.next
    }

    /// Handles the events from `self.next` on (not past `goal`), then commits.
    async fn step(&mut self, goal: u64) -> Result<()> {
        let limits = ReadLimits::records(MAX_EVENTS_PER_STEP);
        let at = (EVENTS_TOPIC, self.partition);
        let events = read_ready(&self.log, at, &mut self.next, goal, limits, NOTIFY_GROUP)?;
        let Some(last) = events.last().map(|r| r.offset) else {
            return Ok(());
        };
        self.wait_for_store(&events).await?;
        // Appended in bounded chunks (a large conversation makes many records per event); the
        // commit comes after the last chunk is durable.
        let mut pending: Vec<Record> = Vec::new();
        for event in &events {
            for record in self.notifications_for(event) {
                pending.push(record);
                if pending.len() >= MAX_RECORDS_PER_APPEND {
                    self.log
                        .append(NOTIFICATIONS_TOPIC, std::mem::take(&mut pending))
                        .await?;
                }
            }
        }
        if !pending.is_empty() {
            self.log.append(NOTIFICATIONS_TOPIC, pending).await?;
        }
        let at = (EVENTS_TOPIC, self.partition);
        self.next = commit_forward(&self.log, NOTIFY_GROUP, at, last + 1)?;
        let next = self.next;
        self.delivered.retain(|(offset, _)| *offset >= next);
        Ok(())
    }
}

impl Worker {
    /// The `message.new` records one event calls for (none for edits and deletes), made one
    /// at a time as they are taken, so a large conversation never has all of them in memory.
    fn notifications_for<'a>(
        &'a self,
        event: &'a StoredRecord,
    ) -> Box<dyn Iterator<Item = Record> + Send + 'a> {
        if self.everyone_online(event) {
            return Box::new(std::iter::empty());
        }
        let decoded: SentEvent<'a> = match serde_json::from_slice(&event.value) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::warn!(partition = self.partition, offset = event.offset, error = %e, "undecodable event; no notification");
                return Box::new(std::iter::empty());
            }
        };
        if decoded.event_type != EventType::MessageSent {
            return Box::new(std::iter::empty());
        }
        let message = decoded.message;
        let Some(participants) = self.store.participants(&message.conversation_id) else {
            tracing::warn!(conversation = %message.conversation_id, "event of an unknown conversation; no notification");
            return Box::new(std::iter::empty());
        };
        let offset = event.offset;
        let source = format!("{}:{offset}", self.partition);
        let sender = message.sender_id.clone();
        let records = participants
            .into_iter()
            .filter(move |user| *user != sender)
            .filter(|user| !self.live.has_live_session(user))
            .filter(move |user| !self.delivered.contains(&(offset, user.clone())))
            .map(move |recipient| {
                let notification = Notification {
                    sender_id: message.sender_id.clone().into_owned(),
                    sender_name: message.sender_name.clone().into_owned(),
                    message_content: preview(&message.content, self.settings.preview_bytes)
                        .to_owned(),
                    conversation_id: message.conversation_id.clone().into_owned(),
                    message_id: message.id.clone().into_owned(),
                    seq: message.seq,
                    timestamp: message.sent_at.clone().into_owned(),
                    recipient_id: recipient,
                };
                let value = serde_json::to_vec(&notification)
                    .expect("a notification of strings and numbers always serializes");
                Record::keyed(notification.recipient_id.as_bytes(), value)
                    .with_header(NOTIFY_SOURCE_HEADER, source.clone())
            });
        Box::new(records)
    }

    /// True when every participant of the event's conversation (its key) has a session open:
    /// nobody to notify, so the event need not be decoded. The usual case under load.
    fn everyone_online(&self, event: &StoredRecord) -> bool {
        let Some(conversation) = event
            .key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
        else {
            return false;
        };
        self.store
            .participants(conversation)
            .is_some_and(|participants| {
                participants
                    .iter()
                    .all(|user| self.live.has_live_session(user))
            })
    }
}

/// What a notification needs of a `messages.sent` event, borrowed from the record where its
/// JSON allows; decoded only when someone in the conversation is offline (see
/// [`Worker::everyone_online`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SentEvent<'a> {
    event_type: EventType,
    #[serde(borrow)]
    message: SentMessage<'a>,
}

/// The fields of the event's message that a notification carries.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SentMessage<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    conversation_id: Cow<'a, str>,
    seq: u64,
    #[serde(borrow)]
    sender_id: Cow<'a, str>,
    #[serde(borrow)]
    sender_name: Cow<'a, str>,
    #[serde(borrow)]
    content: Cow<'a, str>,
    #[serde(borrow)]
    sent_at: Cow<'a, str>,
}

/// The first `max` bytes of `text`, cut back to a character boundary.
fn preview(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_is_cut_at_a_character_boundary() {
        assert_eq!(preview("hello", 10), "hello");
        assert_eq!(preview("hello", 5), "hello");
        assert_eq!(preview("hello", 3), "hel");
        // "é" is two bytes: a cut inside it moves back before it.
        assert_eq!(preview("aé", 2), "a");
        assert_eq!(preview("é", 0), "");
    }

    #[test]
    fn an_event_is_read_borrowed_where_it_can_and_unescaped_where_it_must() {
        let raw = br#"{"eventType":"MessageSent","eventId":"e","occurredAt":"t","message":{"id":"m","conversationId":"c","seq":7,"senderId":"ann","senderName":"Ann \"A\"","content":"caf\u00e9\nnext","clientMessageId":null,"replyTo":null,"mentions":["bob"],"sentAt":"2026-01-01T00:00:00Z","editedAt":null,"deleted":false}}"#;
        let event: SentEvent<'_> = serde_json::from_slice(raw).unwrap();
        assert_eq!(event.event_type, EventType::MessageSent);
        let message = event.message;
        assert!(matches!(message.id, Cow::Borrowed("m")));
        assert!(matches!(message.conversation_id, Cow::Borrowed("c")));
        assert_eq!(message.seq, 7);
        assert_eq!(message.sender_name, "Ann \"A\"");
        assert_eq!(message.content, "café\nnext");
        assert_eq!(message.sent_at, "2026-01-01T00:00:00Z");
    }
}
