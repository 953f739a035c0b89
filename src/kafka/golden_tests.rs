//! Golden files: request frames captured from real clients (kafkajs 2.2.4, confluent-kafka
//! 2.16.1 / librdkafka 2.16, kcat 1.7.1 / librdkafka 2.0) in tests/fixtures/kafka/, replayed
//! through `dispatch` against a fresh broker in the order a client sends them, with the answer
//! fields that matter checked. How they were captured and how to recapture: the README there.
//!
//! Requests that name the capture's own group members or generations (SyncGroup, Heartbeat,
//! OffsetCommit, a LeaveGroup of a member) are checked to be refused for that reason, which
//! shows the fields were decoded as the client meant them.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;

use super::access::Session;
use super::dispatch::{handle_frame, Reply};
use super::tests::{fixture, Fixture};

/// The order a client sends its requests in: topics exist before they are produced to, records
/// before they are fetched.
const ORDER: [&str; 20] = [
    "ApiVersions",
    "SaslHandshake",
    "SaslAuthenticate",
    "Metadata",
    "CreateTopics",
    "DescribeConfigs",
    "InitProducerId",
    "Produce",
    "ListOffsets",
    "Fetch",
    "FindCoordinator",
    "JoinGroup",
    "SyncGroup",
    "Heartbeat",
    "OffsetCommit",
    "OffsetFetch",
    "ListGroups",
    "DescribeGroups",
    "LeaveGroup",
    "DeleteTopics",
];

fn fixtures(client: &str) -> Vec<(String, i16, Bytes)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kafka")
        .join(client);
    let mut frames: Vec<(String, i16, Bytes)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "bin"))
        .map(|path| parse_name(&path))
        .collect();
    frames.sort_by_key(|(api, _, _)| ORDER.iter().position(|o| o == api).unwrap_or(usize::MAX));
    frames
}

/// `Api-vN.bin` and its bytes.
fn parse_name(path: &PathBuf) -> (String, i16, Bytes) {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a UTF-8 name");
    let (api, version) = stem.rsplit_once("-v").expect("named Api-vN");
    let bytes = std::fs::read(path).expect("read a golden file");
    (
        api.to_owned(),
        version.parse().expect("a version"),
        Bytes::from(bytes),
    )
}

/// The answer's body, after its header.
fn answer<R: Decodable>(reply: Reply, api_key: ApiKey, version: i16, correlation_id: i32) -> R {
    let Reply::Frame(mut frame) = reply else {
        panic!("{api_key:?} v{version}: {reply:?}");
    };
    let header_version = match api_key {
        ApiKey::ApiVersions => 0,
        _ => api_key.response_header_version(version),
    };
    let header = ResponseHeader::decode(&mut frame, header_version).expect("a header");
    assert_eq!(header.correlation_id, correlation_id, "{api_key:?}");
    R::decode(&mut frame, version).expect("an answer body")
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

/// Replays one client's captured frames and checks each answer.
async fn replay(client: &str) -> Vec<String> {
    let f = fixture();
    let mut session = Session::anonymous(&["admin".to_owned()], "127.0.0.1:5555".into());
    let mut seen = Vec::new();
    for (api, version, frame) in fixtures(client) {
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let api_key = ApiKey::try_from(key).expect("a known API key");
        assert_eq!(
            frame[2..4],
            version.to_be_bytes(),
            "{client} {api}: the name's version"
        );
        let reply = handle_frame(&f.broker, &mut session, frame).await;
        check(&f, client, api_key, version, reply, correlation_id);
        seen.push(format!("{api}-v{version}"));
    }
    seen
}

fn check(f: &Fixture, client: &str, api_key: ApiKey, version: i16, reply: Reply, cid: i32) {
    let what = format!("{client} {api_key:?} v{version}");
    match api_key {
        ApiKey::ApiVersions => {
            let a: ApiVersionsResponse = answer(reply, api_key, version, cid);
            assert_eq!(a.error_code, 0, "{what}");
            assert!(a
                .api_keys
                .iter()
                .any(|k| k.api_key == ApiKey::Produce as i16));
        }
        ApiKey::SaslHandshake => {
            let a: SaslHandshakeResponse = answer(reply, api_key, version, cid);
            assert_eq!(a.error_code, 0, "{what}");
        }
        ApiKey::SaslAuthenticate => {
            // The fixture has no authenticator: the PLAIN bytes were parsed into a token,
            // which then cannot be checked (a message that did not parse says so instead).
            let a: SaslAuthenticateResponse = answer(reply, api_key, version, cid);
            assert_eq!(a.error_code, code(ResponseError::SaslAuthenticationFailed));
            let message = a.error_message.map(|m| m.as_str().to_owned());
            assert_eq!(
                message.as_deref(),
                Some("tokens cannot be checked"),
                "{what}"
            );
        }
        ApiKey::Metadata => {
            let a: MetadataResponse = answer(reply, api_key, version, cid);
            assert_eq!(a.brokers.len(), 1, "{what}");
            assert!(
                a.topics.iter().all(|t| t.error_code == 0),
                "{what}: {:?}",
                a.topics
            );
        }
        ApiKey::CreateTopics => {
            let a: CreateTopicsResponse = answer(reply, api_key, version, cid);
            assert!(
                a.topics.iter().all(|t| t.error_code == 0),
                "{what}: {:?}",
                a.topics
            );
            let info = f.log.describe_topic("golden").expect("created");
            assert_eq!(info.partitions.len(), 2, "{what}");
        }
        ApiKey::DescribeConfigs => {
            let a: DescribeConfigsResponse = answer(reply, api_key, version, cid);
            let result = &a.results[0];
            assert_eq!(result.error_code, 0, "{what}");
            assert!(result
                .configs
                .iter()
                .any(|c| c.name.as_str() == "retention.ms"));
        }
        ApiKey::InitProducerId => {
            let a: InitProducerIdResponse = answer(reply, api_key, version, cid);
            assert_eq!((a.error_code, a.producer_epoch), (0, 0), "{what}");
            assert!(a.producer_id.0 >= 0, "{what}");
        }
        ApiKey::Produce => {
            let a: ProduceResponse = answer(reply, api_key, version, cid);
            for partition in a.responses.iter().flat_map(|t| &t.partition_responses) {
                assert_eq!(partition.error_code, 0, "{what}");
                assert_eq!(partition.base_offset, 0, "{what}: the first batch");
            }
        }
        ApiKey::ListOffsets => {
            let a: ListOffsetsResponse = answer(reply, api_key, version, cid);
            for partition in a.topics.iter().flat_map(|t| &t.partitions) {
                assert_eq!(partition.error_code, 0, "{what}");
                assert!(partition.offset >= 0, "{what}");
            }
        }
        ApiKey::Fetch => {
            let a: FetchResponse = answer(reply, api_key, version, cid);
            let partitions: Vec<_> = a.responses.iter().flat_map(|t| &t.partitions).collect();
            assert!(partitions.iter().all(|p| p.error_code == 0), "{what}");
            // The captures fetch from offset 0: a partition that holds records sends some.
            for partition in partitions.iter().filter(|p| p.high_watermark > 0) {
                let bytes = partition.records.as_ref().map_or(0, Bytes::len);
                assert!(
                    bytes > 0,
                    "{what}: records of partition {}",
                    partition.partition_index
                );
            }
        }
        ApiKey::FindCoordinator => {
            let a: FindCoordinatorResponse = answer(reply, api_key, version, cid);
            let port = a.coordinators.first().map_or(a.port, |c| c.port);
            assert_eq!((a.error_code, port), (0, 9092), "{what}");
        }
        ApiKey::JoinGroup => {
            let a: JoinGroupResponse = answer(reply, api_key, version, cid);
            assert_eq!(a.error_code, 0, "{what}");
            assert_eq!(
                a.generation_id, 1,
                "{what}: a lone member's first generation"
            );
            assert_eq!(a.leader, a.member_id, "{what}");
        }
        ApiKey::SyncGroup => {
            let a: SyncGroupResponse = answer(reply, api_key, version, cid);
            assert_eq!(a.error_code, code(ResponseError::UnknownMemberId), "{what}");
        }
        ApiKey::Heartbeat => {
            let a: HeartbeatResponse = answer(reply, api_key, version, cid);
            assert_eq!(a.error_code, code(ResponseError::UnknownMemberId), "{what}");
        }
        ApiKey::OffsetCommit => {
            let a: OffsetCommitResponse = answer(reply, api_key, version, cid);
            let refused = [
                code(ResponseError::UnknownMemberId),
                code(ResponseError::IllegalGeneration),
            ];
            for partition in a.topics.iter().flat_map(|t| &t.partitions) {
                assert!(
                    refused.contains(&partition.error_code),
                    "{what}: {partition:?}"
                );
            }
        }
        ApiKey::OffsetFetch => {
            let a: OffsetFetchResponse = answer(reply, api_key, version, cid);
            assert_eq!(a.error_code, 0, "{what}");
            for group in &a.groups {
                assert_eq!(group.error_code, 0, "{what}");
            }
        }
        ApiKey::ListGroups => {
            let a: ListGroupsResponse = answer(reply, api_key, version, cid);
            assert_eq!(a.error_code, 0, "{what}");
        }
        ApiKey::DescribeGroups => {
            let a: DescribeGroupsResponse = answer(reply, api_key, version, cid);
            assert_eq!(a.groups[0].error_code, 0, "{what}");
            assert_eq!(a.groups[0].group_id.0.as_str(), "golden-group", "{what}");
        }
        ApiKey::LeaveGroup => {
            let a: LeaveGroupResponse = answer(reply, api_key, version, cid);
            let unknown = code(ResponseError::UnknownMemberId);
            let member = a.members.first().map_or(a.error_code, |m| m.error_code);
            assert_eq!(member, unknown, "{what}: the capture's member is not ours");
        }
        ApiKey::DeleteTopics => {
            let a: DeleteTopicsResponse = answer(reply, api_key, version, cid);
            assert!(a.responses.iter().all(|t| t.error_code == 0), "{what}");
            assert!(f.log.describe_topic("golden").is_err(), "{what}: gone");
        }
        other => panic!("{client}: no check for {other:?}"),
    }
}

/// Every API librdkafka (confluent-kafka 2.16.1) uses, from its own bytes: an lz4 idempotent
/// produce, a group's join, sync, heartbeat, commit and leave, admin calls, SASL/PLAIN.
#[tokio::test]
async fn librdkafka_requests_are_answered_as_kafka_would() {
    let seen = replay("librdkafka").await;
    assert_eq!(seen.len(), 20, "{seen:?}");
}

/// Every API kafkajs 2.2.4 uses, from its own bytes (it sends no Heartbeat in a short run).
#[tokio::test]
async fn kafkajs_requests_are_answered_as_kafka_would() {
    let seen = replay("kafkajs").await;
    assert_eq!(seen.len(), 19, "{seen:?}");
}

/// What kcat 1.7.1 sends to list metadata, produce and consume a topic to its end.
#[tokio::test]
async fn kcat_requests_are_answered_as_kafka_would() {
    let seen = replay("kcat").await;
    assert_eq!(seen.len(), 5, "{seen:?}");
}
