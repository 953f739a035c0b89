//! The store writer's batch transaction: ONE sled transaction over `conversations`, `messages`,
//! `message_ids`, `client_ids`, `read_state`, `outbox` and the consumer `offsets`, so a batch's
//! effects, its events and the group's committed offset land together or not at all. Replay
//! after a crash therefore neither loses nor repeats a message.
//!
//! Per command:
//! - `Send`: skipped if its id is stored or its (sender, conversation, clientMessageId) is
//!   indexed, or if the conversation does not exist. A sender no longer a participant (removed
//!   between the edge's check and this batch) is still stored: the edge answered 202, which
//!   promised durability. Otherwise: seq = lastSeq + 1, message, indexes, `lastMessage`,
//!   `updatedAt`, the sender's read state (up to seq), and a `MessageSent` event.
//! - `Edit` / `Delete`: only by the message's sender, on a message of that conversation that
//!   is not deleted; otherwise skipped with a warning (the edge validates before appending).
//!   A delete keeps seq, clears content, sets `deleted` and `editedAt`.
//! - `Read`: by a participant, clamped to `lastSeq`, forward only; no event.

use std::collections::HashMap;

use sled::transaction::{ConflictableTransactionError, Transactional, TransactionalTree};

use super::command::{
    ChatCommand, DeleteMessage, EditMessage, EventType, MarkRead, MessageEvent, SendMessage,
};
use super::conversations::{encode_conversation, load_in};
use super::error::{Result, StoreError};
use super::keys;
use super::model::{Conversation, Message};
use super::outbox::OutboxEntry;
use super::queries::decode_message;
use super::Store;
use crate::log::groups::stage_commit;

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<StoreError>>;

/// Where a batch comes from, for the offset commit inside its transaction.
#[derive(Debug, Clone, Copy)]
pub struct BatchPosition<'a> {
    /// Consumer group (`store`).
    pub group: &'a str,
    /// Source topic (`messages`).
    pub topic: &'a str,
    /// Source partition; also the partition of the events.
    pub partition: u32,
    /// The offset to commit: one past the batch's last record.
    pub next_offset: u64,
}

/// What a committed batch changed.
#[derive(Debug, Clone, Default)]
pub struct AppliedBatch {
    /// Events written to the outbox, in order, to relay to `messages.sent`.
    pub events: Vec<OutboxEntry>,
    /// Conversations whose activity changed, as committed.
    pub conversations: Vec<Conversation>,
    /// Messages stored by this batch.
    pub stored: usize,
    /// Commands skipped (duplicates, unknown targets, not the sender).
    pub skipped: usize,
    /// Read state moved: (user, conversation, seq).
    pub reads: Vec<(String, String, u64)>,
}

struct Batch<'t> {
    conversations: &'t TransactionalTree,
    messages: &'t TransactionalTree,
    message_ids: &'t TransactionalTree,
    client_ids: &'t TransactionalTree,
    read_state: &'t TransactionalTree,
    outbox: &'t TransactionalTree,
    partition: u32,
    cache: HashMap<String, Option<Conversation>>,
    dirty: Vec<String>,
    reads: HashMap<(String, String), u64>,
    out: AppliedBatch,
}

impl Store {
    /// Applies decoded commands (with their source offsets, ascending) and commits
    /// `position.next_offset` for the group, in one transaction; then updates the in-memory view.
    pub fn apply_batch(
        &self,
        position: &BatchPosition<'_>,
        commands: &[(u64, ChatCommand)],
    ) -> Result<AppliedBatch> {
        let t = self.trees();
        let trees = (
            &t.conversations,
            &t.messages,
            &t.message_ids,
            &t.client_ids,
            &t.read_state,
            &t.outbox,
            &t.offsets,
        );
        let applied = trees.transaction(
            |(conversations, messages, message_ids, client_ids, read_state, outbox, offsets)| {
                let mut batch = Batch {
                    conversations,
                    messages,
                    message_ids,
                    client_ids,
                    read_state,
                    outbox,
                    partition: position.partition,
                    cache: HashMap::new(),
                    dirty: Vec::new(),
                    reads: HashMap::new(),
                    out: AppliedBatch::default(),
                };
                for (offset, command) in commands {
                    batch.apply(*offset, command)?;
                }
                let p = position;
                stage_commit(offsets, p.group, p.topic, p.partition, p.next_offset).map_err(
                    |e| match e {
                        ConflictableTransactionError::Abort(e) => {
                            ConflictableTransactionError::Abort(StoreError::Log(e))
                        }
                        ConflictableTransactionError::Conflict => {
                            ConflictableTransactionError::Conflict
                        }
                        ConflictableTransactionError::Storage(e) => {
                            ConflictableTransactionError::Storage(e)
                        }
                    },
                )?;
                batch.finish()
            },
        )?;
        let mut view = self.view_mut();
        for conversation in &applied.conversations {
            view.set_activity(conversation);
        }
        for (user, conversation, seq) in &applied.reads {
            view.set_read(user, conversation, *seq);
        }
        Ok(applied)
    }
}

impl Batch<'_> {
    fn apply(&mut self, offset: u64, command: &ChatCommand) -> TxResult<()> {
        let done = match command {
            ChatCommand::Send(send) => self.send(offset, send)?,
            ChatCommand::Edit(edit) => self.edit(offset, edit)?,
            ChatCommand::Delete(delete) => self.delete(offset, delete)?,
            ChatCommand::Read(read) => self.read(read)?,
        };
        if !done {
            self.out.skipped += 1;
        }
        Ok(())
    }

    fn conversation(&mut self, id: &str) -> TxResult<Option<Conversation>> {
        if let Some(cached) = self.cache.get(id) {
            return Ok(cached.clone());
        }
        let loaded = load_in(self.conversations, id)?;
        self.cache.insert(id.to_owned(), loaded.clone());
        Ok(loaded)
    }

    fn put_conversation(&mut self, conversation: Conversation) {
        if !self.dirty.contains(&conversation.id) {
            self.dirty.push(conversation.id.clone());
        }
        self.cache
            .insert(conversation.id.clone(), Some(conversation));
    }

    fn send(&mut self, offset: u64, send: &SendMessage) -> TxResult<bool> {
        if self.message_ids.get(send.id.as_bytes())?.is_some() {
            tracing::debug!(id = %send.id, "send already stored; skipped");
            return Ok(false);
        }
        let client_key = send
            .client_message_id
            .as_ref()
            .map(|c| keys::client_id(&send.sender_id, &send.conversation_id, c));
        if let Some(key) = &client_key {
            if self.client_ids.get(key.as_slice())?.is_some() {
                tracing::debug!(id = %send.id, "clientMessageId already stored; skipped");
                return Ok(false);
            }
        }
        let Some(mut conversation) = self.conversation(&send.conversation_id)? else {
            tracing::warn!(conversation = %send.conversation_id, id = %send.id, "send to an unknown conversation; skipped");
            return Ok(false);
        };
        let message = Message {
            id: send.id.clone(),
            conversation_id: send.conversation_id.clone(),
            seq: conversation.last_seq + 1,
            sender_id: send.sender_id.clone(),
            sender_name: send.sender_name.clone(),
            content: send.content.clone(),
            client_message_id: send.client_message_id.clone(),
            reply_to: send.reply_to.clone(),
            mentions: send.mentions.clone(),
            sent_at: send.sent_at.clone(),
            edited_at: None,
            deleted: false,
        };
        let location = keys::message(&message.conversation_id, message.seq);
        self.messages
            .insert(location.as_slice(), encode_message(&message))?;
        self.message_ids.insert(message.id.as_bytes(), location)?;
        if let Some(key) = client_key {
            self.client_ids.insert(
                key,
                keys::client_send_value(&message.id, self.partition, offset),
            )?;
        }
        conversation.last_seq = message.seq;
        conversation.last_message = Some(message.clone());
        conversation.updated_at = conversation.updated_at.clone().max(message.sent_at.clone());
        self.put_conversation(conversation);
        self.move_read(&message.sender_id, &message.conversation_id, message.seq)?;
        self.out.stored += 1;
        self.event(offset, EventType::MessageSent, message)?;
        Ok(true)
    }

    /// The stored message `id` of `conversation` if `sender` sent it and it is not deleted.
    fn own_message(
        &mut self,
        id: &str,
        conversation: &str,
        sender: &str,
    ) -> TxResult<Option<Message>> {
        let Some(location) = self.message_ids.get(id.as_bytes())? else {
            return Ok(None);
        };
        let Some(raw) = self.messages.get(&location)? else {
            return Ok(None);
        };
        let message =
            decode_message(&location, &raw).map_err(ConflictableTransactionError::Abort)?;
        let allowed = message.conversation_id == conversation
            && message.sender_id == sender
            && !message.deleted;
        Ok(allowed.then_some(message))
    }

    fn edit(&mut self, offset: u64, edit: &EditMessage) -> TxResult<bool> {
        let Some(mut message) =
            self.own_message(&edit.message_id, &edit.conversation_id, &edit.sender_id)?
        else {
            tracing::warn!(id = %edit.message_id, sender = %edit.sender_id, "edit of an unknown, deleted or someone else's message; skipped");
            return Ok(false);
        };
        message.content = edit.content.clone();
        message.edited_at = Some(edit.at.clone());
        self.rewrite(offset, EventType::MessageUpdated, message)?;
        Ok(true)
    }

    fn delete(&mut self, offset: u64, delete: &DeleteMessage) -> TxResult<bool> {
        let Some(mut message) = self.own_message(
            &delete.message_id,
            &delete.conversation_id,
            &delete.sender_id,
        )?
        else {
            tracing::warn!(id = %delete.message_id, sender = %delete.sender_id, "delete of an unknown, deleted or someone else's message; skipped");
            return Ok(false);
        };
        message.content.clear();
        message.deleted = true;
        message.edited_at = Some(delete.at.clone());
        self.rewrite(offset, EventType::MessageDeleted, message)?;
        Ok(true)
    }

    /// Stores a changed message in place (same seq) and refreshes `lastMessage` if it is it.
    fn rewrite(&mut self, offset: u64, event_type: EventType, message: Message) -> TxResult<()> {
        let location = keys::message(&message.conversation_id, message.seq);
        self.messages.insert(location, encode_message(&message))?;
        if let Some(mut conversation) = self.conversation(&message.conversation_id)? {
            if conversation.last_seq == message.seq {
                conversation.last_message = Some(message.clone());
                self.put_conversation(conversation);
            }
        }
        self.event(offset, event_type, message)
    }

    fn read(&mut self, read: &MarkRead) -> TxResult<bool> {
        let Some(conversation) = self.conversation(&read.conversation_id)? else {
            return Ok(false);
        };
        if !conversation.has_participant(&read.user_id) {
            tracing::warn!(conversation = %read.conversation_id, user = %read.user_id, "read mark by a non-participant; skipped");
            return Ok(false);
        }
        let seq = read.seq.min(conversation.last_seq);
        self.move_read(&read.user_id, &read.conversation_id, seq)
    }

    /// Moves a user's read state up to `seq` (never down); true if it moved.
    fn move_read(&mut self, user: &str, conversation: &str, seq: u64) -> TxResult<bool> {
        let key = (user.to_owned(), conversation.to_owned());
        let current = match self.reads.get(&key) {
            Some(seq) => *seq,
            None => match self.read_state.get(keys::read_state(user, conversation))? {
                Some(raw) => keys::decode_u64("read_state", &raw)
                    .map_err(ConflictableTransactionError::Abort)?,
                None => 0,
            },
        };
        if seq <= current {
            self.reads.insert(key, current);
            return Ok(false);
        }
        self.read_state
            .insert(keys::read_state(user, conversation), &seq.to_be_bytes())?;
        self.reads.insert(key, seq);
        self.out
            .reads
            .push((user.to_owned(), conversation.to_owned(), seq));
        Ok(true)
    }

    fn event(&mut self, offset: u64, event_type: EventType, message: Message) -> TxResult<()> {
        let index = self
            .out
            .events
            .iter()
            .filter(|e| e.source_offset == offset)
            .count() as u32;
        let conversation_id = message.conversation_id.clone();
        let event = MessageEvent::new(event_type, message);
        let entry = OutboxEntry {
            partition: self.partition,
            source_offset: offset,
            index,
            conversation_id,
            payload: serde_json::to_vec(&event).expect("an event of strings always serializes"),
        };
        self.outbox.insert(entry.key(), entry.value())?;
        self.out.events.push(entry);
        Ok(())
    }

    /// Writes the changed conversations and hands back what the batch did.
    fn finish(mut self) -> TxResult<AppliedBatch> {
        for id in std::mem::take(&mut self.dirty) {
            if let Some(Some(conversation)) = self.cache.remove(&id) {
                self.conversations
                    .insert(id.as_bytes(), encode_conversation(&conversation))?;
                self.out.conversations.push(conversation);
            }
        }
        Ok(self.out)
    }
}

fn encode_message(message: &Message) -> Vec<u8> {
    serde_json::to_vec(message).expect("a message of strings always serializes")
}
