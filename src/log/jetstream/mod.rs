//! The log on a NATS JetStream cluster: the second implementation of the log boundary, for
//! several Tidings nodes sharing one replicated log (`tidings serve --cluster`).
//!
//! Layout on the cluster (all names under the configured namespace, see `names`):
//! - one stream per (topic incarnation, partition), file storage, `replicas` copies: an offset is
//!   the stream sequence − 1, so offsets are dense per partition and the same on every node;
//!   retention is the stream's `max_age` / `max_bytes`; the low watermark is its first
//!   sequence − 1.
//! - a replicated KV bucket of topic configurations (`topics`), watched by every node;
//! - a replicated KV bucket of committed group offsets, forward-only by compare-and-set on the
//!   key's revision (`offsets`).
//!
//! An append publishes its records in order on the node's one connection and resolves once every
//! PubAck is back (the quorum stored it) and the node's own replica has it, so a node reads its
//! own writes. A record carrying [`IDEMPOTENCY_HEADER`] is published with that value as
//! `Nats-Msg-Id`, so a retry, or the same event appended by two nodes, is stored once.
//!
//! The boundary's synchronous reads are answered from a per-node in-memory replica of every
//! partition (`replica`): the stream's watermarks and a tail of its most recent records within a
//! byte budget, fed by one ordered consumer per stream (`feed`) that starts about a budget's
//! worth before the end when the node starts. Reads below the tail fetch a batch from the stream
//! (`cold`). Group offsets go to the network; their synchronous
//! calls wait on it without holding up other tasks (`blocking`). No quorum, no connection or no
//! answer in time is [`LogError::Unavailable`](crate::log::LogError::Unavailable): nothing is
//! acknowledged that the quorum did not store.
//!
//! This module owns the JetStream side of the log only; connecting is `crate::cluster`, and what
//! several nodes do with the shared log (the store writer, the fan-out) is the pipeline's.

mod append;
mod backend;
mod blocking;
mod cold;
mod feed;
mod names;
mod offsets;
mod replica;
mod retention;
mod topics;
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use tokio_util::sync::CancellationToken;

use super::stats::Counters;
use super::{LogError, Result};
use crate::config::ClusterConfig;

/// The record header whose value, if present, is the record's `Nats-Msg-Id`: JetStream stores a
/// record with an id it saw within `duplicate_window` only once and acks the first copy's offset.
pub const IDEMPOTENCY_HEADER: &str = "tidings-idempotency-key";

/// How the JetStream log names and sizes what it creates on the cluster.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// Prefix of every stream, subject and bucket ([`ClusterConfig::namespace`]).
    pub namespace: String,
    /// Copies of every stream and bucket.
    pub replicas: usize,
    /// Whether an append to an unknown topic creates it (as the embedded log's option).
    pub auto_create_topics: bool,
    /// Partitions of an automatically created topic.
    pub default_partitions: u32,
    /// Largest record (key + headers + value) accepted.
    pub max_record_bytes: usize,
    /// How long a request to the cluster may take before it fails as `Unavailable`.
    pub request_timeout: Duration,
    /// How often the node trims its replicas to what retention left on the cluster.
    pub retention_interval: Duration,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop a duplicate.
    pub duplicate_window: Duration,
    /// Most bytes (keys, headers, values) of each partition's most recent records a node keeps
    /// in memory; older records are read from the stream ([`ClusterConfig::replica_cache_bytes`]).
    pub replica_cache_bytes: u64,
}

impl JetStreamConfig {
    /// The defaults for a namespace: 3 replicas, topics created on first append with one
    /// partition, records up to 900 KiB (NATS' default message limit is 1 MiB), 5 s requests,
    /// 8 MiB of each partition's recent records in memory.
    pub fn new(namespace: impl Into<String>) -> JetStreamConfig {
        JetStreamConfig {
            namespace: namespace.into(),
            replicas: 3,
            auto_create_topics: true,
            default_partitions: 1,
            max_record_bytes: 900 * 1024,
            request_timeout: Duration::from_secs(5),
            retention_interval: Duration::from_secs(60),
            duplicate_window: Duration::from_secs(120),
            replica_cache_bytes: ClusterConfig::default().replica_cache_bytes,
        }
    }

    /// The log settings a `[cluster]` section implies.
    pub fn for_cluster(cluster: &ClusterConfig) -> JetStreamConfig {
        JetStreamConfig {
            replicas: cluster.replicas,
            request_timeout: cluster.request_timeout,
            replica_cache_bytes: cluster.replica_cache_bytes,
            ..JetStreamConfig::new(&cluster.namespace)
        }
    }
}

/// The log on JetStream; the rest of the crate reaches it through [`Log`](super::Log).
pub(crate) struct JetStreamLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamLog")
            .field("namespace", &self.inner.config.namespace)
            .finish_non_exhaustive()
    }
}

impl Drop for JetStreamLog {
    fn drop(&mut self) {
        self.inner.close();
    }
}

/// What the log's calls and its background tasks share.
pub(super) struct Inner {
    config: JetStreamConfig,
    client: async_nats::Client,
    js: jetstream::Context,
    topics_kv: kv::Store,
    offsets_kv: kv::Store,
    registry: topics::Registry,
    /// The runtime the log was opened on: synchronous calls from outside any runtime wait on it.
    runtime: tokio::runtime::Handle,
    /// Stops the watcher, the feeds and retention.
    shutdown: CancellationToken,
    closed: AtomicBool,
    counters: Counters,
    round_robin: AtomicU32,
    /// Bytes of all streams (one copy) at the last retention pass.
    stream_bytes: AtomicU64,
}

impl JetStreamLog {
    /// Opens the log on a connected client: makes sure the buckets exist, loads every topic and
    /// waits until this node's replica of each partition holds what the stream held at that
    /// moment, then keeps following the cluster.
    pub(crate) async fn open(
        client: async_nats::Client,
        config: JetStreamConfig,
    ) -> Result<JetStreamLog> {
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .backpressure_on_inflight(true)
            .build(client.clone());
        let topics_kv = bucket(&js, names::topics_bucket(&config.namespace), &config).await?;
        let offsets_kv = bucket(&js, names::offsets_bucket(&config.namespace), &config).await?;
        let inner = Arc::new(Inner {
            registry: topics::Registry::default(),
            runtime: tokio::runtime::Handle::current(),
            shutdown: CancellationToken::new(),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
            round_robin: AtomicU32::new(0),
            stream_bytes: AtomicU64::new(0),
            config,
            client,
            js,
            topics_kv,
            offsets_kv,
        });
        let log = JetStreamLog {
            inner: inner.clone(),
        };
        topics::start_watching(&inner).await?;
        retention::spawn(&inner);
        Ok(log)
    }
}

impl Inner {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.shutdown.cancel();
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        Ok(())
    }

    /// Why appends would fail right now, if the node knows: closed, or not connected.
    fn write_refusal(&self) -> Option<LogError> {
        if let Err(closed) = self.check_open() {
            return Some(closed);
        }
        match self.client.connection_state() {
            async_nats::connection::State::Connected => None,
            state => Some(LogError::Unavailable(format!(
                "not connected to the NATS cluster ({state})"
            ))),
        }
    }
}

/// Creates a KV bucket with the log's replication, or opens it if another node created it.
async fn bucket(
    js: &jetstream::Context,
    name: String,
    config: &JetStreamConfig,
) -> Result<kv::Store> {
    let wanted = kv::Config {
        bucket: name.clone(),
        history: 1,
        num_replicas: config.replicas,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    match placed(|| js.create_key_value(wanted.clone())).await {
        Ok(store) => Ok(store),
        Err(created) => js
            .get_key_value(&name)
            .await
            .map_err(|_| unavailable(format!("the bucket {name}"), created)),
    }
}

/// JetStream's "no suitable peers for placement": the cluster has not seen enough of its servers
/// to place the replicas (it is still forming, or it lost servers).
const NO_PEERS_FOR_PLACEMENT: u64 = 10005;

/// How long a creation waits for peers to place its replicas on: a cluster that just started
/// takes a few seconds until every server has reported to its meta leader.
const PLACEMENT_WAIT: Duration = Duration::from_secs(20);

/// Runs `create` (a stream or bucket creation) again while the cluster answers "no suitable
/// peers for placement" or does not answer in time (a meta leader still being elected), for at
/// most [`PLACEMENT_WAIT`].
pub(crate) async fn placed<T, E, F, Fut>(mut create: F) -> std::result::Result<T, E>
where
    E: std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + PLACEMENT_WAIT;
    loop {
        match create().await {
            Err(e) if is_forming(&e) && tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "no peers to place replicas on yet; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// Whether `error` is what a cluster that is still forming answers: no peers to place the
/// replicas on yet, no answer in time, or no responders (a stream just created whose leader
/// is not elected yet). The client's timeouts and "no responders" carry no code, only their
/// text.
pub(super) fn is_forming(error: &(dyn std::error::Error + 'static)) -> bool {
    let text = error.to_string();
    api_error_code(error) == Some(NO_PEERS_FOR_PLACEMENT)
        || text.contains("timed out")
        || text.contains("no responders")
}

/// The JetStream API error code of `error`: from a [`jetstream::Error`] in its chain of causes,
/// or else from its text. The client wraps some API errors without keeping them as a source
/// (a stream creation's `CreateStreamErrorKind::JetStream` has none), and every API error
/// displays as "… (code 400, error code 10005)".
pub(super) fn api_error_code(error: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(api) = current.downcast_ref::<jetstream::Error>() {
            return Some(api.error_code().0);
        }
        cause = current.source();
    }
    error_code_in_text(&error.to_string())
}

fn error_code_in_text(text: &str) -> Option<u64> {
    let (_, after) = text.rsplit_once("error code ")?;
    let digits = after.split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

/// The error for a request the cluster did not answer as it should.
pub(super) fn unavailable(what: impl std::fmt::Display, error: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(format!("{what}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind};

    fn api_error(err_code: u64, description: &str) -> jetstream::Error {
        serde_json::from_value(serde_json::json!({
            "code": 400, "err_code": err_code, "description": description
        }))
        .expect("an API error as the server sends it")
    }

    #[test]
    fn a_stream_creation_refused_for_placement_is_a_cluster_still_forming() {
        // The client keeps the API error in the kind, not as a source: only its text has the code.
        let refused = CreateStreamError::new(CreateStreamErrorKind::JetStream(api_error(
            NO_PEERS_FOR_PLACEMENT,
            "no suitable peers for placement, peer offline",
        )));
        assert_eq!(api_error_code(&refused), Some(NO_PEERS_FOR_PLACEMENT));
        assert!(is_forming(&refused));
    }

    #[test]
    fn other_api_errors_are_not_a_cluster_forming() {
        let refused = CreateStreamError::new(CreateStreamErrorKind::JetStream(api_error(
            10058,
            "stream name already in use with a different configuration",
        )));
        assert_eq!(api_error_code(&refused), Some(10058));
        assert!(!is_forming(&refused));
        assert_eq!(error_code_in_text("no code here"), None);
    }
}
