//! The on-disk record batch: one storage-engine value holding consecutive records of one
//! partition, stored under its base offset (as Kafka stores batches).
//!
//! ```text
//! byte  0      format version (1)
//! bytes 1..5   CRC-32 (IEEE) of bytes 5.., little-endian
//! bytes 5..13  base offset, u64 big-endian (equal to the key it is stored under)
//! bytes 13..17 record count, u32 little-endian
//! bytes 17..25 append timestamp, i64 milliseconds, little-endian (one per batch)
//! bytes 25..33 base position, u64 little-endian: stored bytes of this partition before the batch
//! bytes 33..   bincode (standard configuration) of the records: key, headers, value
//! ```
//!
//! The header is fixed-size so retention and recovery read a batch's offsets, time and size
//! without decoding its records.

use super::error::{LogError, Result};
use super::record::{Record, StoredRecord};

const FORMAT_VERSION: u8 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 33;

/// The fixed part of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Number of records.
    pub count: u32,
    /// Append time of every record in the batch.
    pub timestamp_ms: i64,
    /// Bytes stored in the partition before this batch (for size-based retention).
    pub base_position: u64,
    /// Encoded length of the whole batch.
    pub len: u64,
}

impl BatchHeader {
    /// One past the last offset of the batch.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.count)
    }

    /// Bytes stored in the partition up to and including this batch.
    pub fn end_position(&self) -> u64 {
        self.base_position + self.len
    }
}

/// Encodes records as one batch.
pub fn encode(
    base_offset: u64,
    timestamp_ms: i64,
    base_position: u64,
    records: &[&Record],
) -> Vec<u8> {
    let mut buf =
        Vec::with_capacity(HEADER_LEN + records.iter().map(|r| r.size() + 8).sum::<usize>());
    buf.push(FORMAT_VERSION);
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&base_offset.to_be_bytes());
    buf.extend_from_slice(&(records.len() as u32).to_le_bytes());
    buf.extend_from_slice(&timestamp_ms.to_le_bytes());
    buf.extend_from_slice(&base_position.to_le_bytes());
    bincode::encode_into_std_write(records, &mut buf, bincode::config::standard())
        .expect("encoding into a Vec cannot fail");
    let crc = crc32fast::hash(&buf[5..]);
    buf[1..5].copy_from_slice(&crc.to_le_bytes());
    buf
}

/// Reads the header and verifies the checksum of the whole batch.
pub fn decode_header(bytes: &[u8]) -> Result<BatchHeader, String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "batch of {} bytes is shorter than its header",
            bytes.len()
        ));
    }
    if bytes[0] != FORMAT_VERSION {
        return Err(format!("unknown batch format version {}", bytes[0]));
    }
    let stored_crc = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[5..]) != stored_crc {
        return Err("checksum mismatch".into());
    }
    Ok(BatchHeader {
        base_offset: u64::from_be_bytes(bytes[5..13].try_into().expect("8 bytes")),
        count: u32::from_le_bytes(bytes[13..17].try_into().expect("4 bytes")),
        timestamp_ms: i64::from_le_bytes(bytes[17..25].try_into().expect("8 bytes")),
        base_position: u64::from_le_bytes(bytes[25..33].try_into().expect("8 bytes")),
        len: bytes.len() as u64,
    })
}

/// Decodes a whole batch into stored records of `partition`.
pub fn decode(bytes: &[u8], partition: u32) -> Result<(BatchHeader, Vec<StoredRecord>), String> {
    let header = decode_header(bytes)?;
    let (records, _): (Vec<Record>, usize) =
        bincode::decode_from_slice(&bytes[HEADER_LEN..], bincode::config::standard())
            .map_err(|e| format!("undecodable records: {e}"))?;
    if records.len() != header.count as usize {
        return Err(format!(
            "header says {} records, body has {}",
            header.count,
            records.len()
        ));
    }
    let stored = records
        .into_iter()
        .enumerate()
        .map(|(i, r)| StoredRecord {
            partition,
            offset: header.base_offset + i as u64,
            timestamp_ms: header.timestamp_ms,
            key: r.key,
            headers: r.headers,
            value: r.value,
        })
        .collect();
    Ok((header, stored))
}

/// Turns a decoding failure into a typed error naming its place.
pub fn corrupt(topic: &str, partition: u32, key: &[u8], reason: String) -> LogError {
    let at = key.try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX);
    LogError::Corrupt {
        location: format!("{topic}/{partition}@{at}"),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_records_and_header() {
        let a = Record::keyed("k", "hello").with_header("h", "v");
        let b = Record::new(vec![0u8, 255, 7]);
        let bytes = encode(42, 1_700_000_000_000, 1000, &[&a, &b]);
        let (header, records) = decode(&bytes, 3).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.count, 2);
        assert_eq!(header.end_offset(), 44);
        assert_eq!(header.end_position(), 1000 + bytes.len() as u64);
        assert_eq!(records[1].offset, 43);
        assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(records[0].headers, a.headers);
        assert_eq!(records[1].value, b.value);
        assert!(records
            .iter()
            .all(|r| r.partition == 3 && r.timestamp_ms == 1_700_000_000_000));
    }

    #[test]
    fn detects_any_flipped_byte() {
        let bytes = encode(0, 1, 0, &[&Record::new("payload")]);
        for i in 1..bytes.len() {
            let mut broken = bytes.clone();
            broken[i] ^= 0x40;
            assert!(
                decode(&broken, 0).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        assert!(decode(&bytes[..10], 0).is_err());
    }

    #[test]
    fn overhead_per_small_record_is_a_few_bytes() {
        let value = vec![7u8; 200];
        let record = Record::new(value);
        let records: Vec<&Record> = std::iter::repeat_n(&record, 100).collect();
        let bytes = encode(0, 0, 0, &records);
        let per_record = (bytes.len() - HEADER_LEN) as f64 / 100.0;
        assert!(per_record < 205.0, "{per_record} bytes per 200-byte record");
    }
}
