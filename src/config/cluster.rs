//! The `[cluster]` section: running the node on a NATS JetStream cluster instead of the embedded
//! log (`cluster.urls`, `--cluster`, `TIDINGS_CLUSTER`), and how it names its streams there.
//!
//! This file owns the section's defaults, its file keys and its checks; it does not connect
//! (`crate::cluster` does) nor open the log (`server.rs`).

use std::time::Duration;

use serde::Deserialize;

use super::{bad_value, ConfigError};

/// The `[cluster]` section. Off (no URLs) by default: the embedded log is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://HOST:PORT`) of the JetStream cluster; empty = no cluster
    /// (`cluster.urls`, `--cluster`, `TIDINGS_CLUSTER`, comma-separated there).
    pub urls: Vec<String>,
    /// Prefix of every stream, subject and bucket this deployment uses, so that several
    /// deployments can share one NATS cluster (`cluster.namespace`, default `tidings`).
    pub namespace: String,
    /// Copies JetStream keeps of every stream and bucket (`cluster.replicas`, default 3: one
    /// node may fail without losing an acknowledged record).
    pub replicas: usize,
    /// How long a node keeps retrying its first connection before it gives up
    /// (`cluster.connectTimeoutMs`, default 30 s).
    pub connect_timeout: Duration,
    /// How long a request to the cluster (a publish's ack, a commit) may take before it is
    /// answered with 503 (`cluster.requestTimeoutMs`, default 5 s).
    pub request_timeout: Duration,
    /// This node's name in the cluster: a NATS subject token unique among the nodes, used for
    /// presence, forwarded group calls and leases (`cluster.nodeId`; default: drawn at start,
    /// so a restarted node is a new one to the others).
    pub node_id: Option<String>,
    /// Most bytes (keys, headers, values) of each partition's most recent records a node keeps in
    /// memory to answer reads without a round trip (`cluster.replicaCacheBytes`, default 8 MiB);
    /// older records are read from JetStream. A node holds up to this much per partition of
    /// every topic.
    pub replica_cache_bytes: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            urls: Vec::new(),
            namespace: "tidings".into(),
            replicas: 3,
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(5),
            node_id: None,
            replica_cache_bytes: 8 * 1024 * 1024,
        }
    }
}

impl ClusterConfig {
    /// A cluster configuration for these URLs, every other setting at its default.
    pub fn with_urls(urls: impl IntoIterator<Item = impl Into<String>>) -> ClusterConfig {
        ClusterConfig {
            urls: urls.into_iter().map(Into::into).collect(),
            ..ClusterConfig::default()
        }
    }

    /// Whether the node runs on a cluster.
    pub fn is_enabled(&self) -> bool {
        !self.urls.is_empty()
    }

    /// Splits `nats://a:4222,nats://b:4222` (the flag's and the variable's form) into URLs.
    pub fn parse_urls(list: &str) -> Vec<String> {
        list.split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// This node's id: `cluster.nodeId`, or a fresh `node-XXXXXXXXXXXX` (random hex).
    pub fn node_id_or_drawn(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let uuid = uuid::Uuid::new_v4().simple().to_string();
            format!("node-{}", &uuid[..12])
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(id) = self.node_id.as_deref().filter(|id| !is_valid_node_id(id)) {
            return Err(bad_value(
                "cluster.nodeId",
                id,
                "1 to 64 letters, digits, '-' or '_'".into(),
            ));
        }
        if let Some(bad) = self.urls.iter().find(|url| !is_nats_url(url)) {
            return Err(bad_value(
                "cluster.urls",
                bad,
                "nats://HOST:PORT URLs such as nats://127.0.0.1:4222".into(),
            ));
        }
        if !is_valid_namespace(&self.namespace) {
            return Err(bad_value(
                "cluster.namespace",
                &self.namespace,
                "1 to 32 characters of [A-Za-z0-9-]".into(),
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(bad_value(
                "cluster.replicas",
                self.replicas,
                "1 to 5".into(),
            ));
        }
        for (key, value) in [
            ("cluster.connectTimeoutMs", self.connect_timeout),
            ("cluster.requestTimeoutMs", self.request_timeout),
        ] {
            if value.is_zero() {
                return Err(bad_value(key, 0, "a positive number".into()));
            }
        }
        if self.replica_cache_bytes == 0 {
            return Err(bad_value(
                "cluster.replicaCacheBytes",
                0,
                "a positive number of bytes".into(),
            ));
        }
        Ok(())
    }
}

fn is_nats_url(url: &str) -> bool {
    url.strip_prefix("nats://")
        .and_then(|rest| rest.rsplit_once(':'))
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

fn is_valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Stream and bucket names take the namespace as they are; `_` and `.` are separators there.
fn is_valid_namespace(namespace: &str) -> bool {
    (1..=32).contains(&namespace.len())
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `[cluster]` as the file writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileCluster {
    urls: Option<Vec<String>>,
    namespace: Option<String>,
    replicas: Option<usize>,
    connect_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    node_id: Option<String>,
    replica_cache_bytes: Option<u64>,
}

impl FileCluster {
    pub(super) fn apply_to(self, cluster: &mut ClusterConfig) {
        if let Some(urls) = self.urls {
            cluster.urls = urls;
        }
        if let Some(namespace) = self.namespace {
            cluster.namespace = namespace;
        }
        if let Some(replicas) = self.replicas {
            cluster.replicas = replicas;
        }
        if let Some(ms) = self.connect_timeout_ms {
            cluster.connect_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = self.request_timeout_ms {
            cluster.request_timeout = Duration::from_millis(ms);
        }
        if let Some(id) = self.node_id {
            cluster.node_id = Some(id);
        }
        if let Some(bytes) = self.replica_cache_bytes {
            cluster.replica_cache_bytes = bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replica_cache_budget_is_read_from_the_file_and_must_be_positive() {
        let file: FileCluster = toml::from_str("replicaCacheBytes = 65536").expect("parse");
        let mut cluster = ClusterConfig::default();
        assert_eq!(cluster.replica_cache_bytes, 8 * 1024 * 1024);
        file.apply_to(&mut cluster);
        assert_eq!(cluster.replica_cache_bytes, 65536);
        assert!(cluster.validate().is_ok());
        cluster.replica_cache_bytes = 0;
        let refused = cluster.validate().expect_err("0 is refused").to_string();
        assert!(refused.contains("cluster.replicaCacheBytes"), "{refused}");
    }
}
