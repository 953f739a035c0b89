//! Where this Kafka listener stands among the nodes. Alone (no `--cluster`) it is the one
//! broker, node 0: the leader of every partition and the coordinator of every group. On a
//! cluster every node's listener is a broker of its own (`cluster::kafka_brokers` keeps the
//! registry and the leases): Metadata lists every live node, the answering node leads every
//! partition (each node serves every partition from the shared log, so a client reads and
//! writes through the node it asked), FindCoordinator names the node holding the group's lease,
//! and the group APIs on any other node answer `NOT_COORDINATOR` so that the client looks the
//! coordinator up again.
//!
//! This file decides nothing about a group's members (that is `group`), only where it runs.

use std::sync::Arc;

use kafka_protocol::ResponseError;

use super::{Broker, NODE_ID};
use crate::cluster::kafka_brokers::{BrokerAddress, Coordinating};

/// This broker's node id.
pub(super) fn my_id(broker: &Broker) -> i32 {
    broker.cluster.as_ref().map_or(NODE_ID, |c| c.me().id)
}

/// This broker's address and id.
fn me(broker: &Broker) -> BrokerAddress {
    BrokerAddress {
        id: my_id(broker),
        host: broker.advertised.host.clone(),
        port: broker.advertised.port,
    }
}

/// The brokers Metadata lists: this one first, then the other live nodes'.
pub(super) fn brokers(broker: &Broker) -> Vec<BrokerAddress> {
    match &broker.cluster {
        Some(cluster) => cluster.brokers(),
        None => vec![me(broker)],
    }
}

/// FindCoordinator for `group`: the broker holding its lease (taken by this one if nobody
/// does); `COORDINATOR_NOT_AVAILABLE` (retriable) while its holder is dead but its lease has
/// not expired, or the cluster cannot be reached; `INVALID_GROUP_ID` for an id that is not a
/// valid group name.
pub(super) async fn coordinator(
    broker: &Broker,
    group: &str,
) -> Result<BrokerAddress, ResponseError> {
    valid_group(group)?;
    let Some(cluster) = &broker.cluster else {
        return Ok(me(broker));
    };
    cluster.find(group).await.map_err(|reason| {
        tracing::debug!(group, %reason, "kafka: no coordinator to name");
        ResponseError::CoordinatorNotAvailable
    })
}

/// Why this node may not serve a call of `group` now: `NOT_COORDINATOR` when another node
/// holds its lease or this one lost it (what this node knew of the group is then dropped: its
/// members rejoin on the new coordinator), or when its renewal is overdue (the group is kept:
/// the client retries, and is served again once a renewal succeeds). `INVALID_GROUP_ID` for an
/// id that is not a valid group name. `None` alone, or while this node holds the lease.
pub(super) async fn refusal(broker: &Broker, group: &str) -> Option<ResponseError> {
    if let Err(invalid) = valid_group(group) {
        return Some(invalid);
    }
    let cluster = broker.cluster.as_ref()?;
    match cluster.coordinates(group).await {
        Coordinating::Yes => None,
        Coordinating::NewTenure => {
            broker.groups.forget(group);
            None
        }
        Coordinating::NotNow => Some(ResponseError::NotCoordinator),
        Coordinating::No => {
            broker.groups.forget(group);
            Some(ResponseError::NotCoordinator)
        }
    }
}

/// A group id must be a valid group name, on any broker: OffsetCommit refuses any other (so a
/// member could join but never commit), and on a cluster the id names a lease key, which a
/// client's unbounded id would push past the NATS server's control line (the server would
/// close the node's connection to the cluster).
fn valid_group(group: &str) -> Result<(), ResponseError> {
    crate::log::validate_group_name(group).map_err(|_| ResponseError::InvalidGroupId)
}

/// On a cluster, until shutdown: every third of the lease TTL, registers this broker, reads
/// the others', renews the leases of the groups live here and drops those whose lease was
/// lost; at shutdown releases all of it so that other nodes take over at once. The first round
/// is a period after the start: [`start`](super::start) registers before it takes connections.
pub(super) async fn keep_leases(broker: Arc<Broker>) {
    let Some(cluster) = broker.cluster.clone() else {
        return;
    };
    let period = cluster.renew_every();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = broker.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        cluster.refresh_brokers().await;
        let mut live = broker.groups.live_names();
        live.sort();
        for group in cluster.renew_held(&live).await {
            broker.groups.forget(&group);
        }
    }
    cluster.leave().await;
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
