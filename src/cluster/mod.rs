//! Running several Tidings nodes on one NATS cluster (`--cluster`): the connection every cluster
//! feature shares (`connection`) and its errors; presence and typing across nodes on plain NATS
//! subjects (`ephemeral`, with `ephemeral_wire` for the messages and subjects and
//! `ephemeral_peers` for what is known of the other nodes); HTTP consumer groups across nodes
//! (`groups`: a coordinator per group chosen by a lease in a JetStream key-value bucket, with
//! `groups_wire` for the forwarded calls); and work run on one node at a time by the same kind of
//! lease (`groups_exclusive`: the notification consumers); the Kafka listener's brokers and group
//! coordinators across nodes (`kafka_brokers`, by the same leases); `leases`, the leases a node
//! holds by name, which `groups` and `kafka_brokers` share; and `node`, which starts all of these
//! for a server joining the cluster.
//!
//! This module does not own the log on JetStream (that is `log::jetstream`, behind the log
//! boundary) nor the server wiring (`server`), which takes a client from [`connect`] and hands it
//! to these features.

mod connection;
pub(crate) mod ephemeral;
mod ephemeral_peers;
mod ephemeral_wire;
pub(crate) mod groups;
pub(crate) mod groups_exclusive;
mod groups_wire;
pub(crate) mod kafka_brokers;
mod leases;
mod node;

pub(crate) use connection::connect;
pub(crate) use node::{join, ClusterNode};

/// Why the node could not reach its NATS cluster.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClusterError {
    /// `cluster.urls` is empty: there is no cluster to connect to.
    #[error("no NATS URL configured (cluster.urls / --cluster)")]
    NoUrls,
    /// A URL is not `nats://HOST:PORT`.
    #[error("bad NATS URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What the client made of it.
        reason: String,
    },
    /// No server of the cluster accepted a connection before `cluster.connectTimeoutMs`.
    #[error("could not connect to the NATS cluster at {urls} within {waited:?}: {source}")]
    Connect {
        /// The URLs tried, comma-separated.
        urls: String,
        /// How long the node kept trying.
        waited: std::time::Duration,
        /// The last attempt's failure.
        source: async_nats::ConnectError,
    },
}

#[cfg(test)]
#[path = "ephemeral_tests.rs"]
mod ephemeral_tests;
#[cfg(test)]
pub(crate) mod test_nats;
