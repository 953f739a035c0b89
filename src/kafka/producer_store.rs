//! The idempotent producers' state on disk, so that a restart neither hands out a producer id
//! twice nor forgets which batches were appended: `DATA_DIR/kafka/`, a sled database of its
//! own beside the log's (`engine/`) and the chat store's (`store/`).
//!
//! Why its own database and not the log's: this state is the Kafka listener's, not the log's
//! (HTTP and the chat never read it), and the log's interface (`log::backend`) stays what every
//! backend must offer. What it costs: one flush and `fdatasync` of this small database per
//! Produce request that appended idempotent batches, made before the answer leaves.
//!
//! ```text
//! tree "ids"        key "ceiling"  u64 BE: producer ids below it may have been handed out
//! tree "sequences"  key producer id (i64 BE) + partition (u32 BE) + topic name
//!                   value epoch (i16 BE) then per remembered batch, oldest first:
//!                   first sequence (i32 BE), last sequence (i32 BE), first offset (u64 BE)
//! ```
//!
//! Ids are handed out from blocks of [`ID_BLOCK`]: the ceiling of a block is made durable before
//! its first id leaves, so a restart starts at the ceiling and skips what it may have given.
//! It knows nothing of the protocol (`producers` decides what a sequence means).

use std::fs::File;
use std::path::{Path, PathBuf};

/// The directory, under the data directory.
const DIR: &str = "kafka";
/// Ids reserved per durable write of the ceiling.
pub(super) const ID_BLOCK: u64 = 1000;
/// Key of the ceiling in tree `ids`.
const CEILING_KEY: &[u8] = b"ceiling";
/// Cache of the engine: the state is a few dozen bytes per producer and partition.
const CACHE_BYTES: u64 = 8 * 1024 * 1024;
/// Bytes of one remembered batch in a value.
const BATCH_BYTES: usize = 16;

/// Why the producers' state cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProducerStoreError {
    /// The storage engine failed.
    #[error("kafka producer state in {path}: {source}")]
    Engine {
        /// The database's directory.
        path: String,
        /// The engine's error.
        #[source]
        source: sled::Error,
    },
    /// The data file could not be synced.
    #[error("kafka producer state in {path}: {source}")]
    Io {
        /// The database's directory.
        path: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The engine could not read its own files (sled panics on some of them).
    #[error("kafka producer state in {0}: the storage engine could not read its files")]
    Unreadable(String),
}

/// One remembered batch as stored: first and last sequence and its first offset.
pub(super) type StoredBatch = (i32, i32, u64);

/// The open database.
#[derive(Debug, Clone)]
pub(super) struct ProducerStore {
    path: PathBuf,
    ids: sled::Tree,
    sequences: sled::Tree,
    db: sled::Db,
}

impl ProducerStore {
    /// Opens (or creates) `data_dir/kafka/`.
    pub(super) fn open(data_dir: &Path) -> Result<ProducerStore, ProducerStoreError> {
        let path = data_dir.join(DIR);
        let shown = path.display().to_string();
        std::fs::create_dir_all(&path).map_err(|source| ProducerStoreError::Io {
            path: shown.clone(),
            source,
        })?;
        let config = sled::Config::new()
            .path(&path)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(None);
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()))
            .map_err(|_| ProducerStoreError::Unreadable(shown.clone()))?;
        let engine = |source| ProducerStoreError::Engine {
            path: shown.clone(),
            source,
        };
        let db = opened.map_err(engine)?;
        if let Err(e) = crate::private_files::restrict_tree(&path) {
            tracing::warn!(dir = %shown, error = %e, "cannot make the kafka state's files private (0600)");
        }
        Ok(ProducerStore {
            ids: db.open_tree("ids").map_err(engine)?,
            sequences: db.open_tree("sequences").map_err(engine)?,
            db,
            path,
        })
    }

    /// The durable ceiling: every id below it may have been handed out before.
    pub(super) fn id_ceiling(&self) -> Result<u64, ProducerStoreError> {
        let stored = self.ids.get(CEILING_KEY).map_err(|e| self.engine(e))?;
        Ok(stored
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Makes `ceiling` durable before ids below it are handed out. Blocking.
    pub(super) fn raise_id_ceiling(&self, ceiling: u64) -> Result<(), ProducerStoreError> {
        self.ids
            .insert(CEILING_KEY, &ceiling.to_be_bytes())
            .map_err(|e| self.engine(e))?;
        self.flush_and_sync()
    }

    /// The stored epoch and batches of a producer on a partition, if any (a value that does
    /// not decode counts as none: the first batch is then taken as it comes).
    pub(super) fn load(
        &self,
        producer_id: i64,
        topic: &str,
        partition: u32,
    ) -> Option<(i16, Vec<StoredBatch>)> {
        let key = sequence_key(producer_id, topic, partition);
        let value = self.sequences.get(key).ok()??;
        decode_sequences(&value)
    }

    /// Writes a producer's epoch and batches on a partition (durable at the next
    /// [`flush_and_sync`](Self::flush_and_sync)).
    pub(super) fn save(
        &self,
        producer_id: i64,
        topic: &str,
        partition: u32,
        epoch: i16,
        batches: &[StoredBatch],
    ) -> Result<(), ProducerStoreError> {
        let key = sequence_key(producer_id, topic, partition);
        self.sequences
            .insert(key, encode_sequences(epoch, batches))
            .map_err(|e| self.engine(e))?;
        Ok(())
    }

    /// Writes the engine's buffers and `fdatasync`s its data file. Blocking.
    pub(super) fn flush_and_sync(&self) -> Result<(), ProducerStoreError> {
        self.db.flush().map_err(|e| self.engine(e))?;
        let file = self.path.join("db");
        File::open(&file)
            .and_then(|f| f.sync_data())
            .map_err(|source| ProducerStoreError::Io {
                path: self.path.display().to_string(),
                source,
            })
    }

    fn engine(&self, source: sled::Error) -> ProducerStoreError {
        ProducerStoreError::Engine {
            path: self.path.display().to_string(),
            source,
        }
    }
}

fn sequence_key(producer_id: i64, topic: &str, partition: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(12 + topic.len());
    key.extend_from_slice(&producer_id.to_be_bytes());
    key.extend_from_slice(&partition.to_be_bytes());
    key.extend_from_slice(topic.as_bytes());
    key
}

fn encode_sequences(epoch: i16, batches: &[StoredBatch]) -> Vec<u8> {
    let mut value = Vec::with_capacity(2 + batches.len() * BATCH_BYTES);
    value.extend_from_slice(&epoch.to_be_bytes());
    for (first, last, offset) in batches {
        value.extend_from_slice(&first.to_be_bytes());
        value.extend_from_slice(&last.to_be_bytes());
        value.extend_from_slice(&offset.to_be_bytes());
    }
    value
}

fn decode_sequences(value: &[u8]) -> Option<(i16, Vec<StoredBatch>)> {
    let (epoch, rest) = value.split_first_chunk::<2>()?;
    if rest.len() % BATCH_BYTES != 0 {
        return None;
    }
    let batches = rest
        .chunks_exact(BATCH_BYTES)
        .map(|chunk| {
            let (first, rest) = chunk.split_first_chunk::<4>()?;
            let (last, offset) = rest.split_first_chunk::<4>()?;
            let offset = <[u8; 8]>::try_from(offset).ok()?;
            Some((
                i32::from_be_bytes(*first),
                i32::from_be_bytes(*last),
                u64::from_be_bytes(offset),
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((i16::from_be_bytes(*epoch), batches))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_and_the_id_ceiling_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let store = ProducerStore::open(dir.path()).expect("open");
            assert_eq!(store.id_ceiling().expect("read"), 0);
            store.raise_id_ceiling(2 * ID_BLOCK).expect("raise");
            store
                .save(7, "orders", 2, 3, &[(0, 9, 100), (10, 14, 110)])
                .expect("save");
            store.flush_and_sync().expect("sync");
        }
        let store = crate::testing::reopen(|| ProducerStore::open(dir.path()));
        assert_eq!(store.id_ceiling().expect("read"), 2 * ID_BLOCK);
        assert_eq!(
            store.load(7, "orders", 2),
            Some((3, vec![(0, 9, 100), (10, 14, 110)]))
        );
        assert_eq!(store.load(7, "orders", 1), None);
        assert_eq!(store.load(8, "orders", 2), None);
    }

    #[test]
    fn a_value_that_does_not_decode_is_none() {
        assert_eq!(decode_sequences(&[0]), None);
        assert_eq!(decode_sequences(&[0, 1, 2, 3]), None);
        assert_eq!(decode_sequences(&[0, 1]), Some((1, vec![])));
    }
}
