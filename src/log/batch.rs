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
//!
//! Decoding trusts nothing it reads: the checksum, the header's arithmetic (offsets and
//! positions that would overflow) and the record count are checked, and the records are decoded
//! under a bincode memory limit proportional to the batch's length (see [`claim_limit`]), so a
//! length prefix that claims gigabytes is an error, not an allocation. Every failure is a
//! `String` reason that [`corrupt`] turns into a typed [`LogError::Corrupt`].

use super::error::{LogError, Result};
use super::record::{Record, StoredRecord};

const FORMAT_VERSION: u8 = 1;
/// Size of the fixed header.
pub(super) const HEADER_LEN: usize = 33;

/// The fixed part of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
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
    pub(crate) fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.count)
    }

    /// Bytes stored in the partition up to and including this batch.
    pub(crate) fn end_position(&self) -> u64 {
        self.base_position + self.len
    }
}

/// Encodes records as one batch.
pub(super) fn encode(
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
pub(super) fn decode_header(bytes: &[u8]) -> Result<BatchHeader, String> {
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
    let header = BatchHeader {
        base_offset: u64::from_be_bytes(bytes[5..13].try_into().expect("8 bytes")),
        count: u32::from_le_bytes(bytes[13..17].try_into().expect("4 bytes")),
        timestamp_ms: i64::from_le_bytes(bytes[17..25].try_into().expect("8 bytes")),
        base_position: u64::from_le_bytes(bytes[25..33].try_into().expect("8 bytes")),
        len: bytes.len() as u64,
    };
    check_header_arithmetic(&header)?;
    Ok(header)
}

/// `end_offset` and `end_position` must not overflow: a checksummed but wrong header (a bug, or
/// bytes written by something else) would otherwise wrap offsets around.
fn check_header_arithmetic(header: &BatchHeader) -> Result<(), String> {
    if header
        .base_offset
        .checked_add(u64::from(header.count))
        .is_none()
    {
        return Err(format!(
            "base offset {} plus {} records overflows",
            header.base_offset, header.count
        ));
    }
    if header.base_position.checked_add(header.len).is_none() {
        return Err(format!(
            "base position {} plus {} bytes overflows",
            header.base_position, header.len
        ));
    }
    Ok(())
}

/// Decodes a whole batch into stored records of `partition`.
pub(super) fn decode(
    bytes: &[u8],
    partition: u32,
) -> Result<(BatchHeader, Vec<StoredRecord>), String> {
    let header = decode_header(bytes)?;
    let records = decode_records(&bytes[HEADER_LEN..])?;
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

/// Bytes of memory bincode may claim per byte of encoded records. Claims are counted the way
/// bincode counts them: every length prefix claims 8 bytes and every container claims
/// `len * size_of::<T>()` up front, so an intact batch needs at most 32 per byte (a run of
/// empty headers: 2 bytes each, claiming 8 + 8 for their lengths and 48 for their slot).
/// Twice that leaves room and still bounds what a corrupt length prefix can allocate.
const CLAIM_PER_BYTE: usize = 64;
/// Smallest claim limit: small batches decode under one small fixed limit.
const MIN_CLAIM_LIMIT: usize = 4 << 20;

/// The bincode claim limit for `len` bytes of encoded records: the power of two at or above
/// `len * CLAIM_PER_BYTE` (at least 4 MiB), or `None` beyond 16 GiB (records of more than
/// 256 MiB in one batch, which the log never writes).
fn claim_limit(len: usize) -> Option<usize> {
    len.checked_mul(CLAIM_PER_BYTE)
        .map(|needed| needed.max(MIN_CLAIM_LIMIT))
        .and_then(usize::checked_next_power_of_two)
        .filter(|limit| *limit <= 16 << 30)
}

/// bincode takes its limit as a const generic: one instantiation per power of two.
macro_rules! decode_under_claim_limit {
    ($body:expr, $limit:expr, $($shift:literal)+) => {
        match $limit {
            $(limit if limit == 1usize << $shift => decode_limited::<{ 1usize << $shift }>($body),)+
            limit => Err(format!("no decoder for a claim limit of {limit} bytes")),
        }
    };
}

/// Decodes the records after the header: all of `body`, under [`claim_limit`].
fn decode_records(body: &[u8]) -> Result<Vec<Record>, String> {
    let limit = claim_limit(body.len())
        .ok_or_else(|| format!("{} bytes of records are too many to decode", body.len()))?;
    decode_under_claim_limit!(body, limit, 22 23 24 25 26 27 28 29 30 31 32 33 34)
}

fn decode_limited<const LIMIT: usize>(body: &[u8]) -> Result<Vec<Record>, String> {
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (records, used): (Vec<Record>, usize) = bincode::decode_from_slice(body, config)
        .map_err(|e| format!("undecodable records: {e}"))?;
    if used != body.len() {
        return Err(format!(
            "{} bytes after the records",
            body.len().saturating_sub(used)
        ));
    }
    Ok(records)
}

/// Turns a decoding failure into a typed error naming its place.
pub(super) fn corrupt(topic: &str, partition: u32, key: &[u8], reason: String) -> LogError {
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

    /// A batch's bytes with the checksum recomputed, so a mutation reaches the record decoder
    /// instead of stopping at the checksum.
    fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
        if bytes.len() >= HEADER_LEN {
            let crc = crc32fast::hash(&bytes[5..]);
            bytes[1..5].copy_from_slice(&crc.to_le_bytes());
        }
        bytes
    }

    /// A header for `count` records followed by `body` as the encoded records, checksummed.
    fn batch_with_body(count: u32, body: &[u8]) -> Vec<u8> {
        let mut bytes = encode(0, 0, 0, &[]);
        bytes.truncate(HEADER_LEN);
        bytes[13..17].copy_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(body);
        resealed(bytes)
    }

    /// bincode's varint for a length of 2^40: marker 253, then the u64 little-endian.
    fn huge_length() -> Vec<u8> {
        let mut prefix = vec![253];
        prefix.extend_from_slice(&(1u64 << 40).to_le_bytes());
        prefix
    }

    #[test]
    fn a_record_count_prefix_claiming_terabytes_is_an_error_not_an_allocation() {
        // Before the claim limit, bincode reserved 2^40 records (72 TiB) and the process aborted.
        let error = decode(&batch_with_body(1, &huge_length()), 0).unwrap_err();
        assert!(error.contains("undecodable records"), "{error}");
    }

    #[test]
    fn a_value_length_prefix_claiming_terabytes_is_an_error_not_an_allocation() {
        // One record: no key (0), no headers (0), then a value of 2^40 bytes.
        let mut body = vec![1, 0, 0];
        body.extend_from_slice(&huge_length());
        let error = decode(&batch_with_body(1, &body), 0).unwrap_err();
        assert!(error.contains("undecodable records"), "{error}");
    }

    #[test]
    fn a_header_whose_offsets_would_overflow_is_refused() {
        // Before the check, `end_offset` wrapped around (release) or panicked (debug).
        let bytes = encode(u64::MAX - 1, 0, 0, &[&Record::new("a"), &Record::new("b")]);
        let error = decode_header(&bytes).unwrap_err();
        assert!(error.contains("overflows"), "{error}");
        let bytes = encode(0, 0, u64::MAX - 3, &[&Record::new("a")]);
        assert!(decode_header(&bytes).unwrap_err().contains("overflows"));
    }

    #[test]
    fn bytes_after_the_records_are_refused() {
        let mut bytes = encode(0, 0, 0, &[&Record::new("a")]);
        bytes.push(0);
        let error = decode(&resealed(bytes), 0).unwrap_err();
        assert!(error.contains("after the records"), "{error}");
    }

    #[test]
    fn the_densest_intact_batch_decodes_under_its_claim_limit() {
        // Empty headers claim the most per encoded byte (32): the limit must still let them by.
        let mut record = Record::new(Vec::new());
        for _ in 0..2000 {
            record = record.with_header("", Vec::new());
        }
        let records: Vec<&Record> = std::iter::repeat_n(&record, 8).collect();
        let bytes = encode(0, 0, 0, &records);
        let (_, decoded) = decode(&bytes, 0).unwrap();
        assert_eq!(decoded.len(), 8);
        let empty = Record::new(Vec::new());
        let many: Vec<&Record> = std::iter::repeat_n(&empty, 16 * 1024).collect();
        assert_eq!(
            decode(&encode(0, 0, 0, &many), 0).unwrap().1.len(),
            16 * 1024
        );
    }

    #[test]
    fn claim_limits_grow_with_the_batch_and_stop_at_16_gib() {
        assert_eq!(claim_limit(0), Some(4 << 20));
        assert_eq!(claim_limit(64 * 1024), Some(4 << 20));
        assert_eq!(claim_limit(64 * 1024 + 1), Some(8 << 20));
        assert_eq!(claim_limit(1 << 20), Some(64 << 20));
        assert_eq!(claim_limit(256 << 20), Some(16 << 30));
        assert_eq!(claim_limit((256 << 20) + 1), None);
        assert_eq!(claim_limit(usize::MAX), None);
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;
        use super::{huge_length, resealed};
        use crate::log::record::Header;

        fn record() -> impl Strategy<Value = Record> {
            let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
            let header = (".{0,8}", bytes()).prop_map(|(key, value)| Header { key, value });
            (
                proptest::option::of(bytes()),
                proptest::collection::vec(header, 0..4),
                bytes(),
            )
                .prop_map(|(key, headers, value)| Record {
                    key,
                    headers,
                    value,
                })
        }

        fn batch() -> impl Strategy<Value = (u64, i64, u64, Vec<Record>)> {
            (
                0..u64::MAX / 2,
                any::<i64>(),
                0..u64::MAX / 2,
                proptest::collection::vec(record(), 0..12),
            )
        }

        /// One way to damage a valid batch.
        #[derive(Debug, Clone)]
        enum Damage {
            FlipBit { at: usize, bit: u8 },
            Truncate { at: usize },
            SetByte { at: usize, to: u8 },
            HugeLengthAt { at: usize },
        }

        fn damage() -> impl Strategy<Value = Damage> {
            prop_oneof![
                (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Damage::FlipBit { at, bit }),
                any::<usize>().prop_map(|at| Damage::Truncate { at }),
                (any::<usize>(), any::<u8>()).prop_map(|(at, to)| Damage::SetByte { at, to }),
                any::<usize>().prop_map(|at| Damage::HugeLengthAt { at }),
            ]
        }

        fn apply(mut bytes: Vec<u8>, damage: &Damage) -> Vec<u8> {
            let len = bytes.len();
            match *damage {
                Damage::FlipBit { at, bit } => bytes[at % len] ^= 1 << bit,
                Damage::Truncate { at } => bytes.truncate(at % len),
                Damage::SetByte { at, to } => bytes[at % len] = to,
                Damage::HugeLengthAt { at } => {
                    let at = HEADER_LEN + at % (len - HEADER_LEN + 1);
                    bytes.splice(at..at, huge_length());
                }
            }
            bytes
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever was encoded decodes back the same.
            #[test]
            fn decode_inverts_encode((base, time, position, records) in batch()) {
                let refs: Vec<&Record> = records.iter().collect();
                let bytes = encode(base, time, position, &refs);
                let (header, stored) = decode(&bytes, 7).unwrap();
                prop_assert_eq!(header.base_offset, base);
                prop_assert_eq!(header.count as usize, records.len());
                prop_assert_eq!(header.timestamp_ms, time);
                prop_assert_eq!(header.base_position, position);
                prop_assert_eq!(stored.len(), records.len());
                for (i, (stored, record)) in stored.iter().zip(&records).enumerate() {
                    prop_assert_eq!(stored.offset, base + i as u64);
                    prop_assert_eq!(&stored.key, &record.key);
                    prop_assert_eq!(&stored.headers, &record.headers);
                    prop_assert_eq!(&stored.value, &record.value);
                }
            }

            /// Random bytes are an error or a batch, never a panic.
            #[test]
            fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = decode(&bytes, 0);
                let _ = decode(&resealed(bytes), 0);
            }

            /// A damaged batch is refused by its checksum; resealed, the record decoder refuses
            /// it or decodes it, without panicking or allocating what a length prefix claims.
            #[test]
            fn damaged_batches_are_errors_or_values(
                (base, time, position, records) in batch(),
                damage in damage(),
            ) {
                let refs: Vec<&Record> = records.iter().collect();
                let bytes = encode(base, time, position, &refs);
                let damaged = apply(bytes.clone(), &damage);
                if damaged != bytes {
                    prop_assert!(decode(&damaged, 0).is_err(), "checksum missed {:?}", damage);
                }
                if let Ok((header, stored)) = decode(&resealed(damaged), 0) {
                    prop_assert_eq!(header.count as usize, stored.len());
                }
            }
        }
    }
}
