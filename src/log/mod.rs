//! The log: Kafka semantics inside one process. The rest of the crate sees only [`Log`], a
//! cheap-clone handle over a `LogBackend` (the narrow interface in `backend`), and the
//! backend-neutral types re-exported here; the embedded implementation, stored in sled, is
//! `SledLog` and never leaves this module.
//!
//! Topics have partitions; a partition is an append-only sequence of records with dense offsets
//! from 0. Appends go through one group-commit writer (`appender`) and are acknowledged once
//! durable; reads see records below the high watermark only; consumer groups commit offsets
//! forward only (`groups`); retention deletes old batches by age and size (`retention`).
//! Opening recovers every topic, watermark and offset without scanning records.
//!
//! This module knows nothing of chat, and owns no state of other components: the chat store
//! keeps its own database (see `store/`). What any backend must do is stated once, as a
//! conformance suite generic over the implementation (`tests/integration/log_conformance.rs`).
//!
//! Files: `backend` (the interface), `handle` ([`Log`]), `embedded` (the interface implemented
//! by `SledLog`), `appender` (the writer thread), `batch` (on-disk format), `partition` /
//! `topics` (in-memory state and registry), `reader`, `groups`, `retention`, `datadir`
//! (directory, lock, engine), `sync` (fdatasync of the engine's files), `free_space` (the guard
//! that refuses appends on a nearly full disk), `partitioner` (key → partition).

mod appender;
mod backend;
mod batch;
mod config;
mod datadir;
mod embedded;
mod error;
mod free_space;
mod groups;
mod handle;
mod jetstream;
mod names;
mod partition;
mod partitioner;
mod reader;
mod record;
mod retention;
mod stats;
mod sync;
mod syncer;
mod topics;

use parking_lot::Mutex;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::{oneshot, watch};

pub(crate) use backend::LogBackend;
pub use config::{Durability, LogConfig, TopicConfig, MAX_PARTITIONS};
pub(crate) use config::{
    DEFAULT_MAX_TOPICS, DEFAULT_MAX_TOTAL_PARTITIONS, DEFAULT_MIN_FREE_DISK_BYTES,
};
pub use error::{LogError, Result};
pub use groups::{PartitionLag, ResetPlan, ResetTo};
pub use handle::Log;
pub(crate) use jetstream::placed as retry_while_cluster_forms;
pub use jetstream::{JetStreamConfig, IDEMPOTENCY_HEADER};
pub(crate) use names::{validate_group_name, validate_topic_name};
pub use partitioner::partition_for_key;
pub use reader::ReadLimits;
pub use record::{Appended, Header, Record, StoredRecord};
pub use stats::LogStats;

use appender::{AppendRequest, Appender, Command, Exclusive};
use datadir::DataDir;
use groups::Groups;
use stats::Counters;
use topics::{Capacity, Registry, Topic};

/// State shared by the handle, the appender and retention.
pub(crate) struct Shared {
    pub config: LogConfig,
    pub db: sled::Db,
    pub registry: Registry,
    pub groups: Groups,
    pub counters: Counters,
    pub free_space: free_space::FreeSpaceGuard,
    poisoned: Mutex<Option<String>>,
    data_dir: DataDir,
}

impl Shared {
    pub(crate) fn poison_reason(&self) -> Option<String> {
        self.poisoned.lock().clone()
    }

    pub(crate) fn poison(&self, reason: String) {
        self.poisoned.lock().get_or_insert(reason);
    }
}

/// A partition's retained range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition number.
    pub partition: u32,
    /// First retained offset (low watermark).
    pub low: u64,
    /// One past the last durable offset (high watermark).
    pub high: u64,
    /// Bytes the retained batches take (encoded, before the engine's own overhead).
    pub bytes: u64,
}

/// A topic's configuration and partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Persisted configuration.
    pub config: TopicConfig,
    /// Every partition, in order.
    pub partitions: Vec<PartitionInfo>,
}

struct Workers {
    /// The appender, which joins the syncer it owns on the way out.
    appender: Option<JoinHandle<()>>,
    retention: Option<(Sender<()>, JoinHandle<()>)>,
}

struct Inner {
    shared: Arc<Shared>,
    commands: Sender<Command>,
    workers: Mutex<Workers>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        stop_workers(&self.workers, &self.commands);
    }
}

/// The embedded log in sled; the rest of the crate reaches it through [`Log`].
pub(crate) struct SledLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SledLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledLog")
            .field("dir", &self.inner.shared.config.dir)
            .finish_non_exhaustive()
    }
}

impl SledLog {
    /// Opens (or creates) the log in `config.dir`, recovering every topic, partition, watermark
    /// and committed offset, and starts the appender and retention threads.
    pub(crate) fn open(config: LogConfig) -> Result<SledLog> {
        let data_dir = DataDir::open(&config.dir)?;
        let db = data_dir.open_engine(&config)?;
        data_dir.restrict_engine_files();
        let files = sync::DurableFiles::open(&data_dir.engine_path())?;
        let shared = Arc::new(Shared {
            registry: Registry::recover(&db, Capacity::of(&config))?,
            groups: Groups::open(&db)?,
            counters: Counters::default(),
            free_space: free_space::FreeSpaceGuard::new(&config.dir, config.min_free_disk_bytes),
            poisoned: Mutex::new(None),
            config,
            db,
            data_dir,
        });
        let (commands, receiver) = crossbeam_channel::bounded(shared.config.queue_capacity);
        let appender =
            spawn_writer_threads(shared.clone(), receiver, files).map_err(datadir_io(&shared))?;
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let retention =
            retention::spawn(commands.clone(), stopped, shared.config.retention_interval)
                .map_err(datadir_io(&shared))?;
        let workers = Workers {
            appender: Some(appender),
            retention: Some((stop, retention)),
        };
        Ok(SledLog {
            inner: Arc::new(Inner {
                shared,
                commands,
                workers: Mutex::new(workers),
            }),
        })
    }

    // ----- appending -------------------------------------------------------------------------

    /// Appends records to a topic (each to its key's partition, unkeyed ones round-robin) and
    /// returns where each landed, once the whole append is durable.
    pub(crate) async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>> {
        self.appended(topic, None, records, Queueing::Refuse).await
    }

    /// Appends records to one given partition.
    pub(crate) async fn append_to(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> Result<Vec<Appended>> {
        self.appended(topic, Some(partition), records, Queueing::Refuse)
            .await
    }

    /// Appends records to one given partition, letting their sync wait up to
    /// [`LogConfig::linger`] for another append's (see `syncer.rs`); resolves once durable.
    pub(crate) async fn append_lingering(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> Result<Vec<Appended>> {
        self.appended(topic, Some(partition), records, Queueing::RefuseLingering)
            .await
    }

    /// Submits an append and waits for its outcome.
    async fn appended(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<Record>,
        queueing: Queueing,
    ) -> Result<Vec<Appended>> {
        self.submit(topic, partition, records, queueing)?
            .await
            .unwrap_or(Err(LogError::Closed))
    }

    fn submit(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<Record>,
        queueing: Queueing,
    ) -> Result<oneshot::Receiver<Result<Vec<Appended>>>> {
        validate_topic_name(topic)?;
        if records.is_empty() {
            return Err(LogError::EmptyAppend);
        }
        let limit = self.inner.shared.config.max_record_bytes;
        if let Some(size) = records.iter().map(Record::size).find(|size| *size > limit) {
            return Err(LogError::RecordTooLarge { size, limit });
        }
        self.refuse_writes_if_unable()?;
        let (reply, receiver) = oneshot::channel();
        let command = Command::Append(AppendRequest {
            topic: topic.to_owned(),
            partition,
            records,
            reply,
            linger: queueing == Queueing::RefuseLingering,
        });
        if queueing == Queueing::Wait {
            self.inner
                .commands
                .send(command)
                .map_err(|_| LogError::Closed)?;
        } else {
            self.inner.commands.try_send(command).map_err(|e| match e {
                TrySendError::Full(_) => LogError::Overloaded,
                TrySendError::Disconnected(_) => LogError::Closed,
            })?;
        }
        Ok(receiver)
    }

    /// Makes everything appended so far durable now (useful in `interval` and `never` modes).
    pub(crate) async fn sync(&self) -> Result<()> {
        let (reply, receiver) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Sync(reply))
            .map_err(|_| LogError::Closed)?;
        receiver.await.unwrap_or(Err(LogError::Closed))
    }

    /// Runs `work` on the writer thread, ordered with appends, then syncs.
    async fn exclusive<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Shared) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, receiver) = oneshot::channel();
        let job: Exclusive = Box::new(move |shared| {
            let _ = reply.send(work(shared));
        });
        self.inner
            .commands
            .send(Command::Exclusive(job))
            .map_err(|_| LogError::Closed)?;
        let outcome = receiver.await.unwrap_or(Err(LogError::Closed))?;
        self.sync().await?;
        Ok(outcome)
    }

    // ----- topics ----------------------------------------------------------------------------

    /// Creates a topic; `TopicExists` if it is there already.
    pub(crate) async fn create_topic(&self, name: &str, config: TopicConfig) -> Result<TopicInfo> {
        validate_topic_name(name)?;
        config.validate()?;
        self.inner.shared.free_space.check()?;
        let owned = name.to_owned();
        self.exclusive(move |shared| shared.registry.create(&owned, config).map(|_| ()))
            .await?;
        self.describe_topic(name)
    }

    /// Changes a topic's retention, protected groups, or grows its partitions (existing records
    /// stay where they are; keys hash over the new count from now on, as in Kafka).
    pub(crate) async fn alter_topic(&self, name: &str, config: TopicConfig) -> Result<TopicInfo> {
        validate_topic_name(name)?;
        config.validate()?;
        self.inner.shared.free_space.check()?;
        let owned = name.to_owned();
        self.exclusive(move |shared| shared.registry.alter(&owned, config))
            .await?;
        self.describe_topic(name)
    }

    /// Deletes a topic, its records and every group's offsets on it.
    pub(crate) async fn delete_topic(&self, name: &str) -> Result<()> {
        validate_topic_name(name)?;
        let owned = name.to_owned();
        self.exclusive(move |shared| {
            shared.registry.delete(&owned)?;
            shared.groups.forget_topic(&owned)
        })
        .await
    }

    /// Names of all topics, sorted.
    pub(crate) fn topic_names(&self) -> Vec<String> {
        self.inner
            .shared
            .registry
            .list()
            .iter()
            .map(|t| t.name.clone())
            .collect()
    }

    /// A topic's configuration and partitions' watermarks.
    pub(crate) fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        let topic = self.topic(name)?;
        let partitions = topic
            .partitions()
            .iter()
            .map(|p| {
                let bytes = match (p.first_header(name)?, p.last_header(name)?) {
                    (Some(first), Some(last)) => last.end_position() - first.base_position,
                    _ => 0,
                };
                Ok(PartitionInfo {
                    partition: p.id,
                    low: p.low(),
                    high: p.high(),
                    bytes,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TopicInfo {
            name: topic.name.clone(),
            config: topic.config(),
            partitions,
        })
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        validate_topic_name(name)?;
        self.inner.shared.registry.require(name)
    }

    // ----- reading ---------------------------------------------------------------------------

    /// Reads durable records from `offset` on. `OffsetOutOfRange` below the low watermark or
    /// above the high watermark; an empty answer at the high watermark.
    pub(crate) fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        limits: ReadLimits,
    ) -> Result<Vec<StoredRecord>> {
        let partition_state = self.topic(topic)?.partition(partition)?;
        reader::read(topic, &partition_state, offset, limits)
    }

    /// (low, high) watermarks of a partition.
    pub(crate) fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64)> {
        let p = self.topic(topic)?.partition(partition)?;
        Ok((p.low(), p.high()))
    }

    /// A receiver of the partition's high watermark, for consumers that loop on it.
    pub(crate) fn subscribe(&self, topic: &str, partition: u32) -> Result<watch::Receiver<u64>> {
        Ok(self.topic(topic)?.partition(partition)?.subscribe())
    }

    /// The first offset whose record was appended at or after `timestamp_ms` (the high
    /// watermark if none was).
    pub(crate) fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<u64> {
        let p = self.topic(topic)?.partition(partition)?;
        for header in p.batch_headers(topic) {
            let header = header?;
            if header.timestamp_ms >= timestamp_ms {
                return Ok(header.base_offset.max(p.low()));
            }
        }
        Ok(p.high())
    }

    // ----- consumer groups -------------------------------------------------------------------

    /// Commits `offset` (the next offset to read) for a group; it may not move backwards nor
    /// pass the high watermark.
    pub(crate) fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<()> {
        let (low, high) = self.watermarks(topic, partition)?;
        if offset > high {
            return Err(LogError::OffsetOutOfRange {
                topic: topic.into(),
                partition,
                offset,
                earliest: low,
                latest: high,
            });
        }
        self.inner
            .shared
            .groups
            .commit(group, topic, partition, offset)
    }

    /// Sets a group's committed offset and its metadata as a Kafka client commits them (also
    /// backwards), never past the high watermark.
    pub(crate) fn commit_offset_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
        metadata: &str,
    ) -> Result<()> {
        let (low, high) = self.watermarks(topic, partition)?;
        if offset > high {
            return Err(LogError::OffsetOutOfRange {
                topic: topic.into(),
                partition,
                offset,
                earliest: low,
                latest: high,
            });
        }
        let groups = &self.inner.shared.groups;
        groups.set_with_metadata(group, topic, partition, offset, metadata)
    }

    /// The group's committed offset on a partition and its metadata, if any.
    pub(crate) fn committed_offset_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(u64, String)>> {
        self.topic(topic)?.partition(partition)?;
        let groups = &self.inner.shared.groups;
        groups.committed_with_metadata(group, topic, partition)
    }

    /// The group's committed offset on a partition, if any.
    pub(crate) fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>> {
        self.topic(topic)?.partition(partition)?;
        self.inner.shared.groups.committed(group, topic, partition)
    }

    /// Moves a group's offsets as `plan` says (every partition of the topic, or the listed
    /// ones); returns the new offsets, written unless the plan is a dry run.
    pub(crate) fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        plan: &ResetPlan,
    ) -> Result<Vec<(u32, u64)>> {
        validate_group_name(group)?;
        let t = self.topic(topic)?;
        let partitions = if plan.partitions.is_empty() {
            t.partitions()
        } else {
            plan.partitions
                .iter()
                .map(|id| t.partition(*id))
                .collect::<Result<_>>()?
        };
        let mut moved = Vec::new();
        for p in partitions {
            let committed = self.inner.shared.groups.committed(group, topic, p.id)?;
            let at_time = |ms| self.offset_for_time(topic, p.id, ms);
            let offset = groups::reset_target(plan.to, (p.low(), p.high()), committed, at_time)?;
            if !plan.dry_run {
                self.inner.shared.groups.set(group, topic, p.id, offset)?;
            }
            moved.push((p.id, offset));
        }
        Ok(moved)
    }

    /// The group's position and lag on every partition of a topic.
    pub(crate) fn group_lag(&self, group: &str, topic: &str) -> Result<Vec<PartitionLag>> {
        validate_group_name(group)?;
        let t = self.topic(topic)?;
        t.partitions()
            .iter()
            .map(|p| {
                let committed = self.inner.shared.groups.committed(group, topic, p.id)?;
                let (low, high) = (p.low(), p.high());
                let from = committed.unwrap_or(low).max(low);
                Ok(PartitionLag {
                    partition: p.id,
                    committed,
                    low,
                    high,
                    lag: high.saturating_sub(from),
                })
            })
            .collect()
    }

    /// Groups that have committed offsets, sorted.
    pub(crate) fn group_names(&self) -> Result<Vec<String>> {
        self.inner.shared.groups.list()
    }

    /// Topics a group has committed offsets on, sorted.
    pub(crate) fn group_topics(&self, group: &str) -> Result<Vec<String>> {
        self.inner.shared.groups.topics_of(group)
    }

    // ----- maintenance -----------------------------------------------------------------------

    /// Applies retention now instead of waiting for the background interval; returns how many
    /// partitions moved their low watermark.
    pub(crate) async fn enforce_retention(&self) -> Result<u64> {
        self.exclusive(retention::enforce).await
    }

    /// Why the log refuses writes, if an earlier write or sync failed (see "fail-stop" in
    /// docs/architecture.md); `None` while it is healthy.
    pub(crate) fn poison_reason(&self) -> Option<String> {
        self.inner.shared.poison_reason()
    }

    /// Why appends are refused right now, if they are: `Poisoned` after a failed write or sync
    /// (until reopened), `StorageFull` while the disk is almost full (clears by itself).
    pub(crate) fn write_refusal(&self) -> Option<LogError> {
        self.refuse_writes_if_unable().err()
    }

    fn refuse_writes_if_unable(&self) -> Result<()> {
        if let Some(reason) = self.inner.shared.poison_reason() {
            return Err(LogError::Poisoned(reason));
        }
        self.inner.shared.free_space.check()
    }

    /// Counters since open.
    pub(crate) fn stats(&self) -> LogStats {
        self.inner.shared.counters.snapshot()
    }

    /// Bytes the storage engine occupies on disk.
    pub(crate) fn disk_bytes(&self) -> Result<u64> {
        Ok(self.inner.shared.db.size_on_disk()?)
    }

    /// Stops the threads after they finish their current work and syncs; later calls fail with
    /// `Closed`. Dropping the last handle does the same.
    pub(crate) fn shutdown(&self) {
        stop_workers(&self.inner.workers, &self.inner.commands);
    }
}

fn stop_workers(workers: &Mutex<Workers>, commands: &Sender<Command>) {
    let mut workers = workers.lock();
    if let Some((stop, handle)) = workers.retention.take() {
        let _ = stop.send(());
        let _ = handle.join();
    }
    if let Some(handle) = workers.appender.take() {
        let _ = commands.send(Command::Shutdown);
        let _ = handle.join();
    }
}

/// Starts the syncer and the appender; the returned handle finishes when both have. A panic in
/// either poisons the log instead of leaving it half alive.
fn spawn_writer_threads(
    shared: Arc<Shared>,
    commands: crossbeam_channel::Receiver<Command>,
    files: sync::DurableFiles,
) -> std::io::Result<JoinHandle<()>> {
    let (stages, staged) = crossbeam_channel::bounded(1024);
    let syncer_shared = shared.clone();
    let syncer = std::thread::Builder::new()
        .name("tidings-log-syncer".into())
        .spawn(move || {
            let syncer = syncer::Syncer::new(syncer_shared.clone(), staged, files);
            poison_on_panic(&syncer_shared, "syncer", || syncer.run());
        })?;
    std::thread::Builder::new()
        .name("tidings-log-appender".into())
        .spawn(move || {
            let appender = Appender::new(shared.clone(), commands, stages);
            poison_on_panic(&shared, "appender", || appender.run());
            let _ = syncer.join();
        })
}

fn poison_on_panic(shared: &Shared, thread: &str, work: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).is_err() {
        shared.poison(format!("the {thread} thread panicked"));
    }
}

fn datadir_io(shared: &Shared) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    error::io_error(&shared.data_dir.path)
}

/// How an append is handed to the appender's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queueing {
    /// Refused with `Overloaded` when the queue is full; synced as soon as it is written.
    Refuse,
    /// Refused when the queue is full; its sync may linger for another append's.
    RefuseLingering,
    /// Waits for queue space (threads outside the async runtime).
    Wait,
}
