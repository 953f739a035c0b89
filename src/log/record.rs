//! Records as producers hand them in and as consumers read them back.

use bincode::{Decode, Encode};

/// One header of a record: a name and opaque bytes, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Header value.
    pub value: Vec<u8>,
}

/// A record to append: optional key (decides the partition), headers and value bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub struct Record {
    /// Partitioning key; `None` spreads records round-robin.
    pub key: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// The payload.
    pub value: Vec<u8>,
}

impl Record {
    /// A record with only a value.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Record {
            key: None,
            headers: Vec::new(),
            value: value.into(),
        }
    }

    /// A record with a key and a value.
    pub fn keyed(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Record {
            key: Some(key.into()),
            headers: Vec::new(),
            value: value.into(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Bytes counted against the record size limit.
    pub fn size(&self) -> usize {
        payload_size(self.key.as_deref(), &self.headers, &self.value)
    }
}

/// A record read back from a partition, with its position and append time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Partition it was read from.
    pub partition: u32,
    /// Its offset in that partition.
    pub offset: u64,
    /// When the log appended it (milliseconds since the Unix epoch, never decreasing within a
    /// partition).
    pub timestamp_ms: i64,
    /// Partitioning key.
    pub key: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<Header>,
    /// The payload.
    pub value: Vec<u8>,
}

impl StoredRecord {
    /// Bytes of key, headers and value (what a read's byte budget counts).
    pub fn size(&self) -> usize {
        payload_size(self.key.as_deref(), &self.headers, &self.value)
    }
}

fn payload_size(key: Option<&[u8]>, headers: &[Header], value: &[u8]) -> usize {
    key.map_or(0, <[u8]>::len)
        + headers
            .iter()
            .map(|h| h.key.len() + h.value.len())
            .sum::<usize>()
        + value.len()
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Partition.
    pub partition: u32,
    /// Offset within the partition.
    pub offset: u64,
}
