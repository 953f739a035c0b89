//! Applying a conversation's deletion in the store writer's batch: its messages go (chunks on
//! disk and unwritten ones), with their id and client-id index entries, then its membership
//! record, last. Each removal is idempotent
//! and the membership record is what makes the conversation exist, so a crash part-way leaves it
//! in the view at the next start and the replayed command deletes the rest. Its activity and
//! the read states on it leave the view, and the store's checkpoint removes their records (an
//! open removes any a crash left without a conversation).
//!
//! The events already in `messages.sent` and the outbox stay: they are the history other
//! services consumed. This module does not decide who may delete (`conversations` does).

use super::super::command::DeleteConversation;
use super::super::conversations::decide_delete;
use super::super::error::Result;
use super::super::keys;
use super::super::model::Message;
use super::super::unwritten::decode_chunk;
use super::{count_write, Batch, Change};

impl Batch<'_> {
    /// A `DeleteConversation` command: decided again (a refusal is only an outcome), then the
    /// conversation's records removed, the view told and the participants' sessions told.
    pub(super) fn delete_conversation(
        &mut self,
        offset: u64,
        command: &DeleteConversation,
    ) -> Result<bool> {
        let id = command.conversation_id.as_str();
        let current = self.store.conversation(id);
        let deleted = match decide_delete(current.as_ref(), command) {
            Ok(deleted) => deleted,
            Err(refused) => {
                tracing::debug!(conversation = id, offset, error = %refused, "conversation deletion refused");
                self.out.outcomes.push((offset, Err(refused)));
                return Ok(false);
            }
        };
        self.remove_messages(id)?;
        let t = self.trees;
        self.remove(&t.conversations, id.as_bytes())?;
        self.forget_in_batch(id);
        self.store.forget_conversation(id);
        tracing::info!(conversation = id, actor = %command.actor, "conversation deleted");
        self.out.changes.push(Change::ConversationDeleted {
            conversation_id: id.to_owned(),
            participants: deleted.participants.clone(),
        });
        self.out.outcomes.push((offset, Ok(deleted)));
        Ok(true)
    }

    /// Removes every message of the conversation with its `message_ids` and `client_ids`
    /// entries: its chunks on disk, its unwritten ones and the ones this batch staged, and the
    /// index entries still pending in memory or in this batch. The chunks go last: a replay
    /// after a crash part-way finds the indexes to remove from them.
    fn remove_messages(&mut self, id: &str) -> Result<()> {
        let t = self.trees;
        let store = self.store;
        // A checkpoint writing this conversation's chunk or index entries now would bring them
        // back after.
        let _chunks = store.inner.chunk_writes.lock();
        let mut chunks = Vec::new();
        let mut indexed = Indexed::default();
        for item in t.messages.scan_prefix(keys::message_prefix(id)) {
            let (key, raw) = item?;
            for message in decode_chunk(&key, &raw)? {
                indexed.add(&message);
            }
            chunks.push(key);
        }
        for message in self.store.unwritten_mut().remove(id) {
            indexed.add(&message);
        }
        self.staged.retain(|(conversation, _), (message, _)| {
            let keep = conversation != id;
            if !keep {
                indexed.add(message);
            }
            keep
        });
        self.store.pending_ids_mut().remove_conversation(id);
        let prefix = keys::message_prefix(id);
        self.ids
            .retain(|_, location| !location.starts_with(&prefix));
        let writes_left = &mut self.writes_left;
        let ids = indexed.ids.iter().map(String::as_str);
        t.message_ids.remove(ids, || count_write(writes_left))?;
        for key in &indexed.client_ids {
            self.remove(&t.client_ids, key)?;
        }
        for key in chunks {
            self.remove(&t.messages, &key)?;
        }
        Ok(())
    }

    /// Drops what this batch holds of the conversation, so that [`Batch::finish`] hands no
    /// activity or read state of it to the view.
    fn forget_in_batch(&mut self, id: &str) {
        self.activity.insert(id.to_owned(), None);
        self.dirty.retain(|dirty| dirty != id);
        self.moved_reads
            .retain(|(_, conversation)| conversation != id);
        self.reads.retain(|(_, conversation), _| conversation != id);
    }

    /// One removal, counted by the test hook like a write.
    fn remove(&mut self, tree: &sled::Tree, key: &[u8]) -> Result<()> {
        count_write(&mut self.writes_left)?;
        tree.remove(key)?;
        Ok(())
    }
}

/// The index keys of a deleted conversation's messages: their ids, and their `client_ids` keys
/// (only what the removal needs, not the messages, which may be many).
#[derive(Default)]
struct Indexed {
    ids: Vec<String>,
    client_ids: Vec<Vec<u8>>,
}

impl Indexed {
    fn add(&mut self, message: &Message) {
        self.ids.push(message.id.clone());
        if let Some(client_id) = &message.client_message_id {
            let key = keys::client_id(&message.sender_id, &message.conversation_id, client_id);
            self.client_ids.push(key);
        }
    }
}
