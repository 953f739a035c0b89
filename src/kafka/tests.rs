//! The handlers driven through `dispatch` with encoded requests, over a real log in a temporary
//! directory; and property tests that random frames and batches never panic the decoders.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record as KafkaRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::access::Session;
use super::dispatch::{decode_request, handle_frame, Reply};
use super::records::{decode_produced, DecompressBudget};
use super::versions::SUPPORTED;
use super::{Advertised, Broker};
use crate::config::KafkaSettings;
use crate::log::{Log, LogConfig, Record};

pub(super) struct Fixture {
    pub(super) broker: Arc<Broker>,
    pub(super) log: Log,
    _dir: tempfile::TempDir,
}

pub(super) fn fixture() -> Fixture {
    fixture_on(None, 9092)
}

/// A broker advertised at `127.0.0.1:port`, on a cluster when given its lease bucket.
pub(super) fn fixture_on(
    cluster: Option<crate::cluster::kafka_brokers::LeaseBucket>,
    port: i32,
) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = LogConfig::new(dir.path());
    config.durability = crate::log::Durability::Never;
    let log = Log::open(config).expect("open the log");
    let advertised = Advertised {
        host: "127.0.0.1".into(),
        port,
    };
    let broker = Broker::new(
        log.clone(),
        dir.path(),
        None,
        KafkaSettings::default(),
        advertised,
        2,
        super::GroupLimit {
            max: 3,
            http_groups: Box::new(|| vec!["http-only".to_owned()]),
        },
        cluster,
        CancellationToken::new(),
        TaskTracker::new(),
    )
    .expect("open the broker");
    Fixture {
        broker,
        log,
        _dir: dir,
    }
}

pub(super) fn session() -> Session {
    Session::anonymous(
        &["events:publish".to_owned(), "events:consume".to_owned()],
        "127.0.0.1:5555".into(),
    )
}

/// A request frame as a client sends it (without the length prefix).
pub(super) fn frame(api_key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("test")))
        .encode(&mut buf, api_key.request_header_version(version))
        .expect("encode the header");
    body.encode(&mut buf, version).expect("encode the body");
    buf.freeze()
}

/// Sends one request through `dispatch` and decodes the answer (after checking its
/// correlation id).
pub(super) async fn call<R: Decodable>(
    f: &Fixture,
    api_key: ApiKey,
    version: i16,
    body: &impl Encodable,
) -> R {
    let reply = handle_frame(&f.broker, &mut session(), frame(api_key, version, body)).await;
    let Reply::Frame(mut answer) = reply else {
        panic!("{api_key:?} v{version}: {reply:?}");
    };
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    };
    let header = ResponseHeader::decode(&mut answer, header_version).expect("a response header");
    assert_eq!(header.correlation_id, 42);
    R::decode(&mut answer, version).expect("a response body")
}

fn batch(values: &[&str], compression: Compression) -> Bytes {
    let records: Vec<KafkaRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| KafkaRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i64::try_from(i).expect("small"),
            sequence: i32::try_from(i).expect("small"),
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode a batch");
    buf.freeze()
}

fn produce_request(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

fn partition_error(answer: &ProduceResponse) -> i16 {
    answer.responses[0].partition_responses[0].error_code
}

#[tokio::test]
async fn api_versions_lists_exactly_what_is_served() {
    let f = fixture();
    let answer: ApiVersionsResponse =
        call(&f, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).await;
    assert_eq!(answer.error_code, 0);
    let listed: Vec<(i16, i16, i16)> = answer
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    let served: Vec<(i16, i16, i16)> = SUPPORTED
        .iter()
        .map(|(k, min, max)| (*k as i16, *min, *max))
        .collect();
    assert_eq!(listed, served);
}

#[tokio::test]
async fn a_too_new_api_versions_gets_unsupported_version_in_a_v0_body() {
    let f = fixture();
    let reply = handle_frame(
        &f.broker,
        &mut session(),
        frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
    )
    .await;
    assert!(matches!(reply, Reply::Frame(_)));
    // Version 9 of ApiVersions does not exist: the header is v0-shaped up to the correlation id.
    let mut raw = BytesMut::new();
    raw.extend_from_slice(&18i16.to_be_bytes());
    raw.extend_from_slice(&9i16.to_be_bytes());
    raw.extend_from_slice(&42i32.to_be_bytes());
    raw.extend_from_slice(&[0xff, 0xff, 0]);
    let Reply::Frame(mut answer) = handle_frame(&f.broker, &mut session(), raw.freeze()).await
    else {
        panic!("answered");
    };
    let header = ResponseHeader::decode(&mut answer, 0).expect("header");
    assert_eq!(header.correlation_id, 42);
    let body = ApiVersionsResponse::decode(&mut answer, 0).expect("a v0 body");
    assert_eq!(body.error_code, ResponseError::UnsupportedVersion.code());
    assert!(!body.api_keys.is_empty());
}

#[tokio::test]
async fn an_unknown_api_key_or_version_or_a_short_frame_closes_the_connection() {
    let f = fixture();
    for raw in [
        vec![0x03, 0xe7, 0, 0, 0, 0, 0, 1],       // key 999
        vec![0, 1, 0, 99, 0, 0, 0, 1, 0, 0],      // Fetch v99
        vec![0, 18, 0],                           // no header
        vec![0, 0, 0, 9, 0, 0, 0, 1, 0xff, 0xff], // Produce v9, truncated body
    ] {
        let reply = handle_frame(&f.broker, &mut session(), Bytes::from(raw.clone())).await;
        assert!(matches!(reply, Reply::Close(_)), "{raw:?}: {reply:?}");
    }
}

#[tokio::test]
async fn produce_then_fetch_returns_the_records_from_the_asked_offset() {
    let f = fixture();
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))]))
        .with_allow_auto_topic_creation(true);
    let meta: MetadataResponse = call(&f, ApiKey::Metadata, 9, &metadata).await;
    assert_eq!(meta.topics[0].error_code, 0);
    assert_eq!(
        meta.topics[0].partitions.len(),
        2,
        "created with the default partitions"
    );
    assert_eq!(meta.brokers[0].port, 9092);

    let produced: ProduceResponse = call(
        &f,
        ApiKey::Produce,
        7,
        &produce_request(
            "orders",
            batch(
                &["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"],
                Compression::Snappy,
            ),
        ),
    )
    .await;
    assert_eq!(partition_error(&produced), 0);
    assert_eq!(produced.responses[0].partition_responses[0].base_offset, 0);

    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("orders")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(1)
                .with_partition_max_bytes(1 << 20)])]);
    let fetched: FetchResponse = call(&f, ApiKey::Fetch, 11, &fetch).await;
    let data = &fetched.responses[0].partitions[0];
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 3);
    let sets = RecordBatchDecoder::decode_all(&mut data.records.clone().expect("records"))
        .expect("batches");
    let offsets: Vec<i64> = sets
        .iter()
        .flat_map(|s| s.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(offsets, vec![1, 2], "from the asked offset on");
}

#[tokio::test]
async fn producing_to_the_chat_command_log_is_refused_and_appends_nothing() {
    let f = fixture();
    f.log
        .create_topic("messages", crate::log::TopicConfig::with_partitions(1))
        .await
        .expect("create");
    let answer: ProduceResponse = call(
        &f,
        ApiKey::Produce,
        7,
        &produce_request("messages", batch(&["x"], Compression::None)),
    )
    .await;
    assert_eq!(
        partition_error(&answer),
        ResponseError::TopicAuthorizationFailed.code()
    );
    assert_eq!(f.log.watermarks("messages", 0).expect("marks"), (0, 0));
}

#[tokio::test]
async fn a_batch_with_a_corrupt_crc_is_refused_and_appends_nothing() {
    let f = fixture();
    f.log
        .create_topic("orders", crate::log::TopicConfig::with_partitions(1))
        .await
        .expect("create");
    let mut bad = batch(&["{\"a\":1}"], Compression::None).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    let answer: ProduceResponse = call(
        &f,
        ApiKey::Produce,
        7,
        &produce_request("orders", Bytes::from(bad)),
    )
    .await;
    assert_eq!(
        partition_error(&answer),
        ResponseError::CorruptMessage.code()
    );
    assert_eq!(f.log.watermarks("orders", 0).expect("marks"), (0, 0));
}

#[tokio::test]
async fn a_transactional_produce_is_refused() {
    let f = fixture();
    f.log
        .create_topic("orders", crate::log::TopicConfig::with_partitions(1))
        .await
        .expect("create");
    let request = produce_request("orders", batch(&["x"], Compression::None))
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))));
    let answer: ProduceResponse = call(&f, ApiKey::Produce, 7, &request).await;
    assert_eq!(
        partition_error(&answer),
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    assert_eq!(f.log.watermarks("orders", 0).expect("marks"), (0, 0));
}

/// A ListOffsets request for partition 0 of `orders` at `timestamp` (-2 earliest, -1 latest).
fn ask(timestamp: i64) -> ListOffsetsRequest {
    ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(timestamp)]),
    ])
}

#[tokio::test]
async fn list_offsets_answers_earliest_and_latest() {
    let f = fixture();
    f.log
        .append_to("orders", 0, vec![Record::new("a"), Record::new("b")])
        .await
        .expect("append");
    let earliest: ListOffsetsResponse = call(&f, ApiKey::ListOffsets, 5, &ask(-2)).await;
    let latest: ListOffsetsResponse = call(&f, ApiKey::ListOffsets, 5, &ask(-1)).await;
    assert_eq!(earliest.topics[0].partitions[0].offset, 0);
    assert_eq!(latest.topics[0].partitions[0].offset, 2);
}

#[tokio::test]
async fn list_offsets_by_timestamp_answers_the_first_record_as_new_and_its_timestamp() {
    let f = fixture();
    let stamp_of_new = |value: &'static str| {
        let log = f.log.clone();
        async move {
            let offset = log
                .append_to("orders", 0, vec![Record::new(value)])
                .await
                .expect("append")[0]
                .offset;
            let record = log
                .read("orders", 0, offset, crate::log::ReadLimits::default())
                .expect("read")
                .remove(0);
            (offset, record.timestamp_ms)
        }
    };
    let (_, first) = stamp_of_new("a").await;
    // Appends until one lands in a later millisecond, so that two timestamps differ.
    let (later_offset, later) = loop {
        let (offset, stamp) = stamp_of_new("b").await;
        if stamp > first {
            break (offset, stamp);
        }
    };
    let answer = |response: ListOffsetsResponse| {
        let p = &response.topics[0].partitions[0];
        (p.error_code, p.offset, p.timestamp)
    };
    let at_start: ListOffsetsResponse = call(&f, ApiKey::ListOffsets, 5, &ask(0)).await;
    assert_eq!(answer(at_start), (0, 0, first));
    let at_later: ListOffsetsResponse = call(&f, ApiKey::ListOffsets, 5, &ask(later)).await;
    assert_eq!(
        answer(at_later),
        (0, i64::try_from(later_offset).expect("small"), later)
    );
    let after_all: ListOffsetsResponse = call(&f, ApiKey::ListOffsets, 5, &ask(later + 1)).await;
    assert_eq!(answer(after_all), (0, -1, -1), "no record is that new");
}

#[tokio::test]
async fn a_resent_idempotent_batch_gets_its_first_offset_and_is_not_appended_twice() {
    let f = fixture();
    f.log
        .create_topic("orders", crate::log::TopicConfig::with_partitions(1))
        .await
        .expect("create");
    let init: InitProducerIdResponse = call(
        &f,
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    )
    .await;
    let idempotent = |base_sequence: i32, values: &[&str]| {
        let records: Vec<KafkaRecord> = values
            .iter()
            .enumerate()
            .map(|(i, v)| KafkaRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: init.producer_id.0,
                producer_epoch: init.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i64::try_from(i).expect("small"),
                sequence: base_sequence + i32::try_from(i).expect("small"),
                timestamp: 0,
                key: None,
                value: Some(Bytes::copy_from_slice(v.as_bytes())),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::Lz4,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode");
        produce_request("orders", buf.freeze())
    };
    let first: ProduceResponse = call(&f, ApiKey::Produce, 7, &idempotent(0, &["a", "b"])).await;
    let second: ProduceResponse = call(&f, ApiKey::Produce, 7, &idempotent(2, &["c"])).await;
    let again: ProduceResponse = call(&f, ApiKey::Produce, 7, &idempotent(0, &["a", "b"])).await;
    let gap: ProduceResponse = call(&f, ApiKey::Produce, 7, &idempotent(9, &["z"])).await;
    assert_eq!(first.responses[0].partition_responses[0].base_offset, 0);
    assert_eq!(second.responses[0].partition_responses[0].base_offset, 2);
    assert_eq!(partition_error(&again), 0);
    assert_eq!(
        again.responses[0].partition_responses[0].base_offset, 0,
        "its first offset"
    );
    assert_eq!(
        partition_error(&gap),
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    assert_eq!(
        f.log.watermarks("orders", 0).expect("marks"),
        (0, 3),
        "nothing twice"
    );
}

/// A request whose array claims `i32::MAX` elements (DeleteTopics v1, nothing after the count)
/// fails to decode: the decoder reserves no more than the bytes left (vendor/README.md), instead
/// of the process aborting on a multi-gigabyte allocation, as the proptest below once found.
#[test]
fn a_request_claiming_two_billion_array_elements_fails_to_decode_not_an_abort() {
    let mut raw = BytesMut::new();
    raw.extend_from_slice(&(ApiKey::DeleteTopics as i16).to_be_bytes());
    raw.extend_from_slice(&1i16.to_be_bytes());
    raw.extend_from_slice(&7i32.to_be_bytes());
    raw.extend_from_slice(&(-1i16).to_be_bytes()); // no client id
    raw.extend_from_slice(&i32::MAX.to_be_bytes()); // topic names
    let decoded = decode_request(ApiKey::DeleteTopics, 1, raw.freeze());
    assert!(decoded.is_err(), "{decoded:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Random bodies of every served API and version decode or fail; they never panic.
    #[test]
    fn random_request_bodies_never_panic_the_decoder(
        api in 0..SUPPORTED.len(),
        version_pick in 0i16..20,
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let (key, min, max) = SUPPORTED[api];
        let version = min + version_pick % (max - min + 1);
        let mut raw = BytesMut::new();
        raw.extend_from_slice(&(key as i16).to_be_bytes());
        raw.extend_from_slice(&version.to_be_bytes());
        raw.extend_from_slice(&1i32.to_be_bytes());
        raw.extend_from_slice(&body);
        let _ = decode_request(key, version, raw.freeze());
    }

    /// Random bytes, and valid batches with bytes flipped, never panic the batch decoder.
    #[test]
    fn random_and_damaged_batches_never_panic_the_batch_decoder(
        noise in proptest::collection::vec(any::<u8>(), 0..512),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
    ) {
        let _ = decode_produced(&Bytes::from(noise), &DecompressBudget::per_request());
        let mut damaged = batch(&["{\"a\":1}", "{\"b\":2}"], Compression::Gzip).to_vec();
        for (at, byte) in flips {
            let len = damaged.len();
            damaged[at % len] ^= byte;
        }
        let _ = decode_produced(&Bytes::from(damaged), &DecompressBudget::per_request());
    }
}

#[tokio::test]
async fn sasl_authenticate_before_a_handshake_is_an_illegal_state() {
    let f = fixture();
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0u\0t"));
    let answer: SaslAuthenticateResponse = call(&f, ApiKey::SaslAuthenticate, 2, &request).await;
    assert_eq!(answer.error_code, ResponseError::IllegalSaslState.code());
    let handshake =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("GSSAPI"));
    let refused: SaslHandshakeResponse = call(&f, ApiKey::SaslHandshake, 1, &handshake).await;
    assert_eq!(
        refused.error_code,
        ResponseError::UnsupportedSaslMechanism.code()
    );
}

#[tokio::test]
async fn create_topics_refuses_the_server_topics_and_replicas_and_delete_needs_admin() {
    let f = fixture();
    let creatable = |name: &'static str, replication: i16| {
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_num_partitions(3)
            .with_replication_factor(replication)
    };
    let request = CreateTopicsRequest::default().with_topics(vec![
        creatable("audit", 1),
        creatable("messages", 1),
        creatable("replicated", 3),
    ]);
    let answer: CreateTopicsResponse = call(&f, ApiKey::CreateTopics, 5, &request).await;
    let codes: Vec<i16> = answer.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(
        codes,
        vec![
            0,
            ResponseError::TopicAuthorizationFailed.code(),
            ResponseError::InvalidReplicationFactor.code()
        ]
    );
    assert_eq!(answer.topics[0].num_partitions, 3);
    let delete = DeleteTopicsRequest::default()
        .with_topic_names(vec![TopicName(StrBytes::from_static_str("audit"))]);
    let refused: DeleteTopicsResponse = call(&f, ApiKey::DeleteTopics, 4, &delete).await;
    assert_eq!(
        refused.responses[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    assert!(f.log.describe_topic("audit").is_ok(), "still there");
}

#[tokio::test]
async fn commit_metadata_round_trips_and_a_commit_may_move_back() {
    let f = fixture();
    f.log
        .append_to(
            "orders",
            0,
            (0..10).map(|i| Record::new(format!("{i}"))).collect(),
        )
        .await
        .expect("append");
    let commit = |offset: i64, metadata: &str| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("billing")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("orders")))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset)
                            .with_committed_metadata(Some(StrBytes::from_string(
                                metadata.to_owned(),
                            ))),
                    ]),
            ])
    };
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("billing")))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("orders")))
                .with_partition_indexes(vec![0]),
        ]));
    let first: OffsetCommitResponse =
        call(&f, ApiKey::OffsetCommit, 8, &commit(8, "at eight")).await;
    assert_eq!(first.topics[0].partitions[0].error_code, 0);
    let back: OffsetCommitResponse =
        call(&f, ApiKey::OffsetCommit, 8, &commit(3, "seeked back")).await;
    assert_eq!(back.topics[0].partitions[0].error_code, 0);
    let fetched: OffsetFetchResponse = call(&f, ApiKey::OffsetFetch, 7, &fetch).await;
    let partition = &fetched.topics[0].partitions[0];
    assert_eq!(partition.committed_offset, 3);
    assert_eq!(
        partition.metadata.as_ref().map(|m| m.as_str()),
        Some("seeked back")
    );
    assert_eq!(
        f.log
            .committed_offset("billing", "orders", 0)
            .expect("read"),
        Some(3),
        "the log's offset, for HTTP too"
    );

    // Metadata over Kafka's 4096 bytes is refused, and the commit does not happen.
    let huge = "m".repeat(super::offsets::MAX_METADATA_BYTES + 1);
    let refused: OffsetCommitResponse = call(&f, ApiKey::OffsetCommit, 8, &commit(9, &huge)).await;
    assert_eq!(
        refused.topics[0].partitions[0].error_code,
        ResponseError::OffsetMetadataTooLarge.code()
    );
    assert_eq!(
        f.log
            .committed_offset("billing", "orders", 0)
            .expect("read"),
        Some(3)
    );
}
