//! The store writer's batch, without a sled transaction: plain inserts in a fixed order, all
//! from the writer's thread. sled 0.34 serializes every transaction against all writes of the
//! process (one global lock), so a transaction here would stall the log's appender; plain
//! inserts do not. The batch does not commit the group's offset: the writer does that
//! ([`Store::commit_batch`], forward only) once the batch's events are in `messages.sent`.
//!
//! Crash safety rests on two facts:
//! - **sled recovers a prefix of its writes**: its log is replayed in order up to the first
//!   torn entry, so after a crash the durable writes are a prefix of the sequence below, batch
//!   after batch, and a durable checkpoint implies every write before it is durable.
//! - **each writer owns its partition's conversations** (conversation id = record key), and is
//!   the only one to move their *activity* (lastSeq, lastMessage, updatedAt) and read states,
//!   which it keeps in the in-memory view; the store's [`checkpoint`](super::checkpoint) writes
//!   them to disk together with the position they cover, and no earlier than the messages they
//!   count. So replaying from the checkpoint's position sees what the interrupted run left, and
//!   recomputes the same seqs and the same events.
//!
//! Per command, in order:
//! - `Send` (a record that was in the log when the writer started, so an interrupted run may
//!   have applied it; later records skip this look-up): if the [`id_index`](super::id_index)
//!   holds its id with this record's source offset, the interrupted run stored it at that
//!   (conversation, seq): the remaining writes are repeated (they are idempotent), no new seq is
//!   taken, and its event is made again from the command. An index entry from another record,
//!   an indexed (sender, conversation, clientMessageId) of another record or an unknown
//!   conversation skips the send. Otherwise seq = lastSeq + 1; the message joins the
//!   [`unwritten`](super::unwritten) ones (the checkpoint writes them as chunks), its index entry
//!   the pending ones (the checkpoint writes them first), then `client_ids`; the sender's read
//!   state moves to it in memory. Its event is not written anywhere: a replay makes it again. A
//!   replayed send whose message no chunk holds is stored again at its indexed seq. A
//!   `client_ids` entry of this very record is not a duplicate: its index entry was still
//!   pending when the run stopped, so nothing that counts the message is on disk.
//!   A sender no longer a participant is still stored: the edge's 202 promised durability.
//! - `Edit` / `Delete`: only by the message's sender, on a message of that conversation that
//!   is not deleted, else skipped. The event goes to the `outbox` (keyed by partition, source
//!   offset, index) BEFORE the message changes (among the unwritten ones, or its chunk
//!   rewritten), since a replay that finds the change applied (a deleted message) cannot make
//!   it again; [`Store::batch_events`] merges it back.
//! - `Read`: by a participant, clamped to lastSeq, forward only (in memory); no event.
//! - Conversation commands: decided again, then the membership record (see `conversations`).
//!   A deletion removes the conversation's records (see [`deletion`]), its membership record
//!   last, so a replay after a crash in between decides it again and finishes it.
//!
//! The batch writes no new message, activity or read state: it hands them to memory
//! ([`Store::apply_batch`]), and the checkpoint writes each once however many batches moved it
//! (a conversation's activity and its sender's read state move with every message). The relay
//! (`pipeline/relay.rs`) never relays an event at or below the last relayed source offset,
//! since a replay makes again events that may have been relayed already.
//!
//! A delete that finds its message deleted already refreshes the conversation's `lastMessage`
//! if it is it: a replay after a crash can find the chunk rewritten while the activity is the
//! checkpoint's, still showing the content.
//!
//! Known difference from a first application: a replayed `Read` whose seq exceeds lastSeq is
//! clamped to the activity the interrupted run may have advanced further; the edge clamps read
//! marks before appending them, so only records written by other producers can meet this.

mod deletion;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::activity::{Activity, Membership};
use super::command::{
    ChatCommand, DeleteMessage, EditMessage, EventType, MarkRead, MessageEvent, SendMessage,
};
use super::conversations::{decide_add, decide_create, decide_remove, decide_rename, decide_role};
use super::error::{Result, StoreError};
use super::keys;
use super::model::{Conversation, Message};
use super::outbox::OutboxEntry;
use super::unwritten::encode_chunk;
use super::{Store, Trees};

/// Past this much in unwritten messages (checkpoints are failing or far behind), a store writer
/// writes them itself before its next batch, so memory stays bounded.
const UNWRITTEN_BUDGET_BYTES: usize = 64 * 1024 * 1024;

/// A consumer's place after a batch: the offset commit that follows its relay.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchPosition<'a> {
    /// Consumer group (`store`).
    pub group: &'a str,
    /// Source topic (`messages`).
    pub topic: &'a str,
    /// Source partition; also the partition of the events.
    pub partition: u32,
    /// The offset to commit: one past the batch's last record.
    pub next_offset: u64,
}

/// One change a batch made that clients see live, in the batch's order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// A message was stored, edited or deleted (the message as it is now).
    Message {
        /// Which.
        event_type: EventType,
        /// The message.
        message: Arc<Message>,
    },
    /// A participant read the conversation up to `seq` (an explicit read mark; the read state
    /// a send moves for its sender is not announced).
    Read {
        /// The conversation.
        conversation: String,
        /// The reader.
        user: String,
        /// The new read mark.
        seq: u64,
    },
    /// A conversation's participants, owners or title changed.
    Conversation {
        /// The conversation as it is now.
        conversation: Arc<Conversation>,
        /// The participant a removal took out (who learns it this way).
        removed: Option<String>,
    },
    /// A conversation was deleted, its messages with it.
    ConversationDeleted {
        /// The conversation.
        conversation_id: String,
        /// Its participants when it was deleted (who learn it this way).
        participants: Vec<String>,
    },
}

/// What a conversation command came to, for the edge that appended it: the conversation as it
/// is now, or why the command was refused (it changed nothing).
pub(crate) type Outcome = Result<Conversation>;

/// What a committed batch changed.
#[derive(Debug, Default)]
pub(crate) struct AppliedBatch {
    /// What clients see live, in order (the writer hands it to the hub at once).
    pub changes: Vec<Change>,
    /// The batch's events, in order, to relay to `messages.sent` (after a crash, some may have
    /// been relayed already: the relay skips those). Edit and delete events are also in the
    /// outbox; see [`Store::batch_events`].
    pub events: Vec<OutboxEntry>,
    /// Conversations whose activity changed, with their activity as committed (moved into the
    /// view by [`Store::apply_batch`]).
    pub activities: Vec<(String, Activity)>,
    /// Messages this batch stored or changed that are not on disk yet, with their JSON, in
    /// (conversation, seq) order: they join the unwritten ones ([`Store::apply_batch`]).
    staged: Vec<(Arc<Message>, Vec<u8>)>,
    /// Conversations a message of which this batch wrote as a record of its own.
    written_alone: HashSet<String>,
    /// The message-id index entries of the messages this batch stored: they join the pending
    /// ones ([`Store::apply_batch`]).
    ids: Vec<(String, Vec<u8>)>,
    /// Messages stored by this batch (including ones a replay completed).
    pub stored: usize,
    /// Commands skipped (duplicates, unknown targets, not the sender).
    pub skipped: usize,
    /// Read state moved: (user, conversation, seq).
    pub reads: Vec<(String, String, u64)>,
    /// The outcome of each conversation command, by source offset.
    pub outcomes: Vec<(u64, Outcome)>,
}

struct Batch<'s> {
    store: &'s Store,
    trees: &'s Trees,
    partition: u32,
    /// Activity per conversation as this batch left it; `None`: unknown conversation.
    activity: HashMap<String, Option<Activity>>,
    dirty: Vec<String>,
    reads: HashMap<(String, String), u64>,
    /// Read states this batch moved, in the order first moved; written by [`Batch::finish`].
    moved_reads: Vec<(String, String)>,
    /// Messages this batch stored, or changed while unwritten, with their JSON, by
    /// (conversation, seq).
    staged: BTreeMap<(String, u64), (Arc<Message>, Vec<u8>)>,
    /// Conversations this batch stored a message of as a record of its own.
    written_alone: HashSet<String>,
    /// The message-id index entries of the messages this batch stored.
    ids: HashMap<String, Vec<u8>>,
    out: AppliedBatch,
    /// Commands at or above this offset were never applied before (see [`Store::apply_batch`]).
    new_from: u64,
    /// Test hook: writes allowed before a simulated crash.
    writes_left: Option<usize>,
}

impl Store {
    /// Applies decoded commands of `partition` (with their source offsets, ascending), then
    /// updates the in-memory view. Safe to repeat after a crash at any point (see the module doc). It does
    /// not commit: [`Store::commit_batch`] does, once the events are relayed.
    ///
    /// `new_from`: the partition's high watermark when its writer started. Only a record that
    /// was in the log then can have been applied by an interrupted run, so a send at or above it
    /// skips the id index look-up that recognizes a replay (its id is a fresh UUIDv7 made
    /// by an edge: `messages` takes no records from clients). `u64::MAX` checks every send.
    pub(crate) fn apply_batch(
        &self,
        partition: u32,
        commands: &[(u64, ChatCommand)],
        new_from: u64,
    ) -> Result<AppliedBatch> {
        // The store's disk is failing: stop here, as when a write of this batch fails, rather
        // than pile up in memory what no checkpoint can write (a busy conversation's messages
        // reach the disk only through one). The log keeps every command for the replay.
        if let Some(reason) = self.checkpoint_failure() {
            return Err(StoreError::Storage(format!(
                "the store's last checkpoint failed: {reason}"
            )));
        }
        let applied = {
            let _batch = self.inner.batches.read();
            let mut applied = self.write_batch(partition, commands, new_from, None)?;
            self.hand_to_memory(&mut applied)?;
            applied
        };
        if self.unwritten().bytes() + self.pending_ids().bytes() > UNWRITTEN_BUDGET_BYTES {
            tracing::warn!("unwritten messages over budget: the store writer writes them itself (are checkpoints failing?)");
            self.write_unwritten()?;
        }
        Ok(applied)
    }

    /// Moves what a batch changed in memory into the view and the unwritten messages.
    fn hand_to_memory(&self, applied: &mut AppliedBatch) -> Result<()> {
        let mut view = self.view_mut();
        for (conversation, activity) in std::mem::take(&mut applied.activities) {
            view.set_activity(&conversation, activity);
        }
        for (user, conversation, seq) in &applied.reads {
            view.set_read(user, conversation, *seq);
        }
        drop(view);
        let mut unwritten = self.unwritten_mut();
        for (message, json) in std::mem::take(&mut applied.staged) {
            unwritten.put(message, &json)?;
        }
        unwritten.note_written_alone(std::mem::take(&mut applied.written_alone));
        drop(unwritten);
        let mut pending = self.pending_ids_mut();
        for (id, location) in std::mem::take(&mut applied.ids) {
            pending.put(id, location);
        }
        Ok(())
    }

    /// Test hook: applies a batch but "crashes" (fails with `Storage`) before its write number
    /// `writes` (0-based), leaving the view untouched.
    #[cfg(test)]
    pub(crate) fn apply_batch_interrupted(
        &self,
        partition: u32,
        commands: &[(u64, ChatCommand)],
        writes: usize,
    ) -> Result<AppliedBatch> {
        let _batch = self.inner.batches.read();
        self.write_batch(partition, commands, u64::MAX, Some(writes))
    }

    fn write_batch(
        &self,
        partition: u32,
        commands: &[(u64, ChatCommand)],
        new_from: u64,
        writes_left: Option<usize>,
    ) -> Result<AppliedBatch> {
        let mut batch = Batch {
            store: self,
            trees: self.trees(),
            partition,
            activity: HashMap::new(),
            dirty: Vec::new(),
            reads: HashMap::new(),
            moved_reads: Vec::new(),
            staged: BTreeMap::new(),
            written_alone: HashSet::new(),
            ids: HashMap::new(),
            out: AppliedBatch::default(),
            new_from,
            writes_left,
        };
        for (offset, command) in commands {
            batch.apply(*offset, command)?;
        }
        Ok(batch.finish())
    }

    /// The events of the batch at source offsets `from..to` of `partition`: `applied` (what the
    /// batch made) merged with what the outbox holds for those offsets (the edit and delete
    /// events of an interrupted run, which a replay that finds the change applied cannot make
    /// again), in source order.
    pub(crate) fn batch_events(
        &self,
        partition: u32,
        range: std::ops::Range<u64>,
        applied: Vec<OutboxEntry>,
    ) -> Result<Vec<OutboxEntry>> {
        let mut events: std::collections::BTreeMap<(u64, u32), OutboxEntry> = self
            .events_between(partition, range)?
            .into_iter()
            .map(|e| ((e.source_offset, e.index), e))
            .collect();
        for event in applied {
            events
                .entry((event.source_offset, event.index))
                .or_insert(event);
        }
        Ok(events.into_values().collect())
    }
}

impl Batch<'_> {
    fn apply(&mut self, offset: u64, command: &ChatCommand) -> Result<()> {
        let done = match command {
            ChatCommand::Send(send) => self.send(offset, send)?,
            ChatCommand::Edit(edit) => self.edit(offset, edit)?,
            ChatCommand::Delete(delete) => self.delete(offset, delete)?,
            ChatCommand::Read(read) => self.read(read)?,
            ChatCommand::CreateConversation(create) => {
                self.membership(offset, &create.conversation_id, None, |current| {
                    decide_create(current, create).map(Some)
                })?
            }
            ChatCommand::AddParticipant(add) => {
                let max = self.store.limits().max_participants;
                self.membership(offset, &add.conversation_id, None, |current| {
                    decide_add(current, add, max)
                })?
            }
            ChatCommand::RemoveParticipant(remove) => self.membership(
                offset,
                &remove.conversation_id,
                Some(&remove.user_id),
                |current| decide_remove(current, remove),
            )?,
            ChatCommand::RenameConversation(rename) => {
                self.membership(offset, &rename.conversation_id, None, |current| {
                    decide_rename(current, rename)
                })?
            }
            ChatCommand::SetRole(role) => {
                self.membership(offset, &role.conversation_id, None, |current| {
                    decide_role(current, role)
                })?
            }
            ChatCommand::DeleteConversation(delete) => self.delete_conversation(offset, delete)?,
        };
        if !done {
            self.out.skipped += 1;
        }
        Ok(())
    }

    /// One insert, counted by the test hook.
    fn write(&mut self, tree: &sled::Tree, key: &[u8], value: &[u8]) -> Result<()> {
        count_write(&mut self.writes_left)?;
        fail::fail_point!("store::apply", |_| Err(StoreError::Storage(
            "injected write failure (failpoint store::apply)".into()
        )));
        tree.insert(key, value)?;
        Ok(())
    }

    /// The conversation's activity as this batch sees it, loaded from the view on first use;
    /// `None` if the conversation does not exist.
    fn activity(&mut self, id: &str) -> &mut Option<Activity> {
        if !self.activity.contains_key(id) {
            let loaded = self.store.view().activity(id);
            self.activity.insert(id.to_owned(), loaded);
        }
        self.activity.get_mut(id).expect("cached above")
    }

    /// The conversation's last seq as this batch sees it; `None` if it does not exist.
    fn last_seq(&mut self, id: &str) -> Option<u64> {
        self.activity(id).as_ref().map(|activity| activity.last_seq)
    }

    /// Moves the cached activity of the message's conversation to it: a newer seq, or the same
    /// seq changed (`same_seq`).
    fn advance(&mut self, message: &Arc<Message>, same_seq: bool) {
        let Some(activity) = self.activity(&message.conversation_id) else {
            return;
        };
        let moves = message.seq > activity.last_seq
            || (same_seq && message.seq == activity.last_seq && message.seq > 0);
        let changed = moves && activity.advance(message);
        if changed && !self.dirty.contains(&message.conversation_id) {
            self.dirty.push(message.conversation_id.clone());
        }
    }

    fn send(&mut self, offset: u64, send: &SendMessage) -> Result<bool> {
        if offset < self.new_from {
            if let Some(done) = self.replayed_send(offset, send)? {
                return Ok(done);
            }
        }
        if let Some(c) = &send.client_message_id {
            let key = keys::client_id(&send.sender_id, &send.conversation_id, c);
            if let Some(raw) = self.trees.client_ids.get(key)? {
                // This record's own entry: an interrupted run indexed its client id, and the
                // message id with it was still pending (so nothing it counted is on disk).
                let own = keys::decode_client_send(&raw)?.source == Some((self.partition, offset));
                if !own {
                    tracing::debug!(id = %send.id, "clientMessageId already stored; skipped");
                    return Ok(false);
                }
            }
        }
        let Some(last_seq) = self.last_seq(&send.conversation_id) else {
            tracing::warn!(conversation = %send.conversation_id, id = %send.id, "send to an unknown conversation; skipped");
            return Ok(false);
        };
        let message = Arc::new(message_of(send, last_seq + 1));
        self.store_new(message.clone())?;
        let location = keys::message_id_value(&message.conversation_id, message.seq, offset);
        self.ids.insert(message.id.clone(), location);
        self.after_send(offset, message, None)
    }

    /// What became of a send whose record may have been applied before (`None`: it was not):
    /// completed if the interrupted run stored it at this offset, skipped if its id is stored
    /// from another record.
    fn replayed_send(&mut self, offset: u64, send: &SendMessage) -> Result<Option<bool>> {
        let Some(raw) = self.location_of(&send.id)? else {
            return Ok(None);
        };
        let (conversation, seq, source) = keys::decode_message_id(&raw)?;
        if source == Some(offset) && conversation == send.conversation_id {
            return self.complete_send(offset, send, seq).map(Some);
        }
        tracing::debug!(id = %send.id, "send already stored; skipped");
        Ok(Some(false))
    }

    /// A send the interrupted run stored at `seq`: stored again at that seq if its message was
    /// lost with the memory (it was not in a chunk yet), then the writes after the index.
    fn complete_send(&mut self, offset: u64, send: &SendMessage, seq: u64) -> Result<bool> {
        let original = Arc::new(message_of(send, seq));
        tracing::info!(id = %send.id, seq, "completing a send interrupted by a crash");
        // Later commands of the interrupted run may have edited or deleted it already.
        match self.find(&send.conversation_id, seq)? {
            Some((current, _)) => self.after_send(offset, original, Some(Arc::new(current))),
            None => {
                self.store_new(original.clone())?;
                self.after_send(offset, original, None)
            }
        }
    }

    /// The writes after the index entry: client id, read state, event; `current` (the message
    /// as stored now, when a later command of an interrupted run changed it) or else `message`
    /// becomes the activity if newer.
    fn after_send(
        &mut self,
        offset: u64,
        message: Arc<Message>,
        current: Option<Arc<Message>>,
    ) -> Result<bool> {
        let t = self.trees;
        if let Some(c) = &message.client_message_id {
            let key = keys::client_id(&message.sender_id, &message.conversation_id, c);
            let value = keys::client_send_value(&message.id, self.partition, offset);
            self.write(&t.client_ids, &key, &value)?;
        }
        self.move_read(&message.sender_id, &message.conversation_id, message.seq)?;
        self.advance(current.as_ref().unwrap_or(&message), false);
        self.event(offset, EventType::MessageSent, message)?;
        self.out.stored += 1;
        Ok(true)
    }

    /// Stores a new message: among the unwritten ones (written with its conversation's others
    /// as one chunk by the next checkpoint) if its conversation is busy, that is if a message
    /// of it is unwritten or was stored since the last checkpoint, or it stored two or more
    /// between the last two checkpoints; else as a record of its own, now. A quiet
    /// conversation's message would be a chunk of one anyway, and hundreds of those written at
    /// once by a checkpoint held the cores long enough to delay deliveries.
    fn store_new(&mut self, message: Arc<Message>) -> Result<()> {
        let conversation = &message.conversation_id;
        let busy = self.written_alone.contains(conversation)
            || self.staged_of(conversation)
            || self.store.unwritten().is_busy(conversation);
        if busy {
            self.stage(message);
            return Ok(());
        }
        let key = keys::message(conversation, message.seq);
        let record = encode_chunk(std::slice::from_ref(&message));
        let t = self.trees;
        self.write(&t.messages, &key, &record)?;
        self.written_alone.insert(conversation.clone());
        Ok(())
    }

    /// Whether this batch holds an unwritten message of `conversation`.
    fn staged_of(&self, conversation: &str) -> bool {
        let from = (conversation.to_owned(), 0);
        self.staged
            .range(from..)
            .next()
            .is_some_and(|((c, _), _)| c == conversation)
    }

    /// Holds a message this batch stored or changed that is not on disk: it joins the
    /// unwritten ones once the batch is done.
    fn stage(&mut self, message: Arc<Message>) {
        let key = (message.conversation_id.clone(), message.seq);
        let json = encode_chunk(std::slice::from_ref(&message));
        self.staged.insert(key, (message, json));
    }

    /// Where message `id` is as this batch sees it (a location, see [`keys::message_id_value`]).
    fn location_of(&self, id: &str) -> Result<Option<Vec<u8>>> {
        match self.ids.get(id) {
            Some(location) => Ok(Some(location.clone())),
            None => self.store.location_of(id),
        }
    }

    /// The message at `seq` of a conversation as this batch sees it, and where it is.
    fn find(&self, conversation: &str, seq: u64) -> Result<Option<(Message, Place)>> {
        let staged = self
            .staged
            .get(&(conversation.to_owned(), seq))
            .map(|(message, _)| message.clone());
        let unwritten = staged.or_else(|| self.store.unwritten().get(conversation, seq));
        if let Some(message) = unwritten {
            return Ok(Some((Message::clone(&message), Place::Unwritten)));
        }
        let Some((key, messages)) = self.store.chunk_at(conversation, seq)? else {
            return Ok(None);
        };
        let Some(message) = messages.iter().find(|m| m.seq == seq).cloned() else {
            return Ok(None);
        };
        Ok(Some((message, Place::Chunk { key, messages })))
    }

    /// The stored message `id` of `conversation` if `sender` sent it and it is not deleted,
    /// and where it is.
    ///
    /// A deleted one is not returned, but it refreshes its conversation's last message if it is
    /// it: a replayed delete finds the message deleted on disk (its chunk was rewritten) while
    /// the activity that a crash took back to the last checkpoint still shows the content.
    fn own_message(
        &mut self,
        id: &str,
        conversation: &str,
        sender: &str,
    ) -> Result<Option<(Message, Place)>> {
        let Some(raw) = self.location_of(id)? else {
            return Ok(None);
        };
        let (stored_in, seq, _) = keys::decode_message_id(&raw)?;
        if stored_in != conversation {
            return Ok(None);
        }
        let found = self.find(&stored_in, seq)?;
        match found {
            Some((message, _)) if message.deleted => {
                self.advance(&Arc::new(message), true);
                Ok(None)
            }
            found => Ok(found.filter(|(message, _)| message.sender_id == sender)),
        }
    }

    fn edit(&mut self, offset: u64, edit: &EditMessage) -> Result<bool> {
        let Some((mut message, place)) =
            self.own_message(&edit.message_id, &edit.conversation_id, &edit.sender_id)?
        else {
            tracing::warn!(id = %edit.message_id, sender = %edit.sender_id, "edit of an unknown, deleted or someone else's message; skipped");
            return Ok(false);
        };
        message.content = edit.content.clone();
        message.edited_at = Some(edit.at.clone());
        self.rewrite(offset, EventType::MessageUpdated, message, place)?;
        Ok(true)
    }

    fn delete(&mut self, offset: u64, delete: &DeleteMessage) -> Result<bool> {
        let Some((mut message, place)) = self.own_message(
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
        self.rewrite(offset, EventType::MessageDeleted, message, place)?;
        Ok(true)
    }

    /// The event first, then the changed message in place (same seq): staged if it is not on
    /// disk yet, else its chunk rewritten; refreshes `lastMessage` if it is it.
    fn rewrite(
        &mut self,
        offset: u64,
        event_type: EventType,
        message: Message,
        place: Place,
    ) -> Result<()> {
        let message = Arc::new(message);
        self.event(offset, event_type, message.clone())?;
        match place {
            Place::Unwritten => self.stage(message.clone()),
            Place::Chunk { key, mut messages } => {
                for stored in messages.iter_mut().filter(|m| m.seq == message.seq) {
                    *stored = Message::clone(&message);
                }
                let t = self.trees;
                self.write(&t.messages, &key, &encode_chunk(&messages))?;
            }
        }
        self.advance(&message, true);
        Ok(())
    }

    fn read(&mut self, read: &MarkRead) -> Result<bool> {
        let Some(last_seq) = self.last_seq(&read.conversation_id) else {
            return Ok(false);
        };
        if !self
            .store
            .is_participant(&read.conversation_id, &read.user_id)
        {
            tracing::warn!(conversation = %read.conversation_id, user = %read.user_id, "read mark by a non-participant; skipped");
            return Ok(false);
        }
        let seq = read.seq.min(last_seq);
        let moved = self.move_read(&read.user_id, &read.conversation_id, seq)?;
        if moved {
            self.out.changes.push(Change::Read {
                conversation: read.conversation_id.clone(),
                user: read.user_id.clone(),
                seq,
            });
        }
        Ok(moved)
    }

    /// A conversation command: `decide` against the conversation as the log's order left it
    /// (`None`: unchanged), then its membership record, the view, the live change and the
    /// outcome. A refusal changes nothing and is only an outcome; a replay that finds the
    /// change made decides "unchanged" (or, for a create, a conflict nobody waits for).
    fn membership(
        &mut self,
        offset: u64,
        id: &str,
        removed: Option<&str>,
        decide: impl FnOnce(Option<&Conversation>) -> Result<Option<Conversation>>,
    ) -> Result<bool> {
        let current = self.store.conversation(id);
        let changed = match decide(current.as_ref()) {
            Ok(Some(changed)) => changed,
            Ok(None) => {
                let unchanged = current.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
                self.out.outcomes.push((offset, Ok(unchanged)));
                return Ok(true);
            }
            Err(refused) => {
                tracing::debug!(conversation = id, offset, error = %refused, "conversation command refused");
                self.out.outcomes.push((offset, Err(refused)));
                return Ok(false);
            }
        };
        let t = self.trees;
        self.write(
            &t.conversations,
            id.as_bytes(),
            &Membership::of(&changed).encode(),
        )?;
        // A send earlier in this batch may have found no conversation yet.
        self.activity.remove(id);
        let now = self.store.show_membership(&changed);
        // A creation is not announced (the creator has its 201; the others learn of it from
        // their conversation list or its first message): only changes to an existing one.
        if current.is_some() {
            self.out.changes.push(Change::Conversation {
                conversation: Arc::new(now.clone()),
                removed: removed.map(str::to_owned),
            });
        }
        self.out.outcomes.push((offset, Ok(now)));
        Ok(true)
    }

    /// Moves a user's read state up to `seq` (never down); true if it moved.
    fn move_read(&mut self, user: &str, conversation: &str, seq: u64) -> Result<bool> {
        let key = (user.to_owned(), conversation.to_owned());
        let current = match self.reads.get(&key) {
            Some(seq) => *seq,
            None => self.store.view().last_read(user, conversation),
        };
        if seq <= current {
            self.reads.insert(key, current);
            return Ok(false);
        }
        // Handed to the view once per (user, conversation): a sender's read state moves with
        // each of its messages, and a busy sender has several in one batch.
        if !self.moved_reads.contains(&key) {
            self.moved_reads.push(key.clone());
        }
        self.reads.insert(key, seq);
        Ok(true)
    }

    /// Adds an event to the batch's; an edit or delete event is also written to the outbox
    /// (see the module doc).
    fn event(&mut self, offset: u64, event_type: EventType, message: Arc<Message>) -> Result<()> {
        // A record's events are pushed together, so its earlier ones are the last pushed.
        let index = self
            .out
            .events
            .iter()
            .rev()
            .take_while(|e| e.source_offset == offset)
            .count() as u32;
        let entry = OutboxEntry {
            partition: self.partition,
            source_offset: offset,
            index,
            conversation_id: message.conversation_id.clone(),
            payload: MessageEvent::encode_new(event_type, &message),
        };
        self.out.changes.push(Change::Message {
            event_type,
            message,
        });
        if event_type != EventType::MessageSent {
            let t = self.trees;
            self.write(&t.outbox, &entry.key(), &entry.value())?;
        }
        self.out.events.push(entry);
        Ok(())
    }

    /// Hands back what the batch did: the read states it moved and the conversations whose
    /// activity changed, for the view (the checkpoint writes them, see the module doc).
    fn finish(mut self) -> AppliedBatch {
        for (user, conversation) in std::mem::take(&mut self.moved_reads) {
            let seq = self.reads[&(user.clone(), conversation.clone())];
            self.out.reads.push((user, conversation, seq));
        }
        for id in std::mem::take(&mut self.dirty) {
            if let Some(Some(activity)) = self.activity.remove(&id) {
                self.out.activities.push((id, activity));
            }
        }
        self.out.staged = std::mem::take(&mut self.staged).into_values().collect();
        self.out.written_alone = std::mem::take(&mut self.written_alone);
        self.out.ids = std::mem::take(&mut self.ids).into_iter().collect();
        self.out
    }
}

/// Where a stored message is.
enum Place {
    /// Not on disk yet: this batch's, or among the unwritten ones.
    Unwritten,
    /// In the chunk record `key` on disk, which holds `messages`.
    Chunk {
        key: sled::IVec,
        messages: Vec<Message>,
    },
}

fn message_of(send: &SendMessage, seq: u64) -> Message {
    Message {
        id: send.id.clone(),
        conversation_id: send.conversation_id.clone(),
        seq,
        sender_id: send.sender_id.clone(),
        sender_name: send.sender_name.clone(),
        content: send.content.clone(),
        client_message_id: send.client_message_id.clone(),
        reply_to: send.reply_to.clone(),
        mentions: send.mentions.clone(),
        sent_at: send.sent_at.clone(),
        edited_at: None,
        deleted: false,
        json: Default::default(),
    }
}

/// The test hook's count of a batch's or a checkpoint's writes: fails ("crashes") once none
/// is left.
pub(super) fn count_write(writes_left: &mut Option<usize>) -> Result<()> {
    if let Some(left) = writes_left {
        if *left == 0 {
            return Err(StoreError::Storage("simulated crash (test hook)".into()));
        }
        *left -= 1;
    }
    Ok(())
}
