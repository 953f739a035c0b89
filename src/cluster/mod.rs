//! Running several Tidings nodes on one NATS cluster: the connection every cluster feature
//! shares (`connection`), and its errors.
//!
//! This module owns getting a connected `async_nats::Client` out of the `[cluster]` settings. It
//! does not own the log on JetStream (that is `log::jetstream`, behind the log boundary) nor the
//! ephemeral cross-node features (presence, typing, consumer groups), which take a client from
//! [`connect`].

mod connection;

pub(crate) use connection::connect;

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
