//! Reads of stored messages: history pages, single messages and the idempotency index.
//!
//! A conversation's messages are its chunks on disk (tree `messages`, one record per
//! conversation per checkpoint) followed by its unwritten tail in memory (see
//! [`unwritten`](super::unwritten)). A read copies the tail first and then reads the disk below
//! it: a checkpoint that writes the tail meanwhile leaves it in both places, and the copy wins.
//! These do not check participation: the caller checks [`Store::is_participant`] first and
//! answers `NotFound` like these do.

use std::sync::Arc;

use super::error::{Result, StoreError};
use super::keys;
use super::model::{HistoryPage, Message};
use super::unwritten::decode_chunk;
use super::{Store, MAX_HISTORY_PAGE};

impl Store {
    /// A page of a conversation's messages, ascending seq.
    ///
    /// - `after = Some(S)`: the oldest `limit` messages above S (`after = 0` starts at the
    ///   first); `has_more` = newer ones exist (below `before`, if given too).
    /// - otherwise: the newest `limit` messages below `before` (all, when `None`); `has_more` =
    ///   older ones exist.
    ///
    /// `limit` is 1..=[`MAX_HISTORY_PAGE`]; an unknown conversation is `NotFound`.
    pub(crate) fn history(
        &self,
        conversation: &str,
        before: Option<u64>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<HistoryPage> {
        if !(1..=MAX_HISTORY_PAGE).contains(&limit) {
            return Err(StoreError::invalid(
                "limit",
                format!("must be 1–{MAX_HISTORY_PAGE}"),
            ));
        }
        if self.conversation(conversation).is_none() {
            return Err(StoreError::NotFound(format!(
                "conversation {conversation:?}"
            )));
        }
        let seqs = SeqRange {
            low: after.map_or(0, |after| after.saturating_add(1)),
            high: before.unwrap_or(u64::MAX),
        };
        if after == Some(u64::MAX) || seqs.low >= seqs.high {
            return Ok(empty_page());
        }
        let mut items = if after.is_some() {
            self.oldest(conversation, seqs, limit + 1)?
        } else {
            self.newest(conversation, seqs, limit + 1)?
        };
        let has_more = items.len() > limit;
        items.truncate(limit);
        if after.is_none() {
            items.reverse();
        }
        Ok(HistoryPage { items, has_more })
    }

    /// Up to `count` messages of `seqs`, oldest first.
    fn oldest(&self, conversation: &str, seqs: SeqRange, count: usize) -> Result<Vec<Message>> {
        let tail = self.unwritten().tail(conversation);
        let disk_end = tail.as_ref().map_or(seqs.high, |t| t.first.min(seqs.high));
        let mut items = Vec::new();
        let messages = &self.trees().messages;
        // From the chunk holding the first seq wanted (it may start below it).
        let start = match self.chunk_key_at(conversation, seqs.low)? {
            Some(key) => key.to_vec(),
            None => keys::message(conversation, 0),
        };
        let mut chunks = messages
            .range(start..keys::message(conversation, disk_end))
            .peekable();
        while let Some(chunk) = chunks.next() {
            let (key, raw) = chunk?;
            let covered_until = match chunks.peek() {
                Some(Ok((next, _))) => keys::message_seq(next)?.min(disk_end),
                _ => disk_end,
            };
            for message in decode_chunk(&key, &raw)? {
                if (seqs.low..covered_until).contains(&message.seq) && items.len() < count {
                    items.push(message);
                }
            }
            if items.len() >= count {
                return Ok(items);
            }
        }
        for message in tail.iter().flat_map(|t| &t.messages) {
            if seqs.contains(message.seq) && items.len() < count {
                items.push(Message::clone(message));
            }
        }
        Ok(items)
    }

    /// Up to `count` messages of `seqs`, newest first.
    fn newest(&self, conversation: &str, seqs: SeqRange, count: usize) -> Result<Vec<Message>> {
        let tail = self.unwritten().tail(conversation);
        let mut items: Vec<Message> = tail
            .iter()
            .flat_map(|t| t.messages.iter().rev())
            .filter(|message| seqs.contains(message.seq))
            .take(count)
            .map(|message| Message::clone(message))
            .collect();
        let mut covered_until = tail.as_ref().map_or(seqs.high, |t| t.first.min(seqs.high));
        let chunks = self
            .trees()
            .messages
            .range(keys::message(conversation, 0)..keys::message(conversation, covered_until));
        for chunk in chunks.rev() {
            if items.len() >= count || covered_until <= seqs.low {
                break;
            }
            let (key, raw) = chunk?;
            let first = keys::message_seq(&key)?;
            let mut messages = decode_chunk(&key, &raw)?;
            messages.retain(|m| m.seq >= seqs.low && m.seq < covered_until);
            items.extend(messages.into_iter().rev().take(count - items.len()));
            covered_until = first;
        }
        Ok(items)
    }

    /// One message of a conversation by id; `NotFound` if there is none (in that conversation).
    pub(crate) fn message(&self, conversation: &str, message_id: &str) -> Result<Message> {
        let not_found = || StoreError::NotFound(format!("message {message_id:?}"));
        let Some(location) = self.location_of(message_id)? else {
            return Err(not_found());
        };
        let (stored_in, seq) = keys::decode_location(&location)?;
        if stored_in != conversation {
            return Err(not_found());
        }
        let found = self.message_at(conversation, seq)?.ok_or_else(not_found)?;
        Ok(Arc::unwrap_or_clone(found))
    }

    /// The message at `seq` of a conversation, if stored: unwritten, or in its chunk on disk.
    fn message_at(&self, conversation: &str, seq: u64) -> Result<Option<Arc<Message>>> {
        if let Some(message) = self.unwritten().get(conversation, seq) {
            return Ok(Some(message));
        }
        Ok(self
            .chunk_at(conversation, seq)?
            .and_then(|(_, messages)| messages.into_iter().find(|m| m.seq == seq))
            .map(Arc::new))
    }

    /// The chunk on disk that covers `seq` of a conversation (the last one starting at or below
    /// it): its key and messages.
    pub(super) fn chunk_at(
        &self,
        conversation: &str,
        seq: u64,
    ) -> Result<Option<(sled::IVec, Vec<Message>)>> {
        let Some(key) = self.chunk_key_at(conversation, seq)? else {
            return Ok(None);
        };
        let Some(raw) = self.trees().messages.get(&key)? else {
            return Ok(None);
        };
        let messages = decode_chunk(&key, &raw)?;
        Ok(Some((key, messages)))
    }

    fn chunk_key_at(&self, conversation: &str, seq: u64) -> Result<Option<sled::IVec>> {
        let range = keys::message_prefix(conversation)..=keys::message(conversation, seq);
        match self.trees().messages.range(range).next_back() {
            Some(found) => Ok(Some(found?.0)),
            None => Ok(None),
        }
    }

    /// The id of the message `sender` stored with `client_message_id` in the conversation, if
    /// any: the idempotency index (a retried send answers this id).
    #[cfg(test)]
    pub(crate) fn message_id_for_client_id(
        &self,
        sender: &str,
        conversation: &str,
        client_message_id: &str,
    ) -> Result<Option<String>> {
        Ok(self
            .client_send(sender, conversation, client_message_id)?
            .map(|send| send.message_id))
    }

    /// What the idempotency index holds for (sender, conversation, clientMessageId): the
    /// message id and where its send record sits in `messages`, so a retry answers the first
    /// acknowledgement exactly.
    pub(crate) fn client_send(
        &self,
        sender: &str,
        conversation: &str,
        client_message_id: &str,
    ) -> Result<Option<ClientSend>> {
        let key = keys::client_id(sender, conversation, client_message_id);
        self.trees()
            .client_ids
            .get(key)?
            .map(|raw| keys::decode_client_send(&raw))
            .transpose()
    }
}

/// An entry of the idempotency index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientSend {
    /// The stored message's id.
    pub message_id: String,
    /// Partition and offset of the send record in `messages` (absent in entries written before
    /// the index recorded them).
    pub source: Option<(u32, u64)>,
}

/// Seqs `low..high`.
#[derive(Debug, Clone, Copy)]
struct SeqRange {
    low: u64,
    high: u64,
}

impl SeqRange {
    fn contains(self, seq: u64) -> bool {
        (self.low..self.high).contains(&seq)
    }
}

fn empty_page() -> HistoryPage {
    HistoryPage {
        items: Vec::new(),
        has_more: false,
    }
}
