//! Tests of the Kafka brokers and group leases across nodes through a real nats-server with
//! JetStream: two nodes in this process share one lease bucket (one replica, TTL 1 s). NATS I/O
//! is real, so the tests wait for conditions with a deadline.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::cluster::groups::{open_bucket, GroupsConfig};
use crate::cluster::test_nats::NatsServer;

async fn node(nats: &NatsServer, prefix: &str, id: &str, port: i32) -> KafkaBrokers {
    let config = GroupsConfig {
        prefix: prefix.to_owned(),
        lease_ttl: Duration::from_secs(1),
        replicas: 1,
        ..GroupsConfig::new(id)
    };
    let store = open_bucket(&nats.client().await, &config)
        .await
        .expect("the lease bucket opens");
    let bucket = LeaseBucket {
        store,
        node: id.to_owned(),
        ttl: config.lease_ttl,
    };
    KafkaBrokers::new(bucket, "127.0.0.1".to_owned(), port)
}

fn ports(brokers: &KafkaBrokers) -> Vec<i32> {
    let mut ports: Vec<i32> = brokers.brokers().iter().map(|b| b.port).collect();
    ports.sort_unstable();
    ports
}

#[test]
fn broker_ids_are_stable_positive_and_differ_between_nodes() {
    assert_eq!(broker_id("node-a"), broker_id("node-a"));
    assert_ne!(broker_id("node-a"), broker_id("node-b"));
    for node in ["", "a", "node-0123456789ab", "x_y-z"] {
        assert!(broker_id(node) > 0, "{node}");
    }
}

/// Each node lists both brokers once both registered; a node that leaves is gone from the
/// other's list at its next refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_lists_the_live_brokers() {
    let nats = NatsServer::start();
    let (a, b) = (
        node(&nats, "kb1", "a", 9001).await,
        node(&nats, "kb1", "b", 9002).await,
    );
    a.refresh_brokers().await;
    b.refresh_brokers().await;
    a.refresh_brokers().await;
    assert_eq!(ports(&a), [9001, 9002]);
    assert_eq!(ports(&b), [9001, 9002]);
    assert_eq!(a.brokers()[0], *a.me(), "the answering broker comes first");
    b.leave().await;
    a.refresh_brokers().await;
    assert_eq!(ports(&a), [9001]);
}

/// A node registering or leaving shows in the list of a node following the bucket at once,
/// without waiting for its next refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_following_the_bucket_sees_another_register_and_leave() {
    let nats = NatsServer::start();
    let a = std::sync::Arc::new(node(&nats, "kb5", "a", 9001).await);
    let b = node(&nats, "kb5", "b", 9002).await;
    let shutdown = CancellationToken::new();
    let follower = std::sync::Arc::clone(&a);
    let following = shutdown.clone();
    let follow = tokio::spawn(async move { follower.follow_brokers(&following).await });
    a.refresh_brokers().await;
    // The watch may start a moment after the spawn: b registers until a has seen it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ports(&a) != [9001, 9002] {
        assert!(Instant::now() < deadline, "a never saw b register");
        b.refresh_brokers().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.leave().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while ports(&a) != [9001] {
        assert!(Instant::now() < deadline, "a never saw b leave");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    follow.await.expect("the follower stops on shutdown");
}

/// A read of the bucket begun before a change was seen does not undo it: a broker seen to
/// leave stays gone, one seen to register stays listed; one the read no longer finds and
/// nothing told of since is dropped (its registration expired).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_begun_before_a_change_does_not_undo_it() {
    let nats = NatsServer::start();
    let a = node(&nats, "kb6", "a", 9001).await;
    let broker = |port: i32| BrokerAddress {
        id: port,
        host: "127.0.0.1".to_owned(),
        port,
    };
    let started = Instant::now();
    a.learn(7002, None);
    a.learn(7003, Some(broker(7003)));
    a.merge_read(BTreeMap::from([(7002, broker(7002))]), started);
    assert_eq!(ports(&a), [7003, 9001]);
    a.merge_read(BTreeMap::new(), Instant::now());
    assert_eq!(ports(&a), [9001], "what a later read did not find is gone");
}

/// The first node asked coordinates the group; the other names it and may not serve the
/// group (NOT_COORDINATOR), and has learnt its broker for Metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_coordinates_a_group_and_the_other_names_it() {
    let nats = NatsServer::start();
    let (a, b) = (
        node(&nats, "kb2", "a", 9001).await,
        node(&nats, "kb2", "b", 9002).await,
    );
    a.refresh_brokers().await;
    assert_eq!(a.find("workers").await.expect("a coordinator"), *a.me());
    assert_eq!(b.find("workers").await.expect("a coordinator"), *a.me());
    assert_eq!(ports(&b), [9001, 9002], "b lists the coordinator's broker");
    assert_eq!(b.coordinates("workers").await, Coordinating::No);
    assert_eq!(a.coordinates("workers").await, Coordinating::Yes);
    assert_eq!(a.holding(), ["workers"]);
    assert!(b.holding().is_empty());
    // Another group is taken by the node asked first.
    b.refresh_brokers().await;
    assert_eq!(b.coordinates("others").await, Coordinating::NewTenure);
    assert_eq!(a.find("others").await.expect("a coordinator"), *b.me());
}

/// A live group's lease outlives the TTL while renewed; an idle one lapses and the other node
/// takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_lease_lasts_and_an_idle_one_lapses() {
    let nats = NatsServer::start();
    let (a, b) = (
        node(&nats, "kb3", "a", 9001).await,
        node(&nats, "kb3", "b", 9002).await,
    );
    a.refresh_brokers().await;
    assert_eq!(a.coordinates("live").await, Coordinating::NewTenure);
    assert_eq!(a.coordinates("idle").await, Coordinating::NewTenure);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        a.refresh_brokers().await;
        let lost = a.renew_held(&["live".to_owned()]).await;
        assert!(lost.is_empty(), "lost {lost:?}");
        assert_eq!(b.coordinates("live").await, Coordinating::No);
        tokio::time::sleep(a.renew_every()).await;
    }
    assert_eq!(a.holding(), ["live"], "the idle group was let go");
    assert_eq!(b.find("live").await.expect("a coordinator"), *a.me());
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.coordinates("idle").await == Coordinating::No {
        assert!(Instant::now() < deadline, "the idle lease never lapsed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A coordinator that stops renewing (its node hangs or dies) stops serving within 2/3 of the
/// TTL; once its lease expired the other node takes the group, and the old one, back, is
/// refused: never two coordinators at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_coordinator_is_replaced_and_never_serves_beside_its_successor() {
    let nats = NatsServer::start();
    let (a, b) = (
        node(&nats, "kb4", "a", 9001).await,
        node(&nats, "kb4", "b", 9002).await,
    );
    assert_eq!(a.coordinates("workers").await, Coordinating::NewTenure);
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.coordinates("workers").await == Coordinating::No {
        assert!(Instant::now() < deadline, "b never took the group over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.find("workers").await.expect("a coordinator"), *b.me());
    assert_eq!(a.coordinates("workers").await, Coordinating::No);
    assert!(a.holding().is_empty());
    assert!(
        a.find("workers").await.is_err(),
        "b's broker is not registered yet: no live coordinator to name"
    );
    b.refresh_brokers().await;
    assert_eq!(a.find("workers").await.expect("a coordinator"), *b.me());
}
