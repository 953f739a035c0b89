//! Typed errors of the log (embedded or on the cluster).
//!
//! One enum for the whole `log` module: every variant says what went wrong in words an operator
//! understands, and the callers (HTTP, CLI) map variants to their own answers. `sled` errors are
//! converted here and never leave the module as `sled` types.

use std::path::PathBuf;

/// Result alias used throughout the log.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// Everything the embedded log can refuse or fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A topic name is empty, too long, or uses characters outside `[A-Za-z0-9._-]`.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A consumer group name is empty, too long, or uses characters outside `[A-Za-z0-9._-]`.
    #[error("invalid consumer group name {name:?}: {reason}")]
    InvalidGroupName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A topic configuration value is out of range (for example 0 partitions).
    #[error("invalid topic configuration: {0}")]
    InvalidConfig(String),
    /// The topic does not exist (and automatic creation is off or not applicable).
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    /// A topic of that name exists already.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// The partition number is not below the topic's partition count.
    #[error("topic {topic:?} has no partition {partition} (it has {partitions})")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The requested partition.
        partition: u32,
        /// How many partitions the topic has.
        partitions: u32,
    },
    /// The offset is below the retained range (deleted by retention) or above the high watermark.
    #[error(
        "offset {offset} is out of range for {topic}/{partition}: \
         the readable offsets are {earliest}..{latest}"
    )]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The requested offset.
        offset: u64,
        /// The low watermark: the first retained offset.
        earliest: u64,
        /// The high watermark: one past the last durable offset.
        latest: u64,
    },
    /// Creating or growing a topic would pass `max_topics` or `max_total_partitions`.
    #[error("{0}")]
    LimitReached(String),
    /// A commit would move a group's committed offset backwards; only a reset may do that.
    #[error(
        "commit of offset {offset} for group {group:?} on {topic}/{partition} would move it back \
         from {committed}; use reset-offsets to rewind"
    )]
    CommitRegression {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset that was offered.
        offset: u64,
        /// The offset committed now.
        committed: u64,
    },
    /// A record, or an append as a whole, is larger than the configured limit.
    #[error("record of {size} bytes exceeds the limit of {limit} bytes")]
    RecordTooLarge {
        /// Size of the offending record (key + headers + value).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An append carried no records.
    #[error("an append needs at least one record")]
    EmptyAppend,
    /// Another process (or another `Log` in this process) holds the data directory.
    #[error(
        "the data directory {path} is in use by another process{holder} \
         (is `tidings serve` running on it? stop it, or point --data-dir elsewhere)"
    )]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// ", pid N" when the lock file names its holder.
        holder: String,
    },
    /// The directory exists but was not created by Tidings, or by an incompatible version.
    #[error("{path} is not a Tidings data directory: {reason}")]
    ForeignDirectory {
        /// The directory.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// Stored data failed its checksum or could not be decoded.
    #[error("corrupt data in {location}: {reason}")]
    Corrupt {
        /// Where the corruption was found (topic/partition@offset or a tree name).
        location: String,
        /// What was wrong.
        reason: String,
    },
    /// An earlier write or sync failed; the log refuses writes until it is reopened, so that it
    /// never acknowledges data it could not make durable.
    #[error("the log refuses writes after an earlier storage failure ({0}); restart to recover")]
    Poisoned(String),
    /// The disk holding the data directory has less free space than the configured minimum
    /// (`LogConfig::min_free_disk_bytes`); appends are refused until space frees up. Unlike
    /// `Poisoned`, this clears by itself.
    #[error(
        "the disk holding the data directory has {available} bytes free, below the minimum of \
         {minimum}; writes resume once space is freed"
    )]
    StorageFull {
        /// Bytes free for unprivileged writers at the last check.
        available: u64,
        /// The configured minimum.
        minimum: u64,
    },
    /// The disk holding the data directory ran out of space while the storage engine opened or
    /// recovered its files: nothing is damaged, the engine only needs room to start.
    #[error(
        "no space left on the disk holding {path}: free some space, then start again \
         (the data directory is not damaged)"
    )]
    NoSpace {
        /// The data directory.
        path: PathBuf,
    },
    /// The append queue is full: the writer is behind. Try again shortly.
    #[error("the log's append queue is full; try again shortly")]
    Overloaded,
    /// The log is shutting down or was closed.
    #[error("the log is shut down")]
    Closed,
    /// The cluster log cannot answer now (no quorum, no connection, or no answer in time):
    /// nothing was acknowledged; the caller may try again once the cluster is back.
    #[error("the cluster log is unavailable: {0}")]
    Unavailable(String),
    /// An operating-system I/O error outside the storage engine (lock file, data directory).
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The storage engine failed (disk full, I/O error, internal error).
    #[error("storage error: {0}")]
    Storage(String),
}

impl LogError {
    /// True for failures of the disk or storage engine (as opposed to bad input): callers answer
    /// these with "try again later" (HTTP 503) rather than "your request is wrong".
    pub fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            LogError::Storage(_)
                | LogError::Poisoned(_)
                | LogError::StorageFull { .. }
                | LogError::NoSpace { .. }
                | LogError::Io { .. }
                | LogError::Closed
                | LogError::Overloaded
                | LogError::Unavailable(_)
        )
    }
}

impl From<sled::Error> for LogError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { at, .. } => LogError::Corrupt {
                location: format!("the storage engine at {at:?}"),
                reason: "checksum mismatch".into(),
            },
            other => LogError::Storage(other.to_string()),
        }
    }
}

/// The error a failpoint injects at an I/O edge: `return(enospc)` gives the operating system's
/// "no space left on device" (raw error 28, kind `StorageFull`), any other argument an `EIO`.
/// Failpoints compile to nothing outside test builds, so there this is unused.
#[allow(dead_code)]
pub(crate) fn injected_io_error(arg: Option<String>) -> std::io::Error {
    const ENOSPC: i32 = 28;
    const EIO: i32 = 5;
    match arg.as_deref() {
        Some("enospc") => std::io::Error::from_raw_os_error(ENOSPC),
        _ => std::io::Error::from_raw_os_error(EIO),
    }
}

/// Wraps an `std::io::Error` with the path it concerns.
pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LogError {
    let path = path.into();
    move |source| LogError::Io { path, source }
}
