//! Connecting to the NATS cluster: one client per node, retried until `connect_timeout`, then
//! reconnecting by itself for the rest of the node's life.
//!
//! Owns the client's options (name, timeouts, unlimited reconnects). It does not decide what a
//! disconnection means for writes: the log refuses appends while the client is not connected
//! (`log::jetstream`), and nothing is acknowledged that the cluster did not store.

use std::time::{Duration, Instant};

use async_nats::{ConnectOptions, ServerAddr};

use super::ClusterError;
use crate::config::ClusterConfig;

/// Pause between two first-connection attempts (a node started before its NATS servers waits).
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// How often the client pings its server. A server cut off without a TCP reset (a partition, a
/// frozen process) is noticed after three unanswered pings, and the client moves to another
/// server of the cluster: about 6 s here, against minutes with the client's default of 60 s,
/// during which every write of this node is refused (tests/cluster_nodes.rs freezes a node's
/// server: with the default, writes had not come back after 45 s).
const PING_INTERVAL: Duration = Duration::from_secs(2);

/// Connects to any of the configured servers, retrying until `config.connect_timeout`. The
/// client then reconnects by itself, to any server of the cluster, for as long as it lives.
pub(crate) async fn connect(config: &ClusterConfig) -> Result<async_nats::Client, ClusterError> {
    let addresses = server_addresses(&config.urls)?;
    let started = Instant::now();
    loop {
        match async_nats::connect_with_options(addresses.clone(), options(config)).await {
            Ok(client) => return Ok(client),
            Err(source) if started.elapsed() >= config.connect_timeout => {
                return Err(ClusterError::Connect {
                    urls: config.urls.join(","),
                    waited: started.elapsed(),
                    source,
                })
            }
            Err(error) => {
                tracing::warn!(%error, "NATS cluster not reachable yet; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

fn options(config: &ClusterConfig) -> ConnectOptions {
    ConnectOptions::new()
        .name("tidings")
        .connection_timeout(config.request_timeout)
        .request_timeout(Some(config.request_timeout))
        .ping_interval(PING_INTERVAL)
        .max_reconnects(None)
}

fn server_addresses(urls: &[String]) -> Result<Vec<ServerAddr>, ClusterError> {
    if urls.is_empty() {
        return Err(ClusterError::NoUrls);
    }
    urls.iter()
        .map(|url| {
            url.parse::<ServerAddr>().map_err(|e| ClusterError::BadUrl {
                url: url.clone(),
                reason: e.to_string(),
            })
        })
        .collect()
}
