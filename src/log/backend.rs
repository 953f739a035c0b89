//! The narrow interface to a log: what the pipeline, the API, the event bus and the CLI need,
//! and nothing of how records are stored.
//!
//! One implementation today, the embedded [`SledLog`](super::SledLog); a cluster backend is
//! meant to be a second one. Callers do not use the trait directly: they hold a
//! [`Log`](super::Log), which wraps any backend and adds what is the same for every backend
//! (the long-poll `wait_for`, the two append shapes). What every implementation must do —
//! durable acknowledgements, dense offsets, wake-ups on a new high watermark, forward-only
//! commits — is the conformance suite in `tests/integration/log_conformance.rs`.
//!
//! Async methods return boxed futures so that the trait stays object safe; the box is one
//! allocation per call, next to the disk write every append waits for.

use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::{
    Appended, LogError, LogStats, PartitionLag, ReadLimits, Record, ResetPlan, Result,
    StoredRecord, TopicConfig, TopicInfo,
};

/// A log: partitioned topics of records with dense offsets, and consumer groups' committed
/// offsets. Every method is callable from any thread; none blocks on the disk except
/// [`append_blocking`](Self::append_blocking).
pub(crate) trait LogBackend: Send + Sync + std::fmt::Debug {
    // ----- appending -------------------------------------------------------------------------

    /// Appends records to a topic — to `partition` if given, else each to its key's partition
    /// (unkeyed ones round-robin) — and resolves once the whole append is durable, with where
    /// each record landed. Refused at once (`Overloaded`) when the writer's queue is full.
    fn append<'a>(
        &'a self,
        topic: &'a str,
        partition: Option<u32>,
        records: Vec<Record>,
    ) -> BoxFuture<'a, Result<Vec<Appended>>>;

    /// [`append`](Self::append) for threads outside an async runtime; waits for queue space.
    fn append_blocking(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<Record>,
    ) -> Result<Vec<Appended>>;

    /// [`append`](Self::append) to one partition, for records no caller waits on at once:
    /// the backend may hold their sync for a moment so that another append's sync covers them
    /// too. Resolves, like `append`, only once they are durable. A backend that does not group
    /// syncs this way appends them as `append` does.
    fn append_lingering<'a>(
        &'a self,
        topic: &'a str,
        partition: u32,
        records: Vec<Record>,
    ) -> BoxFuture<'a, Result<Vec<Appended>>> {
        self.append(topic, Some(partition), records)
    }

    /// Makes everything appended or committed so far durable now.
    fn sync(&self) -> BoxFuture<'_, Result<()>>;

    // ----- topics ----------------------------------------------------------------------------

    /// Creates a topic; `TopicExists` if it is there already.
    fn create_topic<'a>(
        &'a self,
        name: &'a str,
        config: TopicConfig,
    ) -> BoxFuture<'a, Result<TopicInfo>>;

    /// Changes a topic's retention or protected groups, or grows its partitions.
    fn alter_topic<'a>(
        &'a self,
        name: &'a str,
        config: TopicConfig,
    ) -> BoxFuture<'a, Result<TopicInfo>>;

    /// Deletes a topic, its records and every group's offsets on it.
    fn delete_topic<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Names of all topics, sorted.
    fn topic_names(&self) -> Vec<String>;

    /// A topic's configuration and its partitions' watermarks; `UnknownTopic` if missing.
    fn describe_topic(&self, name: &str) -> Result<TopicInfo>;

    // ----- reading ---------------------------------------------------------------------------

    /// Durable records from `offset` on; `OffsetOutOfRange` outside the retained range, an
    /// empty answer at the high watermark.
    fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        limits: ReadLimits,
    ) -> Result<Vec<StoredRecord>>;

    /// (low, high) watermarks of a partition.
    fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64)>;

    /// A receiver of the partition's high watermark: it changes once records below the new
    /// value are durable and readable, never before.
    fn subscribe(&self, topic: &str, partition: u32) -> Result<watch::Receiver<u64>>;

    /// How long a record acknowledged through another node may take to reach what this node
    /// reads: zero where every append goes through this node.
    /// [`Log::watermarks_reaching`](super::Log::watermarks_reaching) waits that long at most.
    fn catch_up_within(&self) -> Duration;

    /// The first offset whose record was appended at or after `timestamp_ms` (the high
    /// watermark if none was).
    fn offset_for_time(&self, topic: &str, partition: u32, timestamp_ms: i64) -> Result<u64>;

    // ----- consumer groups -------------------------------------------------------------------

    /// Commits `offset` (the next to read) for a group: forward only (`CommitRegression`), never
    /// past the high watermark (`OffsetOutOfRange`).
    fn commit_offset(&self, group: &str, topic: &str, partition: u32, offset: u64) -> Result<()>;

    /// Sets a group's committed offset and its metadata string as Kafka clients commit: any
    /// offset up to the high watermark (`OffsetOutOfRange` beyond), backwards too.
    fn commit_offset_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
        metadata: &str,
    ) -> Result<()>;

    /// The group's committed offset on a partition and its metadata ("" if none), if any.
    fn committed_offset_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(u64, String)>>;

    /// The group's committed offset on a partition, if any.
    fn committed_offset(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>>;

    /// Moves a group's offsets as the plan says (all or some partitions of a topic, backwards
    /// too, or only computes them for a dry run); the new offsets.
    fn reset_offsets(&self, group: &str, topic: &str, plan: &ResetPlan) -> Result<Vec<(u32, u64)>>;

    /// The group's position and lag on every partition of a topic.
    fn group_lag(&self, group: &str, topic: &str) -> Result<Vec<PartitionLag>>;

    /// Groups that have committed offsets, sorted.
    fn group_names(&self) -> Result<Vec<String>>;

    /// Topics a group has committed offsets on, sorted.
    fn group_topics(&self, group: &str) -> Result<Vec<String>>;

    // ----- health and maintenance ------------------------------------------------------------

    /// Applies retention now; how many partitions moved their low watermark.
    fn enforce_retention(&self) -> BoxFuture<'_, Result<u64>>;

    /// Why the log refuses writes until reopened (a failed write or sync), if it does.
    fn poison_reason(&self) -> Option<String>;

    /// Why appends are refused right now, if they are (poisoned, or the disk almost full).
    fn write_refusal(&self) -> Option<LogError>;

    /// Counters since open.
    fn stats(&self) -> LogStats;

    /// Bytes the log occupies on disk.
    fn disk_bytes(&self) -> Result<u64>;

    /// Finishes the current work, syncs and stops; later calls fail with `Closed`.
    fn shutdown(&self);
}
