//! The Kafka listener of two nodes sharing one lease bucket (a real nats-server with
//! JetStream), driven through `dispatch` with encoded requests: both name the same coordinator,
//! the other node answers the group APIs `NOT_COORDINATOR`, and Metadata lists both brokers.
//! Also: a group id that is not a group name is refused, alone or on a cluster.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::super::group_limit_tests::join;
use super::super::tests::{call, fixture_on, Fixture};
use crate::cluster::kafka_brokers::test_bucket;
use crate::cluster::test_nats::NatsServer;

async fn find(f: &Fixture, group: &str) -> FindCoordinatorResponse {
    let request = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.into()));
    call(f, ApiKey::FindCoordinator, 3, &request).await
}

async fn heartbeat(f: &Fixture, group: &str, member: &str, generation: i32) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_member_id(StrBytes::from_string(member.to_owned()))
        .with_generation_id(generation);
    let answer: HeartbeatResponse = call(f, ApiKey::Heartbeat, 3, &request).await;
    answer.error_code
}

async fn broker_ports(f: &Fixture) -> Vec<i32> {
    let answer: MetadataResponse = call(f, ApiKey::Metadata, 6, &MetadataRequest::default()).await;
    let mut ports: Vec<i32> = answer.brokers.iter().map(|b| b.port).collect();
    ports.sort_unstable();
    ports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_holding_a_groups_lease_coordinates_it_and_the_other_says_not_coordinator() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let a = fixture_on(Some(test_bucket(&client, "kp", "node-a").await), 9001);
    let b = fixture_on(Some(test_bucket(&client, "kp", "node-b").await), 9002);
    a.broker
        .cluster
        .as_ref()
        .expect("a cluster")
        .refresh_brokers()
        .await;

    let from_a = find(&a, "workers").await;
    let from_b = find(&b, "workers").await;
    assert_eq!((from_a.error_code, from_b.error_code), (0, 0));
    assert_eq!(from_a.port, 9001, "the first node asked takes the group");
    assert_eq!((from_b.node_id, from_b.port), (from_a.node_id, 9001));
    assert_ne!(
        from_a.node_id.0, 0,
        "a cluster's broker ids are the nodes' own"
    );
    assert_eq!(
        broker_ports(&b).await,
        [9001, 9002],
        "b lists the coordinator"
    );

    let refused = join(&b, "workers", 10_000).await;
    assert_eq!(refused.error_code, ResponseError::NotCoordinator.code());
    let joined = join(&a, "workers", 10_000).await;
    assert_eq!(joined.error_code, 0, "{joined:?}");
    let member = joined.member_id.as_str();
    assert_eq!(
        heartbeat(&a, "workers", member, joined.generation_id).await,
        0
    );
    assert_eq!(
        heartbeat(&b, "workers", member, joined.generation_id).await,
        ResponseError::NotCoordinator.code()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_group_name_is_refused_before_it_reaches_the_lease_bucket() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let a = fixture_on(Some(test_bucket(&client, "kh", "node-a").await), 9001);
    // A lease key this long would exceed the NATS server's control line and cost the node its
    // connection to the cluster.
    refuses_hostile_group_ids(&a, 9001).await;
}

#[tokio::test]
async fn a_group_id_that_is_not_a_group_name_is_refused_by_a_broker_alone_too() {
    // OffsetCommit refuses such a group: a member that could join it could never commit.
    refuses_hostile_group_ids(&fixture_on(None, 9092), 9092).await;
}

/// FindCoordinator and JoinGroup answer `INVALID_GROUP_ID` for 30,000 characters, an empty id
/// and `..`; a normal group is still found on the broker at `port` afterwards.
async fn refuses_hostile_group_ids(f: &Fixture, port: i32) {
    for hostile in ["g".repeat(30_000), String::new(), "..".to_owned()] {
        let answer = find(f, &hostile).await;
        assert_eq!(
            answer.error_code,
            ResponseError::InvalidGroupId.code(),
            "{} chars",
            hostile.len()
        );
        let refused = join(f, &hostile, 10_000).await;
        assert_eq!(refused.error_code, ResponseError::InvalidGroupId.code());
    }
    let answer = find(f, "workers").await;
    assert_eq!((answer.error_code, answer.port), (0, port), "{answer:?}");
}

/// A fetch for `offset` of `t`/0 that waits at most `max_wait_ms`: the partition's answer.
async fn fetch_at(f: &Fixture, offset: i64, max_wait_ms: i32) -> fetch_response::PartitionData {
    let request = FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let mut answer: FetchResponse = call(f, ApiKey::Fetch, 11, &request).await;
    answer.responses.remove(0).partitions.remove(0)
}

/// On a cluster every node answers as the leader, and a client that moves to another node may
/// ask it for records its copy of the log has not received yet: the fetch waits for them as it
/// waits at the high watermark, and only an offset still past the end when its wait is over is
/// out of range. A broker alone answers at once: its log is the whole of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_fetch_past_the_high_watermark_waits_for_the_records() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let node = fixture_on(Some(test_bucket(&client, "kf", "node-a").await), 9001);
    let alone = fixture_on(None, 9092);
    for f in [&node, &alone] {
        f.log
            .create_topic("t", crate::log::TopicConfig::with_partitions(1))
            .await
            .expect("create t");
        f.log
            .append_to("t", 0, vec![crate::log::Record::new("0")])
            .await
            .expect("append");
    }
    let log = node.log.clone();
    let arriving = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let records = ["1", "2", "3"].map(crate::log::Record::new).to_vec();
        log.append_to("t", 0, records).await.expect("append");
    });
    let waited = fetch_at(&node, 2, 10_000).await;
    arriving.await.expect("the records arrive");
    assert_eq!(waited.error_code, 0, "{waited:?}");
    assert_eq!(waited.high_watermark, 4);
    let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(
        &mut waited.records.clone().expect("records"),
    )
    .expect("batches");
    let first = sets
        .first()
        .and_then(|s| s.records.first())
        .map(|r| r.offset);
    assert_eq!(first, Some(2), "from the asked offset");

    let past_the_end = fetch_at(&node, 9, 100).await;
    assert_eq!(
        past_the_end.error_code,
        ResponseError::OffsetOutOfRange.code()
    );
    let alone_past_the_end = fetch_at(&alone, 9, 10_000).await;
    assert_eq!(
        alone_past_the_end.error_code,
        ResponseError::OffsetOutOfRange.code()
    );
}
