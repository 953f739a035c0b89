//! Reads of stored messages: history pages, single messages and the idempotency index.
//!
//! These read sled directly (messages are not in memory). They do not check participation: the
//! caller checks [`Store::is_participant`] first and answers `NotFound` like these do.

use std::ops::Bound;

use super::error::{Result, StoreError};
use super::keys;
use super::model::{HistoryPage, Message};
use super::{Store, MAX_HISTORY_PAGE};

pub(crate) fn decode_message(key: &[u8], raw: &[u8]) -> Result<Message> {
    serde_json::from_slice(raw)
        .map_err(|e| StoreError::corrupt(format!("messages/{}", String::from_utf8_lossy(key)), e))
}

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
        let low = match after {
            Some(s) if s == u64::MAX => return Ok(empty_page()),
            Some(s) => Bound::Included(keys::message(conversation, s + 1)),
            None => Bound::Included(keys::message(conversation, 0)),
        };
        let high = match before {
            Some(s) => Bound::Excluded(keys::message(conversation, s)),
            None => Bound::Included(keys::message(conversation, u64::MAX)),
        };
        if before == Some(0)
            || after.is_some_and(|a| before.is_some_and(|b| a.saturating_add(1) >= b))
        {
            return Ok(empty_page());
        }
        let range = self.trees().messages.range::<Vec<u8>, _>((low, high));
        let mut items = Vec::with_capacity(limit + 1);
        let fetched: Vec<_> = if after.is_some() {
            range.take(limit + 1).collect()
        } else {
            range.rev().take(limit + 1).collect()
        };
        for item in fetched {
            let (key, value) = item?;
            items.push(decode_message(&key, &value)?);
        }
        let has_more = items.len() > limit;
        items.truncate(limit);
        if after.is_none() {
            items.reverse();
        }
        Ok(HistoryPage { items, has_more })
    }

    /// One message of a conversation by id; `NotFound` if there is none (in that conversation).
    pub(crate) fn message(&self, conversation: &str, message_id: &str) -> Result<Message> {
        let not_found = || StoreError::NotFound(format!("message {message_id:?}"));
        let Some(location) = self.trees().message_ids.get(message_id.as_bytes())? else {
            return Err(not_found());
        };
        let (stored_in, seq) = keys::decode_location(&location)?;
        if stored_in != conversation {
            return Err(not_found());
        }
        self.message_at(conversation, seq)?.ok_or_else(not_found)
    }

    /// The message at `seq` of a conversation, if stored.
    pub(crate) fn message_at(&self, conversation: &str, seq: u64) -> Result<Option<Message>> {
        let key = keys::message(conversation, seq);
        self.trees()
            .messages
            .get(&key)?
            .map(|raw| decode_message(&key, &raw))
            .transpose()
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

fn empty_page() -> HistoryPage {
    HistoryPage {
        items: Vec::new(),
        has_more: false,
    }
}
