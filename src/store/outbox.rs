//! The outbox: edit and delete events written by the store writer's batch before the change
//! they describe, so that a replay which finds the change applied still has its event (send
//! events need no outbox: a replay makes them again from the command).
//!
//! Key: partition (u32 BE) ++ source offset (u64 BE) ++ index (u32 BE); value: conversation id
//! ++ 0x00 ++ the event's JSON. The writer merges a batch's entries into its events
//! ([`Store::batch_events`]), relays them, commits, then deletes the entries of the batch's
//! range. After a crash, the relay deletes the entries the topic already holds. Deletes are
//! single removes, not a `sled::Batch`: applying a batch takes sled's global write lock (see
//! `apply`), and a deleted entry that a crash brings back is skipped by the relay anyway.

use super::error::{Result, StoreError};
use super::keys;
use super::Store;

/// One event of a batch awaiting relay (in the outbox or only in memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxEntry {
    /// Partition of the source record (and of the event).
    pub partition: u32,
    /// Offset of the source record in `messages`.
    pub source_offset: u64,
    /// Position among the events of that record.
    pub index: u32,
    /// The event's key: its conversation id.
    pub conversation_id: String,
    /// The event as JSON (a [`MessageEvent`](super::MessageEvent)).
    pub payload: Vec<u8>,
}

impl OutboxEntry {
    pub(crate) fn key(&self) -> Vec<u8> {
        keys::outbox(self.partition, self.source_offset, self.index)
    }

    pub(crate) fn value(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(self.conversation_id.len() + 1 + self.payload.len());
        value.extend_from_slice(self.conversation_id.as_bytes());
        value.push(0);
        value.extend_from_slice(&self.payload);
        value
    }

    fn decode(key: &[u8], value: &[u8]) -> Result<Self> {
        let (partition, source_offset, index) = keys::decode_outbox(key)?;
        let bad = || StoreError::corrupt("outbox", "malformed value");
        let split = value.iter().position(|b| *b == 0).ok_or_else(bad)?;
        let conversation_id = std::str::from_utf8(&value[..split]).map_err(|_| bad())?;
        Ok(OutboxEntry {
            partition,
            source_offset,
            index,
            conversation_id: conversation_id.to_owned(),
            payload: value[split + 1..].to_vec(),
        })
    }
}

fn decode_all(
    entries: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
) -> Result<Vec<OutboxEntry>> {
    entries
        .map(|item| {
            let (key, value) = item?;
            OutboxEntry::decode(&key, &value)
        })
        .collect()
}

impl Store {
    /// Events of a partition awaiting relay, in source order (at most `limit`).
    #[cfg(test)]
    pub(crate) fn pending_events(&self, partition: u32, limit: usize) -> Result<Vec<OutboxEntry>> {
        decode_all(
            self.trees()
                .outbox
                .scan_prefix(partition.to_be_bytes())
                .take(limit),
        )
    }

    /// Events of a partition from source offsets in `range`, in source order.
    pub(crate) fn events_between(
        &self,
        partition: u32,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<OutboxEntry>> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let start = keys::outbox(partition, range.start, 0);
        let end = keys::outbox(partition, range.end, 0);
        decode_all(self.trees().outbox.range(start..end))
    }

    /// Forgets a partition's events from source offsets in `range` (relayed and committed);
    /// returns how many.
    pub(crate) fn remove_events_between(
        &self,
        partition: u32,
        range: std::ops::Range<u64>,
    ) -> Result<usize> {
        if range.is_empty() {
            return Ok(0);
        }
        let start = keys::outbox(partition, range.start, 0);
        let end = keys::outbox(partition, range.end, 0);
        self.remove_keys(start..end)
    }

    /// Forgets a partition's events from source offsets up to and including `source_offset`
    /// (the relay found them in `messages.sent` already); returns how many.
    pub(crate) fn remove_events_through(
        &self,
        partition: u32,
        source_offset: u64,
    ) -> Result<usize> {
        let start = keys::outbox(partition, 0, 0);
        let end = keys::outbox(partition, source_offset, u32::MAX);
        self.remove_keys(start..=end)
    }

    /// Removes the outbox entries whose keys are in `range`; returns how many.
    fn remove_keys(&self, range: impl std::ops::RangeBounds<Vec<u8>>) -> Result<usize> {
        let outbox = &self.trees().outbox;
        let keys: Vec<sled::IVec> = outbox
            .range(range)
            .keys()
            .collect::<std::result::Result<_, _>>()?;
        for key in &keys {
            outbox.remove(key)?;
        }
        Ok(keys.len())
    }

    /// Writes an outbox entry outside a batch: for tests that simulate a crash between the
    /// commit of a batch and the relay of its events.
    #[cfg(test)]
    pub(crate) fn insert_pending_event_for_test(&self, entry: &OutboxEntry) -> Result<()> {
        self.trees().outbox.insert(entry.key(), entry.value())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// An entry's key and value decode back to the entry.
        #[test]
        fn entries_round_trip(
            partition in any::<u32>(),
            source_offset in any::<u64>(),
            index in any::<u32>(),
            conversation_id in "[^\\x00]{0,24}",
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let entry = OutboxEntry { partition, source_offset, index, conversation_id, payload };
            prop_assert_eq!(OutboxEntry::decode(&entry.key(), &entry.value()).unwrap(), entry);
        }

        /// Random keys and values are a typed corrupt error or an entry, never a panic.
        #[test]
        fn random_bytes_never_panic(
            key in proptest::collection::vec(any::<u8>(), 0..24),
            value in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            if let Err(e) = OutboxEntry::decode(&key, &value) {
                prop_assert!(matches!(e, StoreError::Corrupt { .. }), "{}", e);
            }
        }
    }
}
