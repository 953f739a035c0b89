//! Topics on the cluster: their configurations in the replicated topics bucket, the streams of
//! their partitions, and each node's registry of them with one [`Replica`] per partition.
//!
//! One watcher task per node applies the bucket's changes in revision order and is the only
//! writer of the registry; a node's own create, alter or delete writes the bucket and waits until
//! its watcher applied that revision, so every node sees the same history of topics and a node
//! sees its own change as soon as the call returns. The watcher does not create streams: the
//! node that changes a topic does, before it publishes the new configuration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::stream;
use futures_util::StreamExt;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::replica::Replica;
use super::{feed, names, unavailable, Inner};
use crate::log::{validate_topic_name, LogError, PartitionInfo, Result, TopicConfig, TopicInfo};

/// Pause before the watcher or an install tries again after the cluster failed to answer.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Tries to find a partition's stream before the watcher gives up on it (about 10 s).
const INSTALL_ATTEMPTS: u32 = 40;

/// A topic's entry in the topics bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TopicMeta {
    pub config: TopicConfig,
    /// Random, fixed at creation: part of every stream name of this topic.
    pub incarnation: String,
}

/// A topic as this node follows it.
#[derive(Debug)]
pub(super) struct TopicState {
    pub meta: TopicMeta,
    pub replicas: Vec<Arc<Replica>>,
    /// Stops the feeds of this topic's partitions.
    stop: CancellationToken,
}

/// The topics this node follows, and how far into the topics bucket it has applied.
#[derive(Debug)]
pub(super) struct Registry {
    topics: RwLock<BTreeMap<String, Arc<TopicState>>>,
    applied: watch::Sender<u64>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            topics: RwLock::new(BTreeMap::new()),
            applied: watch::channel(0).0,
        }
    }
}

impl Registry {
    pub(super) fn get(&self, topic: &str) -> Option<Arc<TopicState>> {
        self.topics.read().get(topic).cloned()
    }

    pub(super) fn all(&self) -> Vec<(String, Arc<TopicState>)> {
        let topics = self.topics.read();
        topics.iter().map(|(n, t)| (n.clone(), t.clone())).collect()
    }
}

impl Inner {
    /// The topic as this node follows it, or `UnknownTopic`.
    pub(super) fn topic(&self, name: &str) -> Result<Arc<TopicState>> {
        self.check_open()?;
        self.registry
            .get(name)
            .ok_or_else(|| LogError::UnknownTopic(name.into()))
    }

    /// One partition's replica, or `UnknownTopic` / `UnknownPartition`.
    pub(super) fn replica(&self, topic: &str, partition: u32) -> Result<Arc<Replica>> {
        let state = self.topic(topic)?;
        state
            .replicas
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| LogError::UnknownPartition {
                topic: topic.into(),
                partition,
                partitions: state.replicas.len() as u32,
            })
    }

    /// Bytes every replica's tail holds on this node.
    pub(super) fn cached_bytes(&self) -> u64 {
        let topics = self.registry.topics.read();
        topics
            .values()
            .flat_map(|topic| topic.replicas.iter())
            .map(|replica| replica.bytes())
            .sum()
    }

    pub(super) fn topic_names(&self) -> Vec<String> {
        self.registry.topics.read().keys().cloned().collect()
    }

    pub(super) fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        let state = self.topic(name)?;
        Ok(describe(name, &state))
    }

    pub(super) async fn create_topic(&self, name: &str, config: TopicConfig) -> Result<TopicInfo> {
        self.check_open()?;
        validate_topic_name(name)?;
        check_config(&config)?;
        let meta = TopicMeta {
            config,
            incarnation: new_incarnation(),
        };
        let partitions = 0..meta.config.partitions;
        self.create_streams(&meta, partitions.clone()).await?;
        let value = serde_json::to_vec(&meta).expect("a topic configuration serializes");
        // Only "no responders" is retried: a create that timed out may have been stored.
        let key = names::topic_key(name);
        let deadline = tokio::time::Instant::now() + super::PLACEMENT_WAIT;
        let created = loop {
            match self.topics_kv.create(&key, value.clone().into()).await {
                Err(e)
                    if e.to_string().contains("no responders")
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                other => break other,
            }
        };
        let revision = match created {
            Ok(revision) => revision,
            Err(e) => {
                self.delete_streams(&meta, partitions).await;
                return Err(match e.kind() {
                    kv::CreateErrorKind::AlreadyExists => LogError::TopicExists(name.into()),
                    _ => unavailable(format!("creating topic {name}"), e),
                });
            }
        };
        self.wait_applied(revision).await?;
        self.describe_topic(name)
    }

    pub(super) async fn alter_topic(&self, name: &str, config: TopicConfig) -> Result<TopicInfo> {
        self.check_open()?;
        check_config(&config)?;
        let (old, revision) = self.stored_topic(name).await?;
        if config.partitions < old.config.partitions {
            return Err(LogError::InvalidConfig(format!(
                "partitions can only grow (topic {name} has {})",
                old.config.partitions
            )));
        }
        let meta = TopicMeta {
            config,
            incarnation: old.incarnation.clone(),
        };
        for partition in 0..old.config.partitions {
            let update = self.stream_config(&meta, partition);
            self.js
                .update_stream(update)
                .await
                .map_err(|e| unavailable(format!("altering topic {name}"), e))?;
        }
        self.create_streams(&meta, old.config.partitions..meta.config.partitions)
            .await?;
        let value = serde_json::to_vec(&meta).expect("a topic configuration serializes");
        let updated = self
            .topics_kv
            .update(names::topic_key(name), value.into(), revision)
            .await
            .map_err(|e| {
                unavailable(format!("altering topic {name} (changed concurrently?)"), e)
            })?;
        self.wait_applied(updated).await?;
        self.describe_topic(name)
    }

    pub(super) async fn delete_topic(&self, name: &str) -> Result<()> {
        self.check_open()?;
        let (meta, revision) = self.stored_topic(name).await?;
        self.topics_kv
            .delete_expect_revision(names::topic_key(name), Some(revision))
            .await
            .map_err(|e| unavailable(format!("deleting topic {name}"), e))?;
        self.delete_streams(&meta, 0..meta.config.partitions).await;
        self.delete_group_offsets_of(name).await?;
        let status = self
            .topics_kv
            .status()
            .await
            .map_err(|e| unavailable("the topics bucket", e))?;
        self.wait_applied(status.info.state.last_sequence).await
    }

    /// Waits until the topic is in the registry (another node may just have created it).
    pub(super) async fn wait_for_topic(&self, name: &str) -> Result<Arc<TopicState>> {
        let mut applied = self.registry.applied.subscribe();
        let appeared = tokio::time::timeout(self.config.request_timeout, async {
            loop {
                if let Some(state) = self.registry.get(name) {
                    return Some(state);
                }
                applied.changed().await.ok()?;
            }
        });
        match appeared.await {
            Ok(Some(state)) => Ok(state),
            Ok(None) => Err(LogError::Closed),
            Err(_) => Err(LogError::UnknownTopic(name.into())),
        }
    }

    /// The topic's configuration and revision as the bucket has them now.
    async fn stored_topic(&self, name: &str) -> Result<(TopicMeta, u64)> {
        let entry = self
            .topics_kv
            .entry(names::topic_key(name))
            .await
            .map_err(|e| unavailable(format!("reading topic {name}"), e))?;
        match entry {
            Some(entry) if entry.operation == Operation::Put => {
                Ok((parse_meta(name, &entry.value)?, entry.revision))
            }
            _ => Err(LogError::UnknownTopic(name.into())),
        }
    }

    /// Waits until this node's watcher applied the topics bucket up to `revision`.
    async fn wait_applied(&self, revision: u64) -> Result<()> {
        let mut applied = self.registry.applied.subscribe();
        let reached = tokio::time::timeout(
            self.config.request_timeout,
            applied.wait_for(|applied| *applied >= revision),
        );
        let reached = reached.await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(LogError::Closed),
            Err(_) => Err(LogError::Unavailable(format!(
                "this node did not see revision {revision} of the topics bucket in time"
            ))),
        }
    }

    pub(super) fn stream_config(&self, meta: &TopicMeta, partition: u32) -> stream::Config {
        let namespace = &self.config.namespace;
        stream::Config {
            name: names::stream(namespace, &meta.incarnation, partition),
            subjects: vec![names::subject(namespace, &meta.incarnation, partition)],
            storage: stream::StorageType::File,
            num_replicas: self.config.replicas,
            max_age: meta
                .config
                .retention_ms
                .map_or(Duration::ZERO, Duration::from_millis),
            max_bytes: meta
                .config
                .retention_bytes
                .map_or(-1, |bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
            duplicate_window: self.config.duplicate_window,
            ..Default::default()
        }
    }

    async fn create_streams(
        &self,
        meta: &TopicMeta,
        partitions: std::ops::Range<u32>,
    ) -> Result<()> {
        for partition in partitions.clone() {
            let create = || self.js.create_stream(self.stream_config(meta, partition));
            if let Err(e) = super::placed(create).await {
                self.delete_streams(meta, 0..partition).await;
                return Err(unavailable("creating a partition's stream", e));
            }
        }
        // One wait for all of them: a topic's creation answers within the placement wait
        // however many partitions it has.
        let deadline = tokio::time::Instant::now() + super::PLACEMENT_WAIT;
        for partition in partitions {
            let name = names::stream(&self.config.namespace, &meta.incarnation, partition);
            self.wait_for_leader(&name, deadline).await;
        }
        Ok(())
    }

    /// Waits, until `deadline` at most, until a stream just created has elected its leader:
    /// until then a publish to it finds no responders, and an append right after the topic's
    /// creation would fail. A stream still without one then is left to the append's own error
    /// (503 at the edge), as during any election.
    async fn wait_for_leader(&self, name: &str, deadline: tokio::time::Instant) {
        // Each stream is looked at at least once, even when an earlier one used up the wait.
        loop {
            // `get_stream` answers with the stream's info: one request per look.
            let led = self.js.get_stream(name).await.is_ok_and(|stream| {
                let cluster = stream.cached_info().cluster.as_ref();
                cluster.is_some_and(|c| c.leader.is_some())
            });
            if led {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!(stream = name, "a new stream has no leader yet");
    }

    /// Deletes the streams; a failure is logged (an orphan stream wastes space, it is never read:
    /// no configuration names its incarnation).
    async fn delete_streams(&self, meta: &TopicMeta, partitions: std::ops::Range<u32>) {
        for partition in partitions {
            let name = names::stream(&self.config.namespace, &meta.incarnation, partition);
            if let Err(error) = self.js.delete_stream(&name).await {
                tracing::warn!(stream = name, %error, "could not delete a deleted topic's stream");
            }
        }
    }
}

/// Loads every topic (waiting until each partition's replica caught up with its stream), then
/// keeps applying the topics bucket's changes until the log shuts down.
pub(super) async fn start_watching(inner: &Arc<Inner>) -> Result<()> {
    let status = inner
        .topics_kv
        .status()
        .await
        .map_err(|e| unavailable("the topics bucket", e))?;
    let watcher = inner.clone();
    tokio::spawn(async move {
        let stop = watcher.shutdown.clone();
        tokio::select! {
            () = stop.cancelled() => {}
            () = watch_topics(&watcher) => {}
        }
        for (_, state) in watcher.registry.all() {
            state.stop.cancel();
        }
    });
    let loaded = status.info.state.last_sequence;
    let mut applied = inner.registry.applied.subscribe();
    applied
        .wait_for(|applied| *applied >= loaded)
        .await
        .map(|_| ())
        .map_err(|_| LogError::Closed)
}

/// The watcher: applies every change of the topics bucket in revision order, resuming after the
/// last applied revision whenever the watch breaks.
async fn watch_topics(inner: &Arc<Inner>) {
    loop {
        let from = *inner.registry.applied.borrow() + 1;
        match inner.topics_kv.watch_all_from_revision(from).await {
            Ok(mut changes) => {
                while let Some(change) = changes.next().await {
                    match change {
                        Ok(entry) => apply(inner, entry).await,
                        Err(error) => {
                            tracing::warn!(%error, "the topics watch broke; resuming");
                            break;
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot watch the topics bucket yet"),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Applies one change: a new topic, a grown or changed one, a new incarnation, or a deletion.
async fn apply(inner: &Arc<Inner>, entry: kv::Entry) {
    let name = names::topic_of_key(&entry.key);
    let meta = match entry.operation {
        Operation::Put => match parse_meta(&name, &entry.value) {
            Ok(meta) => Some(meta),
            Err(error) => {
                tracing::error!(topic = name, %error, "unreadable topic configuration; ignored");
                None
            }
        },
        Operation::Delete | Operation::Purge => None,
    };
    let old = inner.registry.get(&name);
    let state = match (meta, old) {
        (None, old) => {
            if let Some(old) = old {
                old.stop.cancel();
            }
            inner.registry.topics.write().remove(&name);
            None
        }
        (Some(meta), Some(old)) if old.meta.incarnation == meta.incarnation => {
            Some(grow(inner, &name, &old, meta).await)
        }
        (Some(meta), old) => {
            if let Some(old) = old {
                old.stop.cancel();
            }
            let stop = inner.shutdown.child_token();
            let replicas = install(inner, &name, &meta, 0..meta.config.partitions, &stop).await;
            Some(TopicState {
                meta,
                replicas,
                stop,
            })
        }
    };
    if let Some(state) = state {
        inner.registry.topics.write().insert(name, Arc::new(state));
    }
    inner.registry.applied.send_replace(entry.revision);
}

/// The same incarnation with a new configuration: keeps the replicas, adds any new partition.
async fn grow(inner: &Arc<Inner>, name: &str, old: &TopicState, meta: TopicMeta) -> TopicState {
    let mut replicas = old.replicas.clone();
    let new = replicas.len() as u32..meta.config.partitions;
    replicas.extend(install(inner, name, &meta, new, &old.stop).await);
    TopicState {
        meta,
        replicas,
        stop: old.stop.clone(),
    }
}

/// Starts following the partitions' streams; returns once each replica holds what its stream
/// held when the install began (so a node that opens sees every record acknowledged before).
async fn install(
    inner: &Arc<Inner>,
    name: &str,
    meta: &TopicMeta,
    partitions: std::ops::Range<u32>,
    stop: &CancellationToken,
) -> Vec<Arc<Replica>> {
    let mut replicas = Vec::new();
    for partition in partitions {
        let stream_name = names::stream(&inner.config.namespace, &meta.incarnation, partition);
        let mut attempts = 0;
        let (stream, state) = loop {
            match inner.js.get_stream(&stream_name).await {
                Ok(stream) => {
                    let state = stream.cached_info().state.clone();
                    break (stream, state);
                }
                // A topic deleted while this node applied its creation has no stream any more;
                // the deletion comes next and removes the topic again.
                Err(error) if attempts >= INSTALL_ATTEMPTS || stop.is_cancelled() => {
                    tracing::error!(stream = stream_name, %error, "giving up on a partition");
                    return replicas;
                }
                Err(error) => {
                    tracing::warn!(stream = stream_name, %error, "cannot read a stream yet");
                    attempts += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        };
        let low = state.first_sequence.max(1) - 1;
        let start = feed_start(&state, inner.config.replica_cache_bytes);
        let replica = Arc::new(Replica::new(
            name,
            partition,
            &stream_name,
            (low, start),
            inner.config.replica_cache_bytes,
        ));
        feed::spawn(stream, replica.clone(), stop.child_token());
        let mut high = replica.subscribe();
        let last = state.last_sequence.max(low);
        tokio::select! {
            _ = high.wait_for(|high| *high >= last) => {}
            () = stop.cancelled() => {}
        }
        // What the stream held at the start, which the tail's records just loaded are part of
        // (records appended meanwhile count again from the next retention pass).
        replica.set_stream_bytes(state.bytes);
        replicas.push(replica);
    }
    replicas
}

/// Where a new replica's feed starts: about `budget` bytes before the end of the stream (from
/// its mean message size), so that a node does not read the whole stream to fill a tail that
/// keeps only the last part of it; at the last record at the latest, so that it learns the
/// last timestamp.
fn feed_start(state: &stream::State, budget: u64) -> u64 {
    let low = state.first_sequence.max(1) - 1;
    let high = state.last_sequence.max(low);
    if state.messages == 0 {
        return high;
    }
    let mean_bytes = (state.bytes / state.messages).max(1);
    let fits = (budget / mean_bytes).max(1);
    high.saturating_sub(fits).max(low)
}

fn describe(name: &str, state: &TopicState) -> TopicInfo {
    TopicInfo {
        name: name.into(),
        config: state.meta.config.clone(),
        partitions: state
            .replicas
            .iter()
            .enumerate()
            .map(|(partition, replica)| {
                let (low, high) = replica.watermarks();
                PartitionInfo {
                    partition: partition as u32,
                    low,
                    high,
                    bytes: replica.stream_bytes(),
                }
            })
            .collect(),
    }
}

/// The checks of any backend, and what the cluster cannot hold: JetStream deletes by age
/// whatever a group has read, so protected groups are refused rather than silently ignored.
fn check_config(config: &TopicConfig) -> Result<()> {
    config.validate()?;
    if !config.protected_groups.is_empty() {
        return Err(LogError::InvalidConfig(
            "protected groups are not supported on the cluster log (JetStream's retention \
             deletes by age regardless of consumers)"
                .into(),
        ));
    }
    Ok(())
}

fn parse_meta(name: &str, value: &[u8]) -> Result<TopicMeta> {
    serde_json::from_slice(value).map_err(|e| LogError::Corrupt {
        location: format!("topic {name} in the topics bucket"),
        reason: e.to_string(),
    })
}

/// 16 hex digits from a random UUID: unique enough that two incarnations never share a stream.
fn new_incarnation() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..16].to_owned()
}
