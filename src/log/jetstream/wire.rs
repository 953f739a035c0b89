//! How a record travels in a JetStream message: its key, headers and value with the appending
//! node's clock, encoded with bincode as the message payload.
//!
//! Owns only the encoding; offsets come from the stream's sequence, not from the payload.

use bincode::{Decode, Encode};

use crate::log::{LogError, Record, StoredRecord};

/// A record as stored in a stream message.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(super) struct WireRecord {
    /// The appending node's clock (milliseconds since the epoch); the replica keeps stored
    /// timestamps non-decreasing per partition.
    pub timestamp_ms: i64,
    record: Record,
}

impl WireRecord {
    pub(super) fn new(record: Record, timestamp_ms: i64) -> WireRecord {
        WireRecord {
            timestamp_ms,
            record,
        }
    }

    /// What the replica keeps at the offset of a message it cannot decode.
    pub(super) fn undecodable() -> WireRecord {
        WireRecord::new(Record::default(), 0)
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        bincode::encode_to_vec(self, bincode::config::standard())
            .expect("encoding into a Vec cannot fail")
    }

    pub(super) fn decode(
        bytes: &[u8],
        location: impl FnOnce() -> String,
    ) -> Result<Self, LogError> {
        bincode::decode_from_slice(bytes, bincode::config::standard())
            .map(|(wire, _)| wire)
            .map_err(|e| LogError::Corrupt {
                location: location(),
                reason: e.to_string(),
            })
    }

    pub(super) fn into_stored(
        self,
        partition: u32,
        offset: u64,
        timestamp_ms: i64,
    ) -> StoredRecord {
        StoredRecord {
            partition,
            offset,
            timestamp_ms,
            key: self.record.key,
            headers: self.record.headers,
            value: self.record.value,
        }
    }
}
