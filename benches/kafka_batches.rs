//! Criterion benchmarks of the two ways the Kafka listener could store produced batches, on
//! the produce and the fetch path, over the real embedded log (durability `never`, so the
//! figures are the CPU work of each way, not the disk's):
//! - `produce/transcode/{none,lz4}`: what the listener does: decode the Kafka batch (checking
//!   its CRC, decompressing) into log records and append them;
//! - `produce/keep/{none,lz4}`: the alternative: check the batch's header and CRC and append the
//!   batch's bytes as one opaque record;
//! - `fetch/transcode`: read 1,000 stored records and encode them as one uncompressed v2 batch
//!   (what a Fetch answer is built from today);
//! - `fetch/keep/{none,lz4}`: read the one stored batch and copy its bytes into the answer.
//!
//! Every batch holds 1,000 records of 200 bytes (JSON of words, which lz4 shrinks ~2.5x, as
//! chat text) with a key; throughput is per record.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::records::{
    Compression, Record as KafkaRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};
use tidings::log::{Durability, Header, Log, LogConfig, ReadLimits, Record, TopicConfig};

const RECORDS: usize = 1_000;
const SIZE: usize = 200;

/// A value of `SIZE` bytes that compresses about as chat JSON does (words from a small
/// vocabulary in a varying order), not like a run of one byte.
fn value(i: usize) -> Bytes {
    const WORDS: [&str; 16] = [
        "hello", "meeting", "tomorrow", "at", "the", "office", "please", "review", "draft",
        "thanks", "see", "you", "soon", "lunch", "call", "update",
    ];
    let mut text = format!("{{\"n\":{i},\"text\":\"");
    let mut state = (i as u64)
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1);
    while text.len() < SIZE - 2 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        text.push_str(WORDS[(state >> 60) as usize]);
        text.push(' ');
    }
    text.truncate(SIZE - 2);
    text.push_str("\"}");
    Bytes::from(text)
}

fn kafka_batch(compression: Compression) -> Bytes {
    let records: Vec<KafkaRecord> = (0..RECORDS)
        .map(|i| KafkaRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: 7,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("user-{}", i % 50))),
            value: Some(value(i)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode");
    buf.freeze()
}

/// The transcoding the listener does (src/kafka/records.rs, decode_produced).
fn transcode(batch: &Bytes) -> Vec<Record> {
    let sets = RecordBatchDecoder::decode_all(&mut batch.clone()).expect("decode");
    sets.into_iter()
        .flat_map(|set| set.records)
        .map(|r| Record {
            key: r.key.map(|k| k.to_vec()),
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| Header {
                    key: k.as_str().to_owned(),
                    value: v.map(|v| v.to_vec()).unwrap_or_default(),
                })
                .collect(),
            value: r.value.map(|v| v.to_vec()).unwrap_or_default(),
        })
        .collect()
}

/// What keeping the batch would still check: its header and its CRC-32C (over the bytes from
/// the attributes on, at offset 21).
fn check_kept(batch: &Bytes) -> Record {
    let infos = RecordBatchDecoder::decode_batch_info(&mut batch.clone()).expect("header");
    assert_eq!(infos.len(), 1);
    let stored = u32::from_be_bytes([batch[17], batch[18], batch[19], batch[20]]);
    assert_eq!(crc32c::crc32c(&batch[21..]), stored, "CRC");
    Record::new(batch.to_vec())
}

fn open_log(dir: &std::path::Path) -> Log {
    let mut config = LogConfig::new(dir);
    config.durability = Durability::Never;
    config.max_record_bytes = 4 << 20;
    Log::open(config).expect("open log")
}

fn produce(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open_log(dir.path());
    runtime
        .block_on(log.create_topic("b", TopicConfig::with_partitions(1)))
        .expect("topic");
    let mut group = c.benchmark_group("produce");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for (name, compression) in [("none", Compression::None), ("lz4", Compression::Lz4)] {
        let batch = kafka_batch(compression);
        group.bench_function(format!("transcode/{name}"), |b| {
            b.iter(|| {
                let records = transcode(&batch);
                runtime
                    .block_on(log.append_to("b", 0, records))
                    .expect("append")
            })
        });
        group.bench_function(format!("keep/{name}"), |b| {
            b.iter(|| {
                let record = check_kept(&batch);
                runtime
                    .block_on(log.append_to("b", 0, vec![record]))
                    .expect("append")
            })
        });
    }
    group.finish();
}

fn fetch(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open_log(dir.path());
    for topic in ["records", "kept-none", "kept-lz4"] {
        runtime
            .block_on(log.create_topic(topic, TopicConfig::with_partitions(1)))
            .expect("topic");
    }
    let records = transcode(&kafka_batch(Compression::None));
    runtime
        .block_on(log.append_to("records", 0, records))
        .expect("append");
    for (topic, compression) in [
        ("kept-none", Compression::None),
        ("kept-lz4", Compression::Lz4),
    ] {
        let kept = check_kept(&kafka_batch(compression));
        runtime
            .block_on(log.append_to(topic, 0, vec![kept]))
            .expect("append");
    }
    let limits = ReadLimits {
        max_records: RECORDS,
        max_bytes: 8 << 20,
    };
    let mut group = c.benchmark_group("fetch");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("transcode", |b| {
        b.iter(|| {
            let stored = log.read("records", 0, 0, limits).expect("read");
            let kafka: Vec<KafkaRecord> = stored
                .iter()
                .map(|r| KafkaRecord {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: r.offset as i64,
                    sequence: r.offset as i32,
                    timestamp: r.timestamp_ms,
                    key: r.key.as_deref().map(Bytes::copy_from_slice),
                    value: Some(Bytes::copy_from_slice(&r.value)),
                    headers: Default::default(),
                })
                .collect();
            let mut buf = BytesMut::with_capacity(stored.iter().map(|r| r.size() + 24).sum());
            let options = RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            };
            RecordBatchEncoder::encode(&mut buf, &kafka, &options).expect("encode");
            buf.freeze()
        })
    });
    for topic in ["kept-none", "kept-lz4"] {
        group.bench_function(format!("keep/{}", &topic[5..]), |b| {
            b.iter(|| {
                let stored = log.read(topic, 0, 0, limits).expect("read");
                let mut answer = BytesMut::with_capacity(stored[0].value.len());
                answer.extend_from_slice(&stored[0].value);
                answer.freeze()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, produce, fetch);
criterion_main!(benches);
