//! The Kafka listener of the `tidings serve` binary driven with raw protocol frames (the
//! `kafka-protocol` codecs), for what real clients do not do at a chosen moment: a token that
//! expires on an open connection, a re-authentication before it, a length prefix claiming
//! gigabytes, a server restart between an idempotent produce and its retry.

use crate::common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::bus::Bus;
use common::kafka_raw::RawKafka;
use common::server::Process;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn token(bus: &Bus<Process>, ttl: Duration) -> String {
    bus.auth
        .issue("svc", None, &["events:consume".to_owned()], ttl)
}

/// A connection authenticated with a token that expires is closed by the server at the
/// expiry, unprompted: before it the connection is served, after it the socket reads EOF.
#[tokio::test]
async fn a_connection_is_closed_when_its_sasl_token_expires() {
    let (bus, broker, _config) = Bus::start_kafka_sasl_only().await;
    let mut kafka = RawKafka::connect(&broker).await;
    let answer = kafka
        .authenticate(&token(&bus, Duration::from_secs(2)))
        .await;
    assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
    let lifetime = answer.session_lifetime_ms;
    assert!(lifetime > 0 && lifetime <= 3000, "lifetime {lifetime} ms");
    assert_eq!(kafka.metadata().await.throttle_time_ms, 0, "served before");

    let started = std::time::Instant::now();
    assert!(kafka.read_frame().await.is_none(), "closed by the server");
    let waited = started.elapsed();
    assert!(
        waited + Duration::from_millis(200) >= Duration::from_millis(lifetime.unsigned_abs()),
        "closed after {waited:?}, before the token's {lifetime} ms"
    );
}

/// A connection that re-authenticates (KIP-368) with a fresh token before the first one
/// expires stays open past the first expiry and is still served.
#[tokio::test]
async fn a_connection_that_reauthenticates_outlives_its_first_token() {
    let (bus, broker, _config) = Bus::start_kafka_sasl_only().await;
    let mut kafka = RawKafka::connect(&broker).await;
    let first = kafka
        .authenticate(&token(&bus, Duration::from_secs(2)))
        .await;
    assert_eq!(first.error_code, 0);
    let renewed = kafka
        .authenticate(&token(&bus, Duration::from_secs(600)))
        .await;
    assert_eq!(renewed.error_code, 0);
    assert!(renewed.session_lifetime_ms > 500_000);
    tokio::time::sleep(Duration::from_millis(
        first.session_lifetime_ms.unsigned_abs() + 500,
    ))
    .await;
    let metadata = kafka.metadata().await;
    assert_eq!(
        metadata.brokers.len(),
        1,
        "served past the first token's expiry"
    );
}

/// A length prefix over `kafka.maxFrameBytes` closes the connection without the server reading
/// (or allocating) the claimed bytes, and the listener goes on serving other connections.
#[tokio::test]
async fn a_huge_length_prefix_closes_the_connection_at_once() {
    let bus = Bus::start_process(&["--kafka-listen", "127.0.0.1:0"]).await;
    let broker = bus.chat.server.kafka.clone().expect("kafka listening");
    let mut greedy = RawKafka::connect(&broker).await;
    greedy.write(&0x7fff_ffffu32.to_be_bytes()).await;
    greedy.write(b"a few bytes of the two gigabytes").await;
    assert!(greedy.read_frame().await.is_none(), "closed");

    let mut next = RawKafka::connect(&broker).await;
    let versions: ApiVersionsResponse = next
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(versions.error_code, 0, "the listener still serves");
}

/// Three records of an idempotent producer as one v2 batch, sequences from `base_sequence`.
fn idempotent_batch(producer_id: i64, base_sequence: i32) -> Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let records: Vec<Record> = (0..3)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: base_sequence + i,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(format!("{{\"n\":{}}}", base_sequence + i))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode the batch");
    buf.freeze()
}

/// Produce v9, acks all, of `batch` to partition 0 of `topic`: (error code, base offset).
async fn produce(kafka: &mut RawKafka, topic: &str, batch: Bytes) -> (i16, i64) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let answer: ProduceResponse = kafka.call(ApiKey::Produce, 9, &request).await;
    let partition = &answer.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

async fn init_producer_id(kafka: &mut RawKafka) -> i64 {
    let request = InitProducerIdRequest::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
        .with_transaction_timeout_ms(60_000);
    let answer: InitProducerIdResponse = kafka.call(ApiKey::InitProducerId, 4, &request).await;
    assert_eq!(answer.error_code, 0);
    answer.producer_id.0
}

/// An idempotent batch appended, then the server SIGKILLed and restarted, then the same batch
/// retried: the retry is answered with the first offset it got and appended nothing (the next
/// batch lands right after the first), and the restarted server hands out a new producer id.
#[tokio::test]
async fn a_batch_retried_after_a_server_restart_is_still_a_duplicate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = ["--listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0"];
    let mut server = common::server::start(common::server::command(dir.path(), &args));
    common::server::wait_ready(&server).await;
    let mut kafka = RawKafka::connect(server.kafka.as_deref().expect("kafka listening")).await;
    let producer_id = init_producer_id(&mut kafka).await;
    let topic_request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("retried"))))]))
        .with_allow_auto_topic_creation(true);
    let _: MetadataResponse = kafka.call(ApiKey::Metadata, 9, &topic_request).await;
    let first = produce(&mut kafka, "retried", idempotent_batch(producer_id, 0)).await;
    assert_eq!(first, (0, 0), "appended at offset 0");
    server.child.kill().expect("SIGKILL the server");
    server.child.wait().expect("reap the server");

    let server = common::server::start(common::server::command(dir.path(), &args));
    common::server::wait_ready(&server).await;
    let mut kafka = RawKafka::connect(server.kafka.as_deref().expect("kafka listening")).await;
    let retried = produce(&mut kafka, "retried", idempotent_batch(producer_id, 0)).await;
    assert_eq!(retried, (0, 0), "answered as the duplicate it is");
    let next = produce(&mut kafka, "retried", idempotent_batch(producer_id, 3)).await;
    assert_eq!(next, (0, 3), "the retry appended nothing");
    let new_id = init_producer_id(&mut kafka).await;
    assert!(new_id > producer_id, "id {new_id} after {producer_id}");
}
