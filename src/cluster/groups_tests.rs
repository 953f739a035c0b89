//! Tests of consumer groups across nodes through a real nats-server with JetStream: two nodes,
//! each with its own coordinator, in this process; the lease bucket has one replica (one
//! server). NATS I/O is real, so the tests wait for conditions with a deadline.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::cluster::test_nats::NatsServer;

struct Node {
    groups: ClusterGroups,
    task: JoinHandle<()>,
    shutdown: CancellationToken,
}

async fn node(nats: &NatsServer, prefix: &str, id: &str) -> Node {
    node_with_ttl(nats, prefix, id, Duration::from_secs(1)).await
}

async fn node_with_ttl(nats: &NatsServer, prefix: &str, id: &str, lease_ttl: Duration) -> Node {
    let config = GroupsConfig {
        prefix: prefix.to_owned(),
        lease_ttl,
        replicas: 1,
        call_timeout: Duration::from_secs(2),
        ..GroupsConfig::new(id)
    };
    let shutdown = CancellationToken::new();
    let local = Arc::new(Coordinator::default());
    let (groups, task) = start(nats.client().await, local, config, shutdown.clone())
        .await
        .expect("group coordination starts");
    Node {
        groups,
        task,
        shutdown,
    }
}

fn subscription(topics: &[&str]) -> Subscription {
    Subscription {
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        ..Subscription::default()
    }
}

fn partitions(lease: &Lease) -> Vec<u32> {
    lease
        .partitions
        .iter()
        .map(|(tp, _)| tp.partition)
        .collect()
}

/// Members joining through different nodes share one group: the partitions are spread over
/// all of them with none owned twice, and every call works through either node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_nodes_share_the_partitions_with_none_owned_twice() {
    let nats = NatsServer::start();
    let (a, b) = (node(&nats, "g1", "a").await, node(&nats, "g1", "b").await);
    let topics = vec![("orders".to_owned(), 6)];
    let first = a
        .groups
        .join("billing", "ann", subscription(&["orders"]), &topics)
        .await
        .unwrap();
    let second = b
        .groups
        .join("billing", "ann", subscription(&["orders"]), &topics)
        .await
        .unwrap();
    let third = b
        .groups
        .join("billing", "bob", subscription(&["orders"]), &topics)
        .await
        .unwrap();
    assert_eq!(a.groups.coordinating(), ["billing"]);
    assert!(b.groups.coordinating().is_empty(), "b forwards to a");

    let mut owned = Vec::new();
    for (node, member, owner) in [
        (&b, &first.member_id, "ann"),
        (&a, &second.member_id, "ann"),
        (&a, &third.member_id, "bob"),
    ] {
        let lease = node
            .groups
            .lease("billing", member, owner, &topics)
            .await
            .unwrap();
        assert_eq!(
            lease.partitions.len(),
            2,
            "six partitions over three members"
        );
        owned.extend(partitions(&lease));
    }
    owned.sort();
    assert_eq!(owned, [0, 1, 2, 3, 4, 5], "each partition owned once");

    let members = b.groups.describe("billing", &topics).await.unwrap();
    assert_eq!(members.len(), 3);
    let lease = b
        .groups
        .lease("billing", &third.member_id, "bob", &topics)
        .await
        .unwrap();
    let (tp, _) = lease.partitions[0].clone();
    b.groups
        .advance(
            "billing",
            &third.member_id,
            lease.generation,
            &[(tp.clone(), 9)],
        )
        .await
        .unwrap();
    let again = a
        .groups
        .lease("billing", &third.member_id, "bob", &topics)
        .await
        .unwrap();
    assert_eq!(
        again.partitions[0].1,
        Some(9),
        "a position advanced through b"
    );
    b.groups
        .check_owner(
            "billing",
            (&third.member_id, "bob"),
            std::slice::from_ref(&tp),
            &topics,
        )
        .await
        .unwrap();
    let refused = b
        .groups
        .check_owner("billing", (&third.member_id, "mallory"), &[tp], &topics)
        .await;
    assert!(matches!(
        refused,
        Err(GroupsError::Bus(BusError::UnknownMember { .. }))
    ));

    b.groups
        .leave("billing", &first.member_id, "ann", &topics)
        .await
        .unwrap();
    let lease = a
        .groups
        .lease("billing", &third.member_id, "bob", &topics)
        .await
        .unwrap();
    assert_eq!(lease.partitions.len(), 3, "a rebalance over the two left");
    for node in [a, b] {
        node.shutdown.cancel();
        node.task.await.unwrap();
    }
}

/// When the coordinator node dies, its groups are unavailable (503) only until its lease
/// expires; then another node takes over and the members rejoin there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_takes_over_when_the_coordinator_dies() {
    let nats = NatsServer::start();
    let (a, b) = (node(&nats, "g2", "a").await, node(&nats, "g2", "b").await);
    let topics = vec![("orders".to_owned(), 4)];
    a.groups
        .join("billing", "ann", subscription(&["orders"]), &topics)
        .await
        .unwrap();
    let member = b
        .groups
        .join("billing", "ann", subscription(&["orders"]), &topics)
        .await
        .unwrap();
    let lease = b
        .groups
        .lease("billing", &member.member_id, "ann", &topics)
        .await
        .unwrap();
    assert_eq!(lease.partitions.len(), 2);

    a.shutdown.cancel();
    a.task.await.unwrap();
    let died = Instant::now();
    let mut unavailable = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    let outcome = loop {
        assert!(Instant::now() < deadline, "b never took over");
        match b
            .groups
            .lease("billing", &member.member_id, "ann", &topics)
            .await
        {
            Err(GroupsError::Unavailable { .. }) => unavailable += 1,
            other => break other,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        unavailable > 0,
        "unavailable while the dead node's lease lived"
    );
    assert!(
        matches!(
            outcome,
            Err(GroupsError::Bus(BusError::UnknownMember { .. }))
        ),
        "the new coordinator knows no members: {outcome:?}"
    );
    assert!(
        died.elapsed() >= Duration::from_millis(500),
        "not before the lease ran out"
    );
    assert_eq!(b.groups.coordinating(), ["billing"]);
    let rejoined = b
        .groups
        .join("billing", "ann", subscription(&["orders"]), &topics)
        .await
        .unwrap();
    assert_eq!(
        rejoined.assignment.len(),
        4,
        "the one member left has every partition"
    );
    b.shutdown.cancel();
}

/// A live group's lease is renewed: its coordinator stays put well past the lease TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_groups_lease_is_renewed_past_its_ttl() {
    let nats = NatsServer::start();
    let (a, b) = (node(&nats, "g3", "a").await, node(&nats, "g3", "b").await);
    let topics = vec![("orders".to_owned(), 2)];
    let member = a
        .groups
        .join("billing", "ann", subscription(&["orders"]), &topics)
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        // The member polls through b, which forwards: a keeps the group and the member.
        b.groups
            .lease("billing", &member.member_id, "ann", &topics)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(a.groups.coordinating(), ["billing"]);
    assert!(b.groups.coordinating().is_empty());
    a.shutdown.cancel();
    b.shutdown.cancel();
}

/// The cluster's group list comes from the leases, and an offset reset runs only on the
/// group's coordinator: refused while members are live elsewhere, allowed once the idle lease
/// lapsed and this node took it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_listed_and_a_reset_waits_for_the_group_to_be_idle_here() {
    let nats = NatsServer::start();
    let (a, b) = (node(&nats, "g4", "a").await, node(&nats, "g4", "b").await);
    let topics = vec![("orders".to_owned(), 2)];
    let (on_a, on_b) = (
        Groups::Cluster(a.groups.clone()),
        Groups::Cluster(b.groups.clone()),
    );
    let member = on_a
        .join("billing/eu", "ann", subscription(&["orders"]), &topics)
        .await
        .unwrap();
    assert_eq!(on_b.groups().await.unwrap(), ["billing/eu"]);
    let refused = on_b.for_reset("billing/eu", &topics).await;
    assert!(matches!(
        refused,
        Err(GroupsError::Bus(BusError::ActiveGroup { members: 1, .. }))
    ));
    on_b.leave("billing/eu", &member.member_id, "ann", &topics)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let coordinator = loop {
        match on_b.for_reset("billing/eu", &topics).await {
            Ok(coordinator) => break coordinator,
            Err(GroupsError::Unavailable { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
        assert!(Instant::now() < deadline, "the idle lease never lapsed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(b.groups.coordinating(), ["billing/eu"]);
    assert_eq!(
        coordinator
            .while_inactive("billing/eu", &topics, || 7)
            .unwrap(),
        7
    );
    let local = Groups::Local(Arc::new(Coordinator::default()));
    assert!(local.groups().await.unwrap().is_empty());
}

/// Calls that all find this node's lease stale at once renew it once between them: none is
/// refused for a revision another one just moved, so the node keeps the group and its members.
/// Without one write at a time, one call renews and the others are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_find_the_lease_stale_together_renew_it_once_and_keep_the_group() {
    let nats = NatsServer::start();
    let (groups, kept) = stale_lease_met_by_eight_calls(&nats, "g5").await;
    assert_eq!(kept, [true; 8], "every call kept the group");
    assert_eq!(groups.coordinating(), ["billing"]);
    assert_eq!(groups.inner.local.groups(), ["billing"], "members kept");
}

/// A renewal tick that comes between a call taking a group's lease and the call adding its
/// member keeps the lease: the member's group is renewed from then on. A lease that two ticks
/// in a row find idle is let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_tick_keeps_a_lease_just_taken_for_a_member_still_joining() {
    let nats = NatsServer::start();
    let groups =
        without_renewal_timer(node_with_ttl(&nats, "g6", "a", Duration::from_secs(10)).await).await;
    assert!(groups.take("billing").await.unwrap());
    assert!(groups.take("audit").await.unwrap());
    groups.renew_live().await;
    assert_eq!(
        groups.coordinating(),
        ["audit", "billing"],
        "both just taken"
    );
    let topics = vec![("orders".to_owned(), 2)];
    groups
        .join("billing", "ann", subscription(&["orders"]), &topics)
        .await
        .unwrap();
    for _ in 0..3 {
        groups.renew_live().await;
        assert_eq!(groups.coordinating(), ["billing"], "audit stayed idle");
    }
    assert_eq!(groups.inner.local.groups(), ["billing"], "the member kept");
}

/// `node`'s groups with its serve task stopped: no answers to forwarded calls and no renewal
/// but the ones a test makes.
async fn without_renewal_timer(node: Node) -> ClusterGroups {
    let Node {
        groups,
        task,
        shutdown,
    } = node;
    shutdown.cancel();
    task.await.unwrap();
    groups
}

/// A node of its own (under `prefix`) holding group `billing` with a member, its record of the
/// lease made stale while the bucket still holds it; what 8 concurrent calls then found.
async fn stale_lease_met_by_eight_calls(
    nats: &NatsServer,
    prefix: &str,
) -> (ClusterGroups, Vec<bool>) {
    // A TTL long enough that the bucket still holds the lease for this node while the calls
    // below run, even if the machine stalls for seconds.
    let a = node_with_ttl(nats, prefix, "a", Duration::from_secs(10)).await;
    let topics = vec![("orders".to_owned(), 2)];
    a.groups
        .join("billing", "ann", subscription(&["orders"]), &topics)
        .await
        .unwrap();
    // No more renewals on the timer, and this node's record of the lease made stale.
    let groups = without_renewal_timer(a).await;
    groups.inner.leases.backdate("billing");
    assert!(!groups.inner.leases.fresh("billing"));
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let groups = groups.clone();
            tokio::spawn(async move { groups.still_coordinating("billing").await })
        })
        .collect();
    let mut kept = Vec::new();
    for call in calls {
        kept.push(call.await.unwrap());
    }
    (groups, kept)
}
