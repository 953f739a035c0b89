//! [`Log`], the handle the rest of the crate holds: a cheap clone of one shared backend.
//!
//! It forwards every call to its [`LogBackend`] and adds only what is the same for every
//! backend: the two append shapes and the long-poll [`Log::wait_for`], built on the backend's
//! high-watermark subscription. It owns no storage and names no backend type but the one
//! [`Log::open`] starts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::ClusterConfig;

use super::jetstream::JetStreamLog;
use super::{
    Appended, JetStreamConfig, LogBackend, LogConfig, LogError, LogStats, PartitionLag, ReadLimits,
    Record, ResetPlan, ResetTo, Result, SledLog, StoredRecord, TopicConfig, TopicInfo,
};

/// A handle to an open log; cheap to clone, usable from any thread or task. The log stops (its
/// work finished and synced) when the last handle is dropped or [`shutdown`](Self::shutdown)
/// is called.
#[derive(Clone)]
pub struct Log {
    backend: Arc<dyn LogBackend>,
    /// Whether other nodes append to this log too (a cluster).
    shared: bool,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Log").field(&self.backend).finish()
    }
}

impl Log {
    /// Opens (or creates) the embedded log in `config.dir`, recovering every topic, partition,
    /// watermark and committed offset, and starts its writer and retention threads.
    pub fn open(config: LogConfig) -> Result<Log> {
        Ok(Log::with_backend(Arc::new(SledLog::open(config)?)))
    }

    /// Opens the log on a NATS JetStream cluster (see `log::jetstream`): connects to
    /// `cluster.urls`, creates what is missing, and returns once this node holds every record
    /// and topic the cluster held when it connected. `Unavailable` if the cluster cannot be
    /// reached within `cluster.connect_timeout`.
    pub async fn open_cluster(cluster: &ClusterConfig, config: JetStreamConfig) -> Result<Log> {
        let client = crate::cluster::connect(cluster)
            .await
            .map_err(|e| LogError::Unavailable(e.to_string()))?;
        let backend = JetStreamLog::open(client, config).await?;
        Ok(Log {
            backend: Arc::new(backend),
            shared: true,
        })
    }

    /// A handle over any implementation of the log interface, used by this process alone.
    pub(crate) fn with_backend(backend: Arc<dyn LogBackend>) -> Log {
        Log {
            backend,
            shared: false,
        }
    }

    /// Whether other processes (the other nodes of a cluster) append to this log too: then
    /// the pipeline's writers of every node make the same events and relay each once.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    // ----- appending -------------------------------------------------------------------------

    /// Appends records to a topic (each to its key's partition, unkeyed ones round-robin) and
    /// returns where each landed, once the whole append is durable.
    pub async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>> {
        self.backend.append(topic, None, records).await
    }

    /// Appends records to one given partition, once durable.
    pub async fn append_to(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> Result<Vec<Appended>> {
        self.backend.append(topic, Some(partition), records).await
    }

    /// Appends records to one given partition, once durable; their sync may wait a moment
    /// ([`LogConfig::linger`](super::LogConfig::linger) on the embedded log) for another
    /// append's to share it. For records nobody waits on at once, such as the chat pipeline's
    /// events: one `fdatasync` then covers the next command and the events before it.
    pub async fn append_lingering(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> Result<Vec<Appended>> {
        self.backend
            .append_lingering(topic, partition, records)
            .await
    }

    /// [`append`](Self::append) for threads outside an async runtime; waits for queue space.
    pub fn append_blocking(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>> {
        self.backend.append_blocking(topic, None, records)
    }

    /// Makes everything appended or committed so far durable now (useful in `interval` and
    /// `never` modes).
    pub async fn sync(&self) -> Result<()> {
        self.backend.sync().await
    }

    // ----- topics ----------------------------------------------------------------------------

    /// Creates a topic; `TopicExists` if it is there already.
    pub async fn create_topic(&self, name: &str, config: TopicConfig) -> Result<TopicInfo> {
        self.backend.create_topic(name, config).await
    }

    /// Changes a topic's retention, protected groups, or grows its partitions (existing records
    /// stay where they are; keys hash over the new count from now on, as in Kafka).
    pub async fn alter_topic(&self, name: &str, config: TopicConfig) -> Result<TopicInfo> {
        self.backend.alter_topic(name, config).await
    }

    /// Deletes a topic, its records and every group's offsets on it.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.backend.delete_topic(name).await
    }

    /// Names of all topics, sorted.
    pub fn topic_names(&self) -> Vec<String> {
        self.backend.topic_names()
    }

    /// A topic's configuration and partitions' watermarks.
    pub fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        self.backend.describe_topic(name)
    }

    // ----- reading ---------------------------------------------------------------------------

    /// Reads durable records from `offset` on. `OffsetOutOfRange` below the low watermark or
    /// above the high watermark; an empty answer at the high watermark.
    pub fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        limits: ReadLimits,
    ) -> Result<Vec<StoredRecord>> {
        self.backend.read(topic, partition, offset, limits)
    }

    /// (low, high) watermarks of a partition.
    pub fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64)> {
        self.backend.watermarks(topic, partition)
    }

    /// The partition's watermarks once its high watermark reaches `offset`, or as they are when
    /// the backend's catch-up time is over. On a shared log a record acknowledged through
    /// another node a moment ago may not be in this node's copy yet, and an offset a client
    /// read or committed up to there is not out of range here; a log of one node answers at
    /// once.
    pub async fn watermarks_reaching(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(u64, u64)> {
        let (low, high) = self.watermarks(topic, partition)?;
        let within = self.backend.catch_up_within();
        if offset <= high || within.is_zero() {
            return Ok((low, high));
        }
        let mut high = self.subscribe(topic, partition)?;
        if let Ok(Err(_)) = tokio::time::timeout(within, high.wait_for(|h| *h >= offset)).await {
            return Err(LogError::Closed);
        }
        self.watermarks(topic, partition)
    }

    /// Waits until the partition's high watermark passes `offset` (a record at `offset` is
    /// readable) or `timeout` elapses; true if it did. No polling: the backend wakes waiters.
    pub async fn wait_for(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<bool> {
        let mut high = self.subscribe(topic, partition)?;
        let passed = tokio::time::timeout(timeout, high.wait_for(|high| *high > offset)).await;
        match passed {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(_)) => Err(LogError::Closed),
            Err(_) => Ok(false),
        }
    }

    /// A receiver of the partition's high watermark, for consumers that loop on it.
    pub fn subscribe(&self, topic: &str, partition: u32) -> Result<watch::Receiver<u64>> {
        self.backend.subscribe(topic, partition)
    }

    /// The first offset whose record was appended at or after `timestamp_ms` (the high
    /// watermark if none was).
    pub fn offset_for_time(&self, topic: &str, partition: u32, timestamp_ms: i64) -> Result<u64> {
        self.backend.offset_for_time(topic, partition, timestamp_ms)
    }

    // ----- consumer groups -------------------------------------------------------------------

    /// Commits `offset` (the next offset to read) for a group; it may not move backwards nor
    /// pass the high watermark.
    pub fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<()> {
        self.backend.commit_offset(group, topic, partition, offset)
    }

    /// Sets a group's committed offset and its metadata string as a Kafka client commits them:
    /// any offset up to the high watermark, backwards too (a consumer that seeked back). The
    /// metadata round-trips through [`committed_offset_with_metadata`](Self::committed_offset_with_metadata).
    pub fn commit_offset_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
        metadata: &str,
    ) -> Result<()> {
        self.backend
            .commit_offset_with_metadata(group, topic, partition, offset, metadata)
    }

    /// The group's committed offset on a partition and its metadata ("" if none), if any.
    pub fn committed_offset_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(u64, String)>> {
        self.backend
            .committed_offset_with_metadata(group, topic, partition)
    }

    /// The group's committed offset on a partition, if any.
    pub fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>> {
        self.backend.committed_offset(group, topic, partition)
    }

    /// Moves a group's offsets on every partition of a topic; returns the new offsets.
    pub fn reset_offsets(&self, group: &str, topic: &str, to: ResetTo) -> Result<Vec<(u32, u64)>> {
        self.backend
            .reset_offsets(group, topic, &ResetPlan::all(to))
    }

    /// Moves a group's offsets as `plan` says (some or all partitions of a topic); returns the
    /// new offsets, committed unless the plan is a dry run.
    pub fn reset_offsets_by_plan(
        &self,
        group: &str,
        topic: &str,
        plan: &ResetPlan,
    ) -> Result<Vec<(u32, u64)>> {
        self.backend.reset_offsets(group, topic, plan)
    }

    /// The group's position and lag on every partition of a topic.
    pub fn group_lag(&self, group: &str, topic: &str) -> Result<Vec<PartitionLag>> {
        self.backend.group_lag(group, topic)
    }

    /// Groups that have committed offsets, sorted.
    pub fn group_names(&self) -> Result<Vec<String>> {
        self.backend.group_names()
    }

    /// Topics a group has committed offsets on, sorted.
    pub fn group_topics(&self, group: &str) -> Result<Vec<String>> {
        self.backend.group_topics(group)
    }

    // ----- maintenance -----------------------------------------------------------------------

    /// Applies retention now instead of waiting for the background interval; returns how many
    /// partitions moved their low watermark.
    pub async fn enforce_retention(&self) -> Result<u64> {
        self.backend.enforce_retention().await
    }

    /// Why the log refuses writes, if an earlier write or sync failed (see "fail-stop" in
    /// docs/architecture.md); `None` while it is healthy.
    pub fn poison_reason(&self) -> Option<String> {
        self.backend.poison_reason()
    }

    /// Why appends are refused right now, if they are: `Poisoned` after a failed write or sync
    /// (until reopened), `StorageFull` while the disk is almost full (clears by itself).
    pub fn write_refusal(&self) -> Option<LogError> {
        self.backend.write_refusal()
    }

    /// Counters since open.
    pub fn stats(&self) -> LogStats {
        self.backend.stats()
    }

    /// Bytes the log occupies on disk.
    pub fn disk_bytes(&self) -> Result<u64> {
        self.backend.disk_bytes()
    }

    /// Stops the log after it finishes its current work and syncs; later calls fail with
    /// `Closed`. Dropping the last handle does the same.
    pub fn shutdown(&self) {
        self.backend.shutdown()
    }
}
