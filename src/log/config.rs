//! Configuration of the log and of each topic.
//!
//! `LogConfig` is given to [`Log::open`](super::Log::open); `TopicConfig` is persisted per topic in
//! the `topics` tree (as JSON, so it stays readable and can grow fields).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{LogError, Result};

/// When an append is acknowledged relative to making it durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge after the group's write is flushed and `fdatasync`'d: an acknowledged record
    /// survives a process crash and a power cut. The default.
    Always,
    /// Acknowledge after the write reached the storage engine's memory; flush and `fdatasync`
    /// every interval. A process crash or power cut loses up to one interval of acknowledged
    /// records.
    Interval(Duration),
    /// Acknowledge after the write reached the storage engine's memory and never sync
    /// explicitly (the engine writes its buffers out about every 500 ms, the kernel later).
    /// A crash can lose acknowledged records; for tests and throwaway data only.
    Never,
}

impl Durability {
    /// The name used in configuration, the CLI and benchmark reports.
    pub fn name(&self) -> &'static str {
        match self {
            Durability::Always => "always",
            Durability::Interval(_) => "interval",
            Durability::Never => "never",
        }
    }
}

impl FromStr for Durability {
    type Err = LogError;

    /// `always`, `never`, `interval` (100 ms) or `interval:MS`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "always" => Ok(Durability::Always),
            "never" => Ok(Durability::Never),
            "interval" => Ok(Durability::Interval(Duration::from_millis(100))),
            other => other
                .strip_prefix("interval:")
                .and_then(|ms| ms.parse::<u64>().ok())
                .filter(|ms| *ms > 0)
                .map(|ms| Durability::Interval(Duration::from_millis(ms)))
                .ok_or_else(|| {
                    LogError::InvalidConfig(format!(
                        "durability {other:?}: expected always, interval, interval:MS or never"
                    ))
                }),
        }
    }
}

/// Default of [`LogConfig::linger`]: long enough for the next acknowledged append to come along
/// at a few hundred appends a second, short against what a consumer of the records waits.
pub(crate) const DEFAULT_LINGER: Duration = Duration::from_millis(5);

/// Default of [`LogConfig::min_free_disk_bytes`]: 128 MiB.
pub(crate) const DEFAULT_MIN_FREE_DISK_BYTES: u64 = 128 * 1024 * 1024;

/// How the log is opened and how it behaves.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The data directory (created when missing).
    pub dir: PathBuf,
    /// When appends are acknowledged; see [`Durability`].
    pub durability: Durability,
    /// Create a topic on its first append instead of failing with `UnknownTopic`.
    pub auto_create_topics: bool,
    /// Partitions of an automatically created topic.
    pub default_partitions: u32,
    /// Largest accepted record (key + headers + value), in bytes.
    pub max_record_bytes: usize,
    /// Largest stored record batch before a group is split into several, in bytes. Keeps every
    /// storage-engine page far below the size at which the engine moves it to a separate blob
    /// file (which it would not sync).
    pub max_batch_bytes: usize,
    /// Most records one group commit takes from the queue.
    pub max_group_records: usize,
    /// Capacity of the append queue in requests; producers wait when it is full.
    pub queue_capacity: usize,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Storage-engine page cache, in bytes.
    pub cache_bytes: u64,
    /// Most topics the log holds; creating one more is refused with `LimitReached`.
    pub max_topics: usize,
    /// Most partitions of all topics together; a create or grow past it is refused with
    /// `LimitReached`. Every partition is a tree of the storage engine, whose catalogue of trees
    /// is rewritten whole when one is added: many partitions cost disk and start-up time.
    pub max_total_partitions: u64,
    /// Appends (and topic creation or growth) are refused with `StorageFull` while the disk
    /// holding the data directory has less free space than this, in bytes; 0 turns the guard
    /// off. A write that meets a full disk would poison the log until a restart; this refusal
    /// clears by itself once space is freed.
    pub min_free_disk_bytes: u64,
    /// Longest a lingering append ([`Log::append_lingering`](super::Log::append_lingering))
    /// waits, in `always` mode, for another append to share its sync. Default 5 ms.
    pub linger: Duration,
}

impl LogConfig {
    /// Defaults for a data directory: durable acks, auto-created 1-partition topics.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogConfig {
            dir: dir.into(),
            durability: Durability::Always,
            auto_create_topics: true,
            default_partitions: 1,
            max_record_bytes: 1024 * 1024,
            max_batch_bytes: 64 * 1024,
            max_group_records: 16 * 1024,
            queue_capacity: 64 * 1024,
            retention_interval: Duration::from_secs(30),
            cache_bytes: 64 * 1024 * 1024,
            max_topics: DEFAULT_MAX_TOPICS,
            max_total_partitions: DEFAULT_MAX_TOTAL_PARTITIONS,
            min_free_disk_bytes: DEFAULT_MIN_FREE_DISK_BYTES,
            linger: DEFAULT_LINGER,
        }
    }
}

/// A topic's persisted settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    /// Number of partitions (at least 1; can grow, never shrink).
    pub partitions: u32,
    /// Delete whole batches older than this many milliseconds.
    #[serde(default)]
    pub retention_ms: Option<u64>,
    /// Delete the oldest batches while a partition holds more than this many bytes.
    #[serde(default)]
    pub retention_bytes: Option<u64>,
    /// Consumer groups whose unconsumed records time-based retention keeps (size-based retention
    /// still applies: a full disk is worse than a lagging consumer).
    #[serde(default)]
    pub protected_groups: Vec<String>,
}

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 4096;
/// Default most topics of one log.
pub(crate) const DEFAULT_MAX_TOPICS: usize = 1000;
/// Default most partitions of all topics together (Kafka's long-standing advice is about
/// 4,000 per broker; here each is a storage-engine tree).
pub(crate) const DEFAULT_MAX_TOTAL_PARTITIONS: u64 = 4096;

impl TopicConfig {
    /// A topic with `partitions` partitions and no retention limits.
    pub fn with_partitions(partitions: u32) -> Self {
        TopicConfig {
            partitions,
            retention_ms: None,
            retention_bytes: None,
            protected_groups: vec![],
        }
    }

    /// Checks the values; called before a topic is created or changed.
    pub fn validate(&self) -> Result<()> {
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return Err(LogError::InvalidConfig(format!(
                "partitions must be between 1 and {MAX_PARTITIONS}, got {}",
                self.partitions
            )));
        }
        if self.retention_ms == Some(0) {
            return Err(LogError::InvalidConfig(
                "retentionMs must be positive".into(),
            ));
        }
        if self.retention_bytes == Some(0) {
            return Err(LogError::InvalidConfig(
                "retentionBytes must be positive".into(),
            ));
        }
        for group in &self.protected_groups {
            super::names::validate_group_name(group)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durability_modes() {
        assert_eq!("always".parse::<Durability>().unwrap(), Durability::Always);
        assert_eq!("never".parse::<Durability>().unwrap(), Durability::Never);
        assert_eq!(
            "interval:250".parse::<Durability>().unwrap(),
            Durability::Interval(Duration::from_millis(250))
        );
        assert!("sometimes".parse::<Durability>().is_err());
        assert!("interval:0".parse::<Durability>().is_err());
    }

    #[test]
    fn rejects_zero_partitions_and_zero_retention() {
        assert!(TopicConfig::with_partitions(0).validate().is_err());
        assert!(TopicConfig::with_partitions(MAX_PARTITIONS + 1)
            .validate()
            .is_err());
        let mut c = TopicConfig::with_partitions(3);
        assert!(c.validate().is_ok());
        c.retention_ms = Some(0);
        assert!(c.validate().is_err());
    }
}
