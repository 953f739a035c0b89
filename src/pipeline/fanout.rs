//! The fan-out: consumer group `fanout` on `messages.sent`, pushing each stored message to the
//! live sessions of its conversation's participants through the hub.
//!
//! One task per partition, so the events of one conversation (one key, one partition) are
//! delivered in the order the store wrote them: in seq order. Each task starts at the
//! partition's high watermark when the server starts (live delivery only: what a session
//! missed it gets with `resume`, from the store) and commits its position after every batch,
//! so `/metrics` shows the group's lag like any consumer's. For each event it looks the
//! conversation's participants up at that moment (a participant removed a moment ago receives
//! nothing more) and, if any of them has a session, builds the frame once (`message`,
//! `message.updated` or `message.deleted`) and hands it to [`Hub::deliver`], which never waits.
//! It runs in the pipeline's consumer loop (`follow.rs`): it wakes on the partition's high
//! watermark, never on a timer.
//!
//! A task that fails is started again, from the high watermark of that moment
//! ([`super::supervise`]); `/readyz` answers 503 meanwhile.
//!
//! Shutdown: on cancel, a task delivers everything up to the high watermark of that moment
//! (the server cancels it after the store writers and the relay have finished) and exits.
//! This module knows nothing of sockets or sessions' seq bookkeeping (that is `api::ws`).

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::follow::{follow, read_ready, PartitionConsumer};
use super::supervise::{commit_forward, spawn_supervised};
use super::{Result, WorkerHealth, EVENTS_TOPIC};
use crate::hub::{Frame, Hub, Scope};
use crate::log::{Log, ReadLimits, StoredRecord};
use crate::store::{EventType, Message, MessageEvent, Store};

/// The consumer group of the fan-out.
pub const FANOUT_GROUP: &str = "fanout";
/// Most events one step delivers before it commits.
const MAX_BATCH: usize = 512;

/// `{"type":"message"|"message.updated","message":{…}}`.
#[derive(Serialize)]
struct MessageFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a Message,
}

/// `{"type":"message.deleted","conversationId","id","seq"}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeletedFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    conversation_id: &'a str,
    id: &'a str,
    seq: u64,
}

/// The `message` frame of a stored message (also used to replay history to a session).
pub fn message_frame(message: &Message) -> Frame {
    let scope = Scope::Message {
        conversation: message.conversation_id.as_str().into(),
        seq: message.seq,
    };
    Frame::json(
        &MessageFrame {
            kind: "message",
            message,
        },
        scope,
    )
}

/// The frame of one `messages.sent` event.
pub fn event_frame(event: &MessageEvent) -> Frame {
    let message = &event.message;
    let in_conversation = || Scope::Conversation(message.conversation_id.as_str().into());
    match event.event_type {
        EventType::MessageSent => message_frame(message),
        EventType::MessageUpdated => Frame::json(
            &MessageFrame {
                kind: "message.updated",
                message,
            },
            in_conversation(),
        ),
        EventType::MessageDeleted => Frame::json(
            &DeletedFrame {
                kind: "message.deleted",
                conversation_id: &message.conversation_id,
                id: &message.id,
                seq: message.seq,
            },
            in_conversation(),
        ),
    }
}

/// Starts one fan-out task per partition of `messages.sent` on `tracker`, each from the
/// partition's high watermark (also after a failure: sessions fill gaps by resuming); they stop
/// when `shutdown` is cancelled (after draining). A failed task shows in `health`.
pub fn start(
    log: Log,
    store: Store,
    hub: Hub,
    health: WorkerHealth,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<()> {
    let partitions = log.describe_topic(EVENTS_TOPIC)?.partitions.len() as u32;
    for partition in 0..partitions {
        let (log, store, hub) = (log.clone(), store.clone(), hub.clone());
        let stop = shutdown.clone();
        let run = move || {
            let task = PartitionFanout::from_high_watermark(&log, &store, &hub, partition);
            let shutdown = stop.clone();
            async move { task?.run(shutdown).await }
        };
        let name = format!("{FANOUT_GROUP}/{partition}");
        spawn_supervised(tracker, health.clone(), name, shutdown.clone(), run);
    }
    Ok(())
}

struct PartitionFanout {
    log: Log,
    store: Store,
    hub: Hub,
    partition: u32,
    /// The next offset of `messages.sent` to deliver.
    next: u64,
}

impl PartitionFanout {
    /// A fan-out of `partition` that starts at its high watermark (committed as the group's
    /// position, so `tidings groups describe fanout` shows where it is).
    fn from_high_watermark(log: &Log, store: &Store, hub: &Hub, partition: u32) -> Result<Self> {
        let (_, high) = log.watermarks(EVENTS_TOPIC, partition)?;
        let next = commit_forward(log, FANOUT_GROUP, (EVENTS_TOPIC, partition), high)?;
        Ok(PartitionFanout {
            log: log.clone(),
            store: store.clone(),
            hub: hub.clone(),
            partition,
            next,
        })
    }

    async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        let log = self.log.clone();
        follow(&log, EVENTS_TOPIC, self.partition, &mut self, &shutdown).await
    }
}

impl PartitionConsumer for PartitionFanout {
    fn next_offset(&self) -> u64 {
        self.next
    }

    /// Delivers the events from `self.next` on (at most [`MAX_BATCH`], not past `goal`) and
    /// commits the new position.
    async fn step(&mut self, goal: u64) -> Result<()> {
        let records = read_ready(
            &self.log,
            (EVENTS_TOPIC, self.partition),
            &mut self.next,
            goal,
            ReadLimits::records(MAX_BATCH),
            FANOUT_GROUP,
        )?;
        let Some(last) = records.last().map(|r| r.offset) else {
            return Ok(());
        };
        for record in &records {
            self.deliver(record);
        }
        let at = (EVENTS_TOPIC, self.partition);
        self.next = commit_forward(&self.log, FANOUT_GROUP, at, last + 1)?;
        // A step never waits: let the sessions' writers run between batches.
        tokio::task::yield_now().await;
        Ok(())
    }
}

impl PartitionFanout {
    /// Pushes one event to every session of the conversation's participants of this moment.
    /// Most events of a busy server concern conversations nobody has open: no frame is built
    /// for those.
    fn deliver(&self, record: &StoredRecord) {
        let event: MessageEvent = match serde_json::from_slice(&record.value) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(partition = self.partition, offset = record.offset, error = %e, "undecodable event; not delivered");
                return;
            }
        };
        let Some(participants) = self.store.participants(&event.message.conversation_id) else {
            return;
        };
        if participants
            .iter()
            .any(|user| self.hub.has_live_session(user))
        {
            self.hub.deliver(&participants, &event_frame(&event));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64) -> Message {
        Message {
            id: "m".into(),
            conversation_id: "c".into(),
            seq,
            sender_id: "ann".into(),
            sender_name: "Ann".into(),
            content: "hi".into(),
            client_message_id: None,
            reply_to: None,
            mentions: Vec::new(),
            sent_at: "2024-01-01T00:00:00.000Z".into(),
            edited_at: None,
            deleted: false,
        }
    }

    #[test]
    fn each_event_type_has_its_frame() {
        let event = |event_type| MessageEvent {
            event_type,
            event_id: "e".into(),
            occurred_at: "t".into(),
            message: message(3),
        };
        let sent = event_frame(&event(EventType::MessageSent));
        let json: serde_json::Value = serde_json::from_str(sent.text()).unwrap();
        assert_eq!(json["type"], "message");
        assert_eq!(json["message"]["seq"], 3);
        assert_eq!(
            sent.scope(),
            &Scope::Message {
                conversation: "c".into(),
                seq: 3
            }
        );
        let updated = event_frame(&event(EventType::MessageUpdated));
        assert!(updated
            .text()
            .starts_with(r#"{"type":"message.updated","message":{"#));
        let deleted = event_frame(&event(EventType::MessageDeleted));
        let json: serde_json::Value = serde_json::from_str(deleted.text()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type":"message.deleted","conversationId":"c","id":"m","seq":3})
        );
        assert_eq!(deleted.scope(), &Scope::Conversation("c".into()));
    }
}
