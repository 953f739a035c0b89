//! Tests of presence and typing across nodes through a real nats-server: each node is a hub
//! with its relay, in this process. NATS I/O is real, so the tests wait for conditions (with a
//! deadline), never for fixed times; the grace period is driven by explicit hub ticks where the
//! test must prove that nothing is announced.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ephemeral::{start, EphemeralConfig};
use super::test_nats::NatsServer;
use crate::hub::{Contacts, Hub, HubConfig, Session};

/// ann and bob share a conversation.
struct AnnAndBob;

impl Contacts for AnnAndBob {
    fn contacts_of(&self, user: &str) -> Vec<String> {
        let pairs = HashMap::from([("ann", "bob"), ("bob", "ann")]);
        pairs
            .get(user)
            .map(|c| vec![(*c).to_owned()])
            .unwrap_or_default()
    }
}

/// One node: its hub, its relay task and what stops it.
struct Node {
    hub: Hub,
    relay: JoinHandle<()>,
    shutdown: CancellationToken,
}

fn hub_config(grace: Duration) -> HubConfig {
    HubConfig {
        presence_grace: grace,
        typing_ttl: Duration::from_secs(5),
        typing_interval: Duration::from_secs(1),
        ..HubConfig::default()
    }
}

/// Starts node `id` of the cluster `prefix` with timers running.
async fn node(nats: &NatsServer, prefix: &str, id: &str, grace: Duration) -> Node {
    let hub = Hub::new(hub_config(grace));
    hub.attach_contacts(Arc::new(AnnAndBob));
    let shutdown = CancellationToken::new();
    tokio::spawn(hub.clone().run_timers(shutdown.clone()));
    let config = EphemeralConfig {
        prefix: prefix.to_owned(),
        heartbeat_interval: Duration::from_millis(100),
        node_timeout: Duration::from_millis(500),
        ..EphemeralConfig::new(id)
    };
    let relay = start(nats.client().await, hub.clone(), config, shutdown.clone())
        .await
        .expect("the relay starts");
    Node {
        hub,
        relay,
        shutdown,
    }
}

/// Waits (up to 10 s) until `session` got a frame matching `wanted`; returns it and every
/// frame before it.
async fn frames_until(
    session: &mut Session,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        while let Some(frame) = session.try_recv() {
            let json = crate::api::ws::codec::to_json(&frame);
            let found = wanted(&json);
            seen.push(json);
            if found {
                return seen;
            }
        }
        assert!(Instant::now() < deadline, "not received; got {seen:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (up to 10 s) until `condition` holds.
async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn presence_of(user: &'static str, status: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |f| f["type"] == "presence" && f["userId"] == user && f["status"] == status
}

fn typing_of(conversation: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |f| f["type"] == "typing" && f["conversationId"] == conversation
}

/// Presence and typing of a user on one node reach a contact on another; the grace period
/// holds across nodes while the user has a device on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_typing_cross_nodes_and_the_grace_holds_across_them() {
    let nats = NatsServer::start();
    let grace = Duration::from_secs(3);
    let a = node(&nats, "t1", "a", grace).await;
    let b = node(&nats, "t1", "b", grace).await;
    // bob has a device on each node.
    let mut bob = a.hub.open("bob").unwrap();
    let mut bob_b = b.hub.open("bob").unwrap();
    let phone = b.hub.open("ann").unwrap();
    frames_until(&mut bob, presence_of("ann", "online")).await;
    frames_until(&mut bob_b, presence_of("ann", "online")).await;

    let laptop = a.hub.open("ann").unwrap();
    // Markers: ann types on node a after opening her laptop there; once bob sees it on node b,
    // node b has applied the laptop's online too (one node's messages arrive in order).
    a.hub.typing("ann", "c0", true, vec!["bob".to_owned()]);
    frames_until(&mut bob_b, typing_of("c0")).await;
    drop(phone);
    // And on node b after closing her phone there: once bob sees it on node a, node a has
    // applied the close.
    let recipients = vec!["bob".to_owned()];
    b.hub.typing("ann", "c1", true, recipients.clone());
    let frames = frames_until(&mut bob, typing_of("c1")).await;
    assert_eq!(frames.last().unwrap()["typing"], true);
    // Both nodes past the grace period: neither announces offline, a device is still open.
    a.hub.tick(Instant::now() + grace * 2);
    b.hub.tick(Instant::now() + grace * 2);
    drop(laptop);
    b.hub.typing("ann", "c1", false, recipients.clone());
    for session in [&mut bob, &mut bob_b] {
        let frames = frames_until(session, |f| f["typing"] == false).await;
        let presence: Vec<_> = frames.iter().filter(|f| f["type"] == "presence").collect();
        assert!(
            presence.is_empty(),
            "no offline while a device was open anywhere: {frames:?}"
        );
    }

    // Now no session anywhere: offline once the grace period passed.
    until("node b hears ann left", || !b.hub.is_online_anywhere("ann")).await;
    let left = Instant::now();
    let frames = frames_until(&mut bob, presence_of("ann", "offline")).await;
    assert!(
        left.elapsed() >= grace - Duration::from_millis(200),
        "{frames:?}"
    );
    frames_until(&mut bob_b, presence_of("ann", "offline")).await;
    assert!(frames.last().unwrap()["lastSeen"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    for node in [a, b] {
        node.shutdown.cancel();
        node.relay.await.unwrap();
    }
}

/// A node that starts shows at once who is online on the others (it asks them), and the
/// others drop a node's users when it stops gracefully (bye).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_learns_presence_at_once_and_a_stopping_node_says_bye() {
    let nats = NatsServer::start();
    let grace = Duration::from_millis(200);
    let a = node(&nats, "t2", "a", grace).await;
    let _ann = a.hub.open("ann").unwrap();
    let b = node(&nats, "t2", "b", grace).await;
    until("node b knows ann is online", || {
        b.hub.is_online_anywhere("ann")
    })
    .await;
    let mut bob = b.hub.open("bob").unwrap();
    let frames = frames_until(&mut bob, presence_of("ann", "online")).await;
    assert_eq!(frames.len(), 1);

    a.shutdown.cancel();
    a.relay.await.unwrap();
    frames_until(&mut bob, presence_of("ann", "offline")).await;
    b.shutdown.cancel();
}

/// A node that dies without a word (its relay stops, no bye) has its users shown offline after
/// the node timeout and the grace period, not online forever; a typing indicator it left
/// expires by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_users_go_offline_after_the_node_timeout() {
    let nats = NatsServer::start();
    let grace = Duration::from_millis(200);
    let a = node(&nats, "t3", "a", grace).await;
    let b = node(&nats, "t3", "b", grace).await;
    let mut bob = a.hub.open("bob").unwrap();
    let _ann = b.hub.open("ann").unwrap();
    frames_until(&mut bob, presence_of("ann", "online")).await;
    b.hub.typing("ann", "c3", true, vec!["bob".to_owned()]);
    frames_until(&mut bob, typing_of("c3")).await;

    b.relay.abort();
    let died = Instant::now();
    let frames = frames_until(&mut bob, presence_of("ann", "offline")).await;
    assert!(
        died.elapsed() >= Duration::from_millis(500) + grace - Duration::from_millis(150),
        "offline only after the node timeout and the grace: {frames:?}"
    );
    let frames = frames_until(&mut bob, typing_of("c3")).await;
    assert_eq!(frames.last().unwrap()["typing"], false);
    b.shutdown.cancel();
    a.shutdown.cancel();
}
