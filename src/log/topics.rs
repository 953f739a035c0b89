//! The topic registry: which topics exist, their persisted configuration and their partitions.
//!
//! Changes to the registry (create, grow, delete) run on the appender thread only, so they are
//! ordered with appends; lookups run anywhere.

use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::config::{TopicConfig, MAX_PARTITIONS};
use super::error::{LogError, Result};
use super::names::validate_topic_name;
use super::partition::Partition;
use super::partitioner::partition_for_key;

/// A topic with its partitions.
pub(crate) struct Topic {
    pub name: String,
    config: RwLock<TopicConfig>,
    partitions: RwLock<Vec<Arc<Partition>>>,
    round_robin: AtomicU32,
}

impl Topic {
    pub(crate) fn config(&self) -> TopicConfig {
        self.config.read().clone()
    }

    pub(crate) fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().clone()
    }

    pub(crate) fn partition_count(&self) -> u32 {
        self.partitions.read().len() as u32
    }

    pub(crate) fn partition(&self, id: u32) -> Result<Arc<Partition>> {
        let partitions = self.partitions.read();
        partitions
            .get(id as usize)
            .cloned()
            .ok_or_else(|| LogError::UnknownPartition {
                topic: self.name.clone(),
                partition: id,
                partitions: partitions.len() as u32,
            })
    }

    /// The partition for a record: its key's hash, or the next one round-robin.
    pub(crate) fn choose_partition(&self, key: Option<&[u8]>) -> u32 {
        let n = self.partition_count();
        match key {
            Some(key) => partition_for_key(key, n),
            None => self.round_robin.fetch_add(1, Ordering::Relaxed) % n,
        }
    }
}

/// Storage names: one tree per partition, plus the registry's own trees.
pub(crate) fn partition_tree_name(topic: &str, partition: u32) -> String {
    format!("log/{topic}/{partition}")
}

pub(crate) fn partition_key(topic: &str, partition: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(topic.len() + 5);
    key.extend_from_slice(topic.as_bytes());
    key.push(b'/');
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// How many topics and partitions the registry may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Capacity {
    pub max_topics: usize,
    pub max_total_partitions: u64,
}

impl Capacity {
    pub(crate) fn of(config: &super::LogConfig) -> Capacity {
        Capacity {
            max_topics: config.max_topics,
            max_total_partitions: config.max_total_partitions,
        }
    }
}

/// Decodes one entry of the `topics` tree into (name, config). A name the registry could not
/// have created or a partition count out of range is corrupt data: opening four billion
/// partitions because of one flipped byte is not recovery.
fn decode_topic_entry(name: &[u8], raw: &[u8]) -> Result<(String, TopicConfig)> {
    let text = String::from_utf8_lossy(name).into_owned();
    let corrupt = |reason: String| LogError::Corrupt {
        location: format!("configuration of topic {text}"),
        reason,
    };
    validate_topic_name(&text).map_err(|e| corrupt(e.to_string()))?;
    let config: TopicConfig = serde_json::from_slice(raw).map_err(|e| corrupt(e.to_string()))?;
    if config.partitions == 0 || config.partitions > MAX_PARTITIONS {
        return Err(corrupt(format!(
            "{} partitions (between 1 and {MAX_PARTITIONS} expected)",
            config.partitions
        )));
    }
    Ok((text, config))
}

/// Decodes a persisted low watermark (u64 BE); any other length is corrupt data, not offset 0
/// (which would show records retention had already removed as missing, not as gone).
fn decode_watermark(topic: &str, partition: u32, raw: &[u8]) -> Result<u64> {
    <[u8; 8]>::try_from(raw)
        .map(u64::from_be_bytes)
        .map_err(|_| LogError::Corrupt {
            location: format!("low watermark of {topic}/{partition}"),
            reason: format!("a value of {} bytes (8 expected)", raw.len()),
        })
}

pub(crate) struct Registry {
    db: sled::Db,
    capacity: Capacity,
    /// topic name → JSON `TopicConfig`
    configs: sled::Tree,
    /// `topic/partition` → low watermark persisted by retention
    watermarks: sled::Tree,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
}

impl Registry {
    /// Loads every topic and partition from storage. Topics beyond `capacity` that exist already
    /// (the limits were lowered) are kept; only new ones are refused.
    pub(crate) fn recover(db: &sled::Db, capacity: Capacity) -> Result<Registry> {
        let registry = Registry {
            db: db.clone(),
            capacity,
            configs: db.open_tree("topics")?,
            watermarks: db.open_tree("watermarks")?,
            topics: RwLock::new(BTreeMap::new()),
        };
        let mut topics = BTreeMap::new();
        for item in registry.configs.iter() {
            let (name, raw) = item?;
            let (name, config) = decode_topic_entry(&name, &raw)?;
            let topic = registry.open_topic(&name, config)?;
            topics.insert(name, topic);
        }
        *registry.topics.write() = topics;
        Ok(registry)
    }

    fn open_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        let partitions = (0..config.partitions)
            .map(|p| self.open_partition(name, p).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Topic {
            name: name.to_owned(),
            config: RwLock::new(config),
            partitions: RwLock::new(partitions),
            round_robin: AtomicU32::new(0),
        }))
    }

    fn open_partition(&self, topic: &str, id: u32) -> Result<Partition> {
        let tree = self.db.open_tree(partition_tree_name(topic, id))?;
        let floor = self
            .watermarks
            .get(partition_key(topic, id))?
            .map(|raw| decode_watermark(topic, id, &raw))
            .transpose()?
            .unwrap_or(0);
        Partition::recover(id, topic, tree, floor)
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    pub(crate) fn require(&self, name: &str) -> Result<Arc<Topic>> {
        self.get(name)
            .ok_or_else(|| LogError::UnknownTopic(name.to_owned()))
    }

    pub(crate) fn list(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    /// Creates a topic (appender thread only). Its partitions are created before its
    /// configuration is persisted, and dropped again if anything fails, so a refused create
    /// leaves nothing behind (not even after a restart).
    pub(crate) fn create(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        validate_topic_name(name)?;
        config.validate()?;
        if self.get(name).is_some() {
            return Err(LogError::TopicExists(name.to_owned()));
        }
        self.check_capacity(1, u64::from(config.partitions))?;
        let created = self
            .open_topic(name, config.clone())
            .and_then(|topic| self.persist_config(name, &config).map(|()| topic));
        let topic = match created {
            Ok(topic) => topic,
            Err(e) => {
                self.drop_partition_trees(name, 0..config.partitions);
                return Err(e);
            }
        };
        self.topics.write().insert(name.to_owned(), topic.clone());
        Ok(topic)
    }

    /// `LimitReached` unless `topics` more topics with `partitions` more partitions fit.
    fn check_capacity(&self, topics: usize, partitions: u64) -> Result<()> {
        let existing = self.list();
        let capacity = self.capacity;
        if topics > 0 && existing.len() + topics > capacity.max_topics {
            return Err(LogError::LimitReached(format!(
                "the log holds {} topics, the most it may (limits.maxTopics = {})",
                existing.len(),
                capacity.max_topics
            )));
        }
        let held: u64 = existing
            .iter()
            .map(|t| u64::from(t.partition_count()))
            .sum();
        if held + partitions > capacity.max_total_partitions {
            return Err(LogError::LimitReached(format!(
                "the topics hold {held} partitions and {partitions} more would pass the limit \
                 (limits.maxPartitions = {})",
                capacity.max_total_partitions
            )));
        }
        Ok(())
    }

    /// Best effort: the trees of a topic whose creation or growth failed.
    fn drop_partition_trees(&self, name: &str, partitions: std::ops::Range<u32>) {
        for partition in partitions {
            if let Err(e) = self.db.drop_tree(partition_tree_name(name, partition)) {
                tracing::warn!(topic = name, partition, error = %e, "cannot drop the partition of a failed create");
            }
        }
    }

    /// Changes retention settings and grows the partition count (appender thread only).
    pub(crate) fn alter(&self, name: &str, config: TopicConfig) -> Result<()> {
        config.validate()?;
        let topic = self.require(name)?;
        let current = topic.partition_count();
        if config.partitions < current {
            return Err(LogError::InvalidConfig(format!(
                "topic {name} has {current} partitions; partitions can be added, not removed"
            )));
        }
        self.check_capacity(0, u64::from(config.partitions - current))?;
        let added = (current..config.partitions)
            .map(|p| self.open_partition(name, p).map(Arc::new))
            .collect::<Result<Vec<_>>>()
            .and_then(|added| self.persist_config(name, &config).map(|()| added));
        let added = match added {
            Ok(added) => added,
            Err(e) => {
                self.drop_partition_trees(name, current..config.partitions);
                return Err(e);
            }
        };
        topic.partitions.write().extend(added);
        *topic.config.write() = config;
        Ok(())
    }

    /// Removes a topic and all its records (appender thread only).
    pub(crate) fn delete(&self, name: &str) -> Result<()> {
        let topic = self.require(name)?;
        self.configs.remove(name.as_bytes())?;
        for partition in topic.partitions() {
            self.watermarks.remove(partition_key(name, partition.id))?;
            self.db.drop_tree(partition_tree_name(name, partition.id))?;
        }
        self.topics.write().remove(name);
        Ok(())
    }

    /// Persists a new low watermark and removes the batches wholly below it (appender thread only).
    pub(crate) fn truncate(&self, topic: &Topic, partition: &Partition, below: u64) -> Result<()> {
        self.watermarks.insert(
            partition_key(&topic.name, partition.id),
            &below.to_be_bytes(),
        )?;
        partition.set_low(below);
        // Only whole batches go; offsets below `below` inside a kept batch are hidden by `low`.
        for header in partition.batch_headers(&topic.name) {
            let header = header?;
            if header.end_offset() > below {
                break;
            }
            partition.tree.remove(header.base_offset.to_be_bytes())?;
        }
        Ok(())
    }

    fn persist_config(&self, name: &str, config: &TopicConfig) -> Result<()> {
        let raw = serde_json::to_vec(config).expect("a topic config always serializes");
        self.configs.insert(name.as_bytes(), raw)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_stored_config_with_four_billion_partitions_is_corrupt_not_opened() {
        let raw = br#"{"partitions":4000000000}"#;
        let error = decode_topic_entry(b"t", raw).unwrap_err();
        assert!(matches!(error, LogError::Corrupt { .. }), "{error}");
        assert!(decode_topic_entry(b"t", br#"{"partitions":0}"#).is_err());
        assert!(decode_topic_entry(b"a/b", br#"{"partitions":1}"#).is_err());
    }

    #[test]
    fn recovery_refuses_a_corrupt_registry_with_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        db.open_tree("topics")
            .unwrap()
            .insert("t", &br#"{"partitions":4000000000}"#[..])
            .unwrap();
        let error = Registry::recover(&db, Capacity::of(&super::super::LogConfig::new("unused")))
            .err()
            .expect("a corrupt registry");
        assert!(matches!(error, LogError::Corrupt { .. }), "{error}");
    }

    #[test]
    fn a_torn_watermark_is_corrupt_not_zero() {
        assert_eq!(decode_watermark("t", 0, &7u64.to_be_bytes()).unwrap(), 7);
        let error = decode_watermark("t", 0, &[0, 0, 7]).unwrap_err();
        assert!(matches!(error, LogError::Corrupt { .. }), "{error}");
    }

    fn valid_config() -> impl Strategy<Value = TopicConfig> {
        (
            1..=MAX_PARTITIONS,
            proptest::option::of(1..u64::MAX),
            proptest::option::of(1..u64::MAX),
            proptest::collection::vec("[a-z0-9._-]{1,12}", 0..3),
        )
            .prop_map(
                |(partitions, retention_ms, retention_bytes, groups)| TopicConfig {
                    partitions,
                    retention_ms,
                    retention_bytes,
                    protected_groups: groups,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A persisted config decodes back to itself.
        #[test]
        fn configs_round_trip(config in valid_config()) {
            let raw = serde_json::to_vec(&config).unwrap();
            let (name, decoded) = decode_topic_entry(b"orders", &raw).unwrap();
            prop_assert_eq!(name, "orders");
            prop_assert_eq!(decoded, config);
        }

        /// Random names and values are an error or a config in range, never a panic.
        #[test]
        fn random_entries_never_panic(
            name in proptest::collection::vec(any::<u8>(), 0..20),
            raw in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            if let Ok((_, config)) = decode_topic_entry(&name, &raw) {
                prop_assert!((1..=MAX_PARTITIONS).contains(&config.partitions));
            }
            let _ = decode_watermark("t", 0, &raw);
        }

        /// JSON that looks like a config, with numbers anywhere in range, never panics.
        #[test]
        fn config_shaped_json_never_panics(
            partitions in any::<i64>(),
            retention in any::<f64>(),
            group in ".{0,10}",
        ) {
            let raw = serde_json::json!({
                "partitions": partitions, "retentionMs": retention, "protectedGroups": [group]
            });
            let raw = serde_json::to_vec(&raw).unwrap();
            let _ = decode_topic_entry(b"t", &raw);
        }
    }
}
