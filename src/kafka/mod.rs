//! The Kafka wire protocol: a second listener in the same binary that lets Kafka clients
//! (kafkajs, librdkafka and the tools built on it) produce to and consume from the embedded log,
//! sharing its topics, offsets and consumer-group offsets with HTTP and the CLI.
//!
//! Layout, one concern per file:
//! - `listener`: accepts connections under a cap, each on its own task with the shutdown signal;
//! - `connection`: length-prefixed framing (bounded frame size, a byte budget shared by all
//!   connections), one request at a time, answers in order, closed when its token expires;
//! - `dispatch`: header, API key and version checks, decoding, routing, encoding;
//! - `versions`: what is served and the ApiVersions answer;
//! - `access`: a connection's scopes and the guard on the server's own topics;
//! - `producers`: InitProducerId and the idempotent producers' sequence check;
//! - `producer_store`: the producers' ids and sequences on disk (`DATA_DIR/kafka/`);
//! - `sasl`: SaslHandshake and SaslAuthenticate (PLAIN, OAUTHBEARER) with Tidings tokens;
//! - `admin`: CreateTopics, DeleteTopics, DescribeConfigs;
//! - `records`: Kafka record batches to log records and back (batches are transcoded);
//! - one file per API family: `metadata`, `produce`, `fetch`, `list_offsets`, `groups` (the
//!   classic group protocol, one owner task per group) and `offsets` (OffsetCommit/Fetch);
//! - `placement`: on a cluster, which brokers Metadata lists and whether this node coordinates a
//!   group (the leases themselves are `cluster::kafka_brokers`'); alone, one broker, node 0.
//!
//! It knows nothing of chat, HTTP or sled: records go through [`crate::log::Log`]. docs/kafka.md
//! says what works with which clients and what is refused.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::cluster::kafka_brokers::{KafkaBrokers, LeaseBucket};
use crate::config::KafkaSettings;
use crate::log::Log;

mod access;
mod admin;
mod connection;
mod dispatch;
mod fetch;
mod group;
mod groups;
mod list_offsets;
mod listener;
mod metadata;
mod offsets;
mod placement;
mod produce;
mod producer_store;
mod producers;
mod records;
mod sasl;
mod versions;

pub(crate) use groups::GroupLimit;
pub(crate) use producer_store::ProducerStoreError;

/// The node id of the one broker when not on a cluster: it leads every partition and
/// coordinates every group.
const NODE_ID: i32 = 0;

/// Where clients are told to connect: the advertised `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Advertised {
    /// Host clients connect to.
    pub(crate) host: String,
    /// Port clients connect to.
    pub(crate) port: i32,
}

impl Advertised {
    /// `kafka.advertisedListener` if set, else the bound address (Kafka clients resolve
    /// `localhost` to `::1` first, so the bound IP is given, not a name).
    pub(crate) fn from_settings(settings: &KafkaSettings, bound: std::net::SocketAddr) -> Self {
        let configured = settings.advertised_listener.as_deref().and_then(|text| {
            let (host, port) = text.rsplit_once(':')?;
            Some(Advertised {
                host: host.trim_matches(['[', ']']).to_owned(),
                port: port.parse().ok()?,
            })
        });
        configured.unwrap_or_else(|| Advertised {
            host: bound.ip().to_string(),
            port: i32::from(bound.port()),
        })
    }
}

/// What every connection shares: the log, the settings, the group coordinator.
#[derive(Debug)]
pub(crate) struct Broker {
    log: Log,
    settings: KafkaSettings,
    advertised: Advertised,
    default_partitions: u32,
    groups: groups::Groups,
    group_limit: groups::GroupLimit,
    producers: producers::Producers,
    authenticator: Option<Authenticator>,
    /// Request bytes all connections may hold at once (`kafka.maxInFlightBytes`).
    request_budget: Arc<tokio::sync::Semaphore>,
    /// On a cluster: the other nodes' brokers and the group leases; `None` alone.
    cluster: Option<Arc<KafkaBrokers>>,
    shutdown: CancellationToken,
}

impl Broker {
    /// A broker over `log`, with the producers' state in `data_dir/kafka/`;
    /// `default_partitions` is what an auto-created topic gets; `authenticator` checks SASL
    /// tokens (without one, SASL always fails); `cluster` is the lease bucket of a node on a
    /// cluster (its broker and groups are then the cluster's, see `placement`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        log: Log,
        data_dir: &std::path::Path,
        authenticator: Option<Authenticator>,
        settings: KafkaSettings,
        advertised: Advertised,
        default_partitions: u32,
        group_limit: GroupLimit,
        cluster: Option<LeaseBucket>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Result<Arc<Broker>, ProducerStoreError> {
        let producers = producers::Producers::open(producer_store::ProducerStore::open(data_dir)?)?;
        let groups = groups::Groups::new(shutdown.clone(), tasks);
        let request_budget = Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight_bytes));
        let cluster = cluster.map(|bucket| {
            Arc::new(KafkaBrokers::new(
                bucket,
                advertised.host.clone(),
                advertised.port,
            ))
        });
        Ok(Arc::new(Broker {
            log,
            settings,
            advertised,
            default_partitions,
            groups,
            group_limit,
            producers,
            authenticator,
            request_budget,
            cluster,
            shutdown,
        }))
    }
}

/// Accepts Kafka connections on `listener` until `shutdown`, each served on `tasks`. On a
/// cluster the registrations and the leases are kept from the start, and the first
/// connection is taken once this broker registered and read the others' (so that its first
/// Metadata answer lists them).
pub(crate) fn start(listener: TcpListener, broker: Arc<Broker>, tasks: &TaskTracker) {
    let shutdown = broker.shutdown.clone();
    let Some(cluster) = broker.cluster.clone() else {
        tasks.spawn(listener::accept(listener, broker, shutdown, tasks.clone()));
        return;
    };
    tasks.spawn(placement::keep_leases(Arc::clone(&broker)));
    let following = shutdown.clone();
    let watcher = Arc::clone(&cluster);
    tasks.spawn(async move { watcher.follow_brokers(&following).await });
    let connections = tasks.clone();
    tasks.spawn(async move {
        cluster.refresh_brokers().await;
        listener::accept(listener, broker, shutdown, connections).await;
    });
}

#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod group_limit_tests;
#[cfg(test)]
mod tests;
