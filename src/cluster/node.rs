//! A node joining the cluster's shared features besides the log: its presence and typing link
//! for the hub (`ephemeral`), the group coordinator leases (`groups`) and the leases that place
//! the server's own consumers on one node at a time (`groups_exclusive`), and the bucket the
//! Kafka listener keeps its brokers and group leases in (`kafka_brokers`).
//!
//! This file owns the order in which they start and the names they share (node id, namespace,
//! replicas). It does not open the log (`server` does, through `log::jetstream`) nor start the
//! consumers it places (`pipeline`).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ephemeral::{self, EphemeralConfig, EphemeralError};
use super::groups::{self, ClusterGroups, GroupsConfig, GroupsStartError};
use super::groups_exclusive::Exclusive;
use super::kafka_brokers::LeaseBucket;
use super::ClusterError;
use crate::bus::Coordinator;
use crate::config::ClusterConfig;
use crate::hub::Hub;
use crate::pipeline::Placement;

/// Why the node could not join the cluster's shared features.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JoinError {
    /// No NATS server answered.
    #[error("{0}")]
    Connect(String),
    /// The presence link did not start.
    #[error("cannot start presence across nodes: {0}")]
    Ephemeral(String),
    /// The lease bucket could not be opened.
    #[error("cannot open the cluster's leases: {0}")]
    Leases(String),
}

impl From<ClusterError> for JoinError {
    fn from(error: ClusterError) -> Self {
        JoinError::Connect(error.to_string())
    }
}

impl From<EphemeralError> for JoinError {
    fn from(error: EphemeralError) -> Self {
        JoinError::Ephemeral(error.to_string())
    }
}

impl From<GroupsStartError> for JoinError {
    fn from(error: GroupsStartError) -> Self {
        JoinError::Leases(error.to_string())
    }
}

/// What a node of a cluster shares with the others, once joined.
#[derive(Debug, Clone)]
pub(crate) struct ClusterNode {
    /// Where the `notify` workers and the sink consumers run: by lease, one node at a time.
    pub placement: Placement,
    /// The HTTP consumer groups, each run by the node holding its lease.
    pub groups: ClusterGroups,
    /// The lease bucket, for the Kafka listener's brokers and group coordinators.
    pub kafka: LeaseBucket,
}

/// Connects to the cluster and starts the hub's peer link and the leases, all stopping with
/// `shutdown` (the peer link says goodbye to the other nodes on the way out).
pub(crate) async fn join(
    config: &ClusterConfig,
    hub: Hub,
    coordinator: Arc<Coordinator>,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> Result<ClusterNode, JoinError> {
    let node_id = config.node_id_or_drawn();
    let client = super::connect(config).await?;
    let ephemeral = EphemeralConfig {
        prefix: config.namespace.clone(),
        ..EphemeralConfig::new(&node_id)
    };
    let relay = ephemeral::start(client.clone(), hub, ephemeral, shutdown.clone()).await?;
    tasks.spawn(async move {
        if let Err(error) = relay.await {
            tracing::error!(%error, "the presence link across nodes stopped");
        }
    });
    let leases = GroupsConfig {
        prefix: config.namespace.clone(),
        replicas: config.replicas,
        call_timeout: config.request_timeout,
        ..GroupsConfig::new(&node_id)
    };
    let exclusive = Exclusive::open(&client, &leases).await?;
    let kafka = LeaseBucket {
        store: groups::open_bucket(&client, &leases).await?,
        node: node_id.clone(),
        ttl: leases.lease_ttl,
    };
    let (groups, serving) = groups::start(client, coordinator, leases, shutdown).await?;
    tasks.spawn(async move {
        if let Err(error) = serving.await {
            tracing::error!(%error, "the group calls from other nodes stopped");
        }
    });
    tracing::info!(node = %node_id, "joined the cluster: presence, group and work leases");
    Ok(ClusterNode {
        placement: Placement::Leased(Arc::new(exclusive)),
        groups,
        kafka,
    })
}
