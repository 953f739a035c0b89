//! Kafka record batches to log records and back.
//!
//! Produced batches are transcoded, not kept as Kafka batches: each record becomes a log
//! [`Record`] (key, headers, value; a null value becomes an empty one), so that HTTP, the CLI,
//! the chat's consumers and Kafka clients all read the same records. A fetch encodes the log's
//! records from the asked offset on as one uncompressed v2 batch with their offsets and append
//! times. The producer's own timestamps are not kept (the log stamps append time, as a topic
//! with `LogAppendTime` does). docs/architecture.md says why.
//!
//! Decoding checks each batch's header before decompressing it: version 2 only, a record count
//! that fits the bytes, no transactional or control batch; the CRC is the codec's check. It
//! decompresses with its own bounded readers (a [`DecompressBudget`] for all the batches of one
//! produce request), not the codec's, which inflate whatever a batch holds.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record as KafkaRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};

use crate::log::{Header, Record, StoredRecord};

/// Smallest encoded size of one record in a v2 batch, to check a claimed record count against
/// the bytes before anything is allocated for it.
const MIN_RECORD_BYTES: usize = 7;

/// Most bytes the batches of one produce request may decompress to, together: its partitions
/// are decoded before any of them is appended, so the bound is the request's. A producer's
/// batch is at most its `batch.size` before compression (librdkafka: 1 MB by default), so this
/// leaves ample room; without a bound, one 8 MiB gzip, lz4 or zstd frame can inflate to
/// gigabytes, and a snappy block header can claim 4 GiB.
const MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

/// What is left of one produce request's [`MAX_DECOMPRESSED_BYTES`].
#[derive(Debug)]
pub(super) struct DecompressBudget(AtomicUsize);

impl DecompressBudget {
    /// A whole request's budget.
    pub(super) fn per_request() -> DecompressBudget {
        DecompressBudget::of(MAX_DECOMPRESSED_BYTES)
    }

    fn of(bytes: usize) -> DecompressBudget {
        DecompressBudget(AtomicUsize::new(bytes))
    }

    fn left(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn spend(&self, bytes: usize) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_sub(bytes))
            });
    }
}

/// The frame that starts snappy data in the xerial format Kafka clients write (magic, version
/// 1, compatible version 1); without it the data is one raw snappy block.
const XERIAL_SNAPPY_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// Why a produced batch was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum BatchError {
    /// Bad CRC, truncated, an impossible record count, or not decodable.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// A transactional or control batch: transactions are not served.
    #[error("transactional batches are not supported")]
    Transactional,
}

/// The producer fields of the first batch of a partition's data, for idempotence checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProducerInfo {
    /// Producer id, -1 for a producer that is not idempotent.
    pub(super) producer_id: i64,
    /// Producer epoch.
    pub(super) producer_epoch: i16,
    /// Sequence of the first record.
    pub(super) base_sequence: i32,
    /// Records in the data.
    pub(super) record_count: i32,
}

/// The log records of a partition's produced data (one or more batches), and its producer.
/// Decompressed bytes are taken from `budget`; a batch that would pass what is left is corrupt.
pub(super) fn decode_produced(
    data: &Bytes,
    budget: &DecompressBudget,
) -> Result<(Vec<Record>, ProducerInfo), BatchError> {
    let corrupt = |e: anyhow::Error| BatchError::Corrupt(e.to_string());
    let infos = RecordBatchDecoder::decode_batch_info(&mut data.clone()).map_err(corrupt)?;
    let Some(first) = infos.first() else {
        return Err(BatchError::Corrupt("no record batch".into()));
    };
    let mut claimed: usize = 0;
    for info in &infos {
        if info.transactional || info.control {
            return Err(BatchError::Transactional);
        }
        let count = usize::try_from(info.record_count)
            .map_err(|_| BatchError::Corrupt(format!("record count {}", info.record_count)))?;
        claimed = claimed.saturating_add(count);
    }
    // Compressed records can be smaller than this, but not 1000x smaller than the batch bytes.
    if claimed.saturating_mul(MIN_RECORD_BYTES) > data.len().saturating_mul(1000) {
        return Err(BatchError::Corrupt(format!(
            "{claimed} records claimed in {} bytes",
            data.len()
        )));
    }
    let producer = ProducerInfo {
        producer_id: first.producer_id,
        producer_epoch: first.producer_epoch,
        base_sequence: first.base_sequence,
        record_count: i32::try_from(claimed).unwrap_or(i32::MAX),
    };
    let decompress = |data: &mut Bytes, compression: Compression| {
        let plain = decompress_within(data, compression, budget.left())?;
        if compression != Compression::None {
            budget.spend(plain.len());
        }
        anyhow::Ok(plain)
    };
    let mut rest = data.clone();
    let mut sets = Vec::new();
    while rest.has_remaining() {
        let set = RecordBatchDecoder::decode_with_custom_compression(&mut rest, Some(&decompress))
            .map_err(corrupt)?;
        sets.push(set);
    }
    let records = sets
        .into_iter()
        .flat_map(|set| set.records)
        .map(to_log_record)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((records, producer))
}

/// The records of one batch as they were before compression, refused once they pass `limit`
/// bytes (read no further than one byte past it).
fn decompress_within(
    data: &mut Bytes,
    compression: Compression,
    limit: usize,
) -> anyhow::Result<Bytes> {
    let packed = data.split_to(data.len());
    let plain = match compression {
        Compression::None => return Ok(packed),
        Compression::Gzip => read_within(flate2::read::GzDecoder::new(packed.reader()), limit)?,
        Compression::Lz4 => read_within(lz4::Decoder::new(packed.reader())?, limit)?,
        Compression::Zstd => {
            read_within(zstd::stream::read::Decoder::new(packed.reader())?, limit)?
        }
        Compression::Snappy => snappy_within(&packed, limit)?,
    };
    Ok(Bytes::from(plain))
}

fn read_within(reader: impl Read, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut plain = Vec::new();
    reader
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut plain)?;
    anyhow::ensure!(
        plain.len() <= limit,
        "decompresses to more than {limit} bytes"
    );
    Ok(plain)
}

/// Snappy as Kafka clients write it: xerial blocks (a 4-byte length, then a raw block), or one
/// raw block. Each block's claimed length is checked before anything is allocated for it.
fn snappy_within(packed: &[u8], limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut plain = Vec::new();
    let Some(mut blocks) = packed.strip_prefix(XERIAL_SNAPPY_HEADER) else {
        snappy_block_within(packed, &mut plain, limit)?;
        return Ok(plain);
    };
    while let Some((length, rest)) = blocks.split_first_chunk::<4>() {
        let length = u32::from_be_bytes(*length) as usize;
        let block = rest.get(..length).context("a truncated snappy block")?;
        snappy_block_within(block, &mut plain, limit)?;
        blocks = &rest[length..];
    }
    anyhow::ensure!(blocks.is_empty(), "a truncated snappy block length");
    Ok(plain)
}

fn snappy_block_within(block: &[u8], plain: &mut Vec<u8>, limit: usize) -> anyhow::Result<()> {
    let length = snap::raw::decompress_len(block)?;
    let start = plain.len();
    anyhow::ensure!(
        start.saturating_add(length) <= limit,
        "decompresses to more than {limit} bytes"
    );
    plain.resize(start + length, 0);
    snap::raw::Decoder::new().decompress(block, &mut plain[start..])?;
    Ok(())
}

fn to_log_record(record: KafkaRecord) -> Result<Record, BatchError> {
    let headers = record
        .headers
        .into_iter()
        .map(|(key, value)| Header {
            key: key.as_str().to_owned(),
            value: value.map(|v| v.to_vec()).unwrap_or_default(),
        })
        .collect();
    Ok(Record {
        key: record.key.map(|k| k.to_vec()),
        headers,
        value: record.value.map(|v| v.to_vec()).unwrap_or_default(),
    })
}

/// Stored records as one uncompressed v2 batch; empty bytes for no records. The records are
/// taken, not borrowed: their keys, values and headers move into the encoder's records without
/// a copy, so each byte is copied once, into the answer.
pub(super) fn encode_fetched(records: Vec<StoredRecord>) -> anyhow::Result<Bytes> {
    let Some(first) = records.first() else {
        return Ok(Bytes::new());
    };
    let base = first.offset;
    let capacity = records.iter().map(|r| r.size() + 24).sum::<usize>() + 64;
    let kafka: Vec<KafkaRecord> = records
        .into_iter()
        .map(|r| to_kafka_record(r, base))
        .collect();
    let mut buf = BytesMut::with_capacity(capacity);
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &kafka, &options)?;
    Ok(buf.freeze())
}

/// `base` is the first fetched offset: the encoder keeps records in one batch only while
/// offset minus sequence stays the same, so sequences count from it (the batch has no producer
/// id, so clients do not read them).
fn to_kafka_record(record: StoredRecord, base: u64) -> KafkaRecord {
    let headers: IndexMap<StrBytes, Option<Bytes>> = record
        .headers
        .into_iter()
        .map(|h| (StrBytes::from_string(h.key), Some(Bytes::from(h.value))))
        .collect();
    KafkaRecord {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: i64::try_from(record.offset).unwrap_or(i64::MAX),
        sequence: i32::try_from(record.offset.saturating_sub(base)).unwrap_or(i32::MAX),
        timestamp: record.timestamp_ms,
        key: record.key.map(Bytes::from),
        value: Some(Bytes::from(record.value)),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(offset: u64, key: &str, value: &str) -> StoredRecord {
        StoredRecord {
            partition: 0,
            offset,
            timestamp_ms: 1_700_000_000_000 + offset as i64,
            key: Some(key.as_bytes().to_vec()),
            headers: vec![Header {
                key: "h".into(),
                value: b"v".to_vec(),
            }],
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn fetched_records_decode_back_with_their_offsets_keys_and_headers() {
        let records = [stored(41, "k1", "{\"a\":1}"), stored(42, "k2", "\"x\"")];
        let batch = encode_fetched(records.to_vec()).expect("encodes");
        let (decoded, producer) =
            decode_produced(&batch, &DecompressBudget::per_request()).expect("decodes");
        assert_eq!(producer.record_count, 2);
        assert_eq!(decoded[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(decoded[1].value, b"\"x\"");
        assert_eq!(decoded[0].headers[0].key, "h");
        let sets = RecordBatchDecoder::decode_all(&mut batch.clone()).expect("decodes");
        assert_eq!(sets.len(), 1, "one batch, not one per record");
        assert_eq!(sets[0].records[1].offset, 42);
    }

    /// A batch whose one record claims `i32::MAX` headers (CRC and lengths made consistent) is
    /// refused as corrupt: the decoder reserves no more than the bytes left (vendor/README.md),
    /// instead of the process aborting on a ~100 GiB allocation.
    #[test]
    fn a_record_claiming_two_billion_headers_is_corrupt_not_an_abort() {
        let mut plain = stored(0, "k", "v");
        plain.headers.clear();
        let mut bytes = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        let kafka = vec![to_kafka_record(plain, 0)];
        RecordBatchEncoder::encode(&mut bytes, &kafka, &options).expect("encodes");
        let mut forged = bytes.to_vec();
        assert_eq!(
            forged.pop(),
            Some(0),
            "the record ends with its header count, 0"
        );
        // zig-zag varint of i32::MAX: 4 bytes more than the 0 it replaces.
        forged.extend_from_slice(&[0xFE, 0xFF, 0xFF, 0xFF, 0x0F]);
        const RECORDS_AT: usize = 61;
        assert!(forged[RECORDS_AT] < 0x80, "a one-byte record length");
        forged[RECORDS_AT] += 8; // zig-zag: +4 bytes
        let batch_length = i32::from_be_bytes(forged[8..12].try_into().unwrap()) + 4;
        forged[8..12].copy_from_slice(&batch_length.to_be_bytes());
        let crc = crc32c::crc32c(&forged[21..]);
        forged[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            decode_produced(&Bytes::from(forged), &DecompressBudget::per_request()),
            Err(BatchError::Corrupt(_))
        ));
    }

    /// One record of `bytes` zeros in a batch compressed with `compression`.
    fn zeros_batch(bytes: usize, compression: Compression) -> Bytes {
        let record = stored(0, "k", &"\0".repeat(bytes));
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &[to_kafka_record(record, 0)], &options)
            .expect("encodes");
        buf.freeze()
    }

    /// Every codec inflates within the bound and no further: 2 MiB of zeros (a few KiB packed)
    /// decode under a 4 MiB bound and are corrupt under a 1 MiB one, as an 8 MiB frame packing
    /// gigabytes is under the real bound.
    #[test]
    fn every_codec_decompresses_within_the_bound_and_no_further() {
        const MIB: usize = 1024 * 1024;
        for compression in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = zeros_batch(2 * MIB, compression);
            assert!(batch.len() < MIB / 4, "{compression:?} packs the zeros");
            let (records, _) =
                decode_produced(&batch, &DecompressBudget::of(4 * MIB)).expect("within the bound");
            assert_eq!(records[0].value.len(), 2 * MIB, "{compression:?}");
            assert!(
                matches!(
                    decode_produced(&batch, &DecompressBudget::of(MIB)),
                    Err(BatchError::Corrupt(_))
                ),
                "{compression:?} past the bound"
            );
        }
    }

    /// One budget spans the batches it decodes (a request's partitions): two batches of a little
    /// over 3 MiB fit a 7 MiB budget one after the other, but not a 5 MiB one.
    #[test]
    fn the_budget_is_shared_by_the_batches_of_one_request() {
        const MIB: usize = 1024 * 1024;
        let batch = zeros_batch(3 * MIB, Compression::Zstd);
        let roomy = DecompressBudget::of(7 * MIB);
        assert!(decode_produced(&batch, &roomy).is_ok());
        assert!(decode_produced(&batch, &roomy).is_ok());
        let tight = DecompressBudget::of(5 * MIB);
        assert!(decode_produced(&batch, &tight).is_ok());
        assert!(matches!(
            decode_produced(&batch, &tight),
            Err(BatchError::Corrupt(_))
        ));
    }

    /// A snappy block whose header claims 4 GiB (CRC and lengths consistent) is refused before
    /// anything is allocated for it.
    #[test]
    fn a_snappy_block_claiming_four_gibibytes_is_corrupt_before_any_allocation() {
        const RECORDS_AT: usize = 61;
        let mut forged = zeros_batch(16, Compression::Snappy)[..RECORDS_AT].to_vec();
        forged.extend_from_slice(XERIAL_SNAPPY_HEADER);
        let block = [0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00]; // varint 2^32 - 1, then a literal tag
        forged.extend_from_slice(&(block.len() as u32).to_be_bytes());
        forged.extend_from_slice(&block);
        let batch_length = i32::try_from(forged.len() - 12).unwrap();
        forged[8..12].copy_from_slice(&batch_length.to_be_bytes());
        let crc = crc32c::crc32c(&forged[21..]);
        forged[17..21].copy_from_slice(&crc.to_be_bytes());
        let refused = decode_produced(&Bytes::from(forged), &DecompressBudget::per_request());
        assert!(
            matches!(&refused, Err(BatchError::Corrupt(why)) if why.contains("more than")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_flipped_byte_fails_the_crc() {
        let batch = encode_fetched(vec![stored(0, "k", "v")]).expect("encodes");
        let mut bad = batch.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(
            decode_produced(&Bytes::from(bad), &DecompressBudget::per_request()),
            Err(BatchError::Corrupt(_))
        ));
    }

    #[test]
    fn every_compression_round_trips() {
        for compression in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let kafka = vec![to_kafka_record(stored(0, "k", "{\"n\":1}"), 0)];
            let mut buf = BytesMut::new();
            let options = RecordEncodeOptions {
                version: 2,
                compression,
            };
            RecordBatchEncoder::encode(&mut buf, &kafka, &options).expect("encodes");
            let (decoded, _) =
                decode_produced(&buf.freeze(), &DecompressBudget::per_request()).expect("decodes");
            assert_eq!(decoded[0].value, b"{\"n\":1}", "{compression:?}");
        }
    }
}
