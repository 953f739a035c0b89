//! One partition: its storage tree, its watermarks and the watch that wakes waiting readers.
//!
//! The high watermark (one past the last durable offset) is what readers see; the tail (next
//! offset to assign, stored bytes, last timestamp) belongs to the appender thread alone.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::batch::{self, BatchHeader};
use super::error::Result;

/// The appender's view of a partition's end.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tail {
    /// Offset the next appended record gets.
    pub next_offset: u64,
    /// Stored bytes so far (base position of the next batch).
    pub next_position: u64,
    /// Timestamp of the last batch; timestamps never go back within a partition.
    pub last_timestamp: i64,
}

pub(crate) struct Partition {
    pub id: u32,
    pub tree: sled::Tree,
    low: AtomicU64,
    high: watch::Sender<u64>,
    pub tail: Mutex<Tail>,
}

impl Partition {
    /// Restores a partition from its tree and its persisted low watermark (`floor`): reads the
    /// first and last batch only, so opening does not grow with the number of records.
    pub(crate) fn recover(id: u32, topic: &str, tree: sled::Tree, floor: u64) -> Result<Partition> {
        let last = last_intact_batch(topic, id, &tree)?;
        let first = decode_entry(topic, id, tree.first()?)?;
        let high = last.map_or(floor, |h| h.end_offset().max(floor));
        let low = first.map_or(high, |h| h.base_offset.max(floor));
        let tail = Tail {
            next_offset: high,
            next_position: last.map_or(0, |h| h.end_position()),
            last_timestamp: last.map_or(0, |h| h.timestamp_ms),
        };
        Ok(Partition {
            id,
            tree,
            low: AtomicU64::new(low),
            high: watch::Sender::new(high),
            tail: Mutex::new(tail),
        })
    }

    /// One past the last durable offset: readers see offsets below it.
    pub(crate) fn high(&self) -> u64 {
        *self.high.borrow()
    }

    /// The first retained offset.
    pub(crate) fn low(&self) -> u64 {
        self.low.load(Ordering::Acquire)
    }

    /// Makes offsets below `high` visible and wakes waiting readers.
    pub(crate) fn publish_high(&self, high: u64) {
        self.high.send_if_modified(|current| {
            let moved = high > *current;
            if moved {
                *current = high;
            }
            moved
        });
    }

    /// Records that retention removed everything below `low`.
    pub(crate) fn set_low(&self, low: u64) {
        self.low.fetch_max(low, Ordering::AcqRel);
    }

    /// A receiver that changes whenever the high watermark moves.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.high.subscribe()
    }

    /// Header of the newest stored batch.
    pub(crate) fn last_header(&self, topic: &str) -> Result<Option<BatchHeader>> {
        decode_entry(topic, self.id, self.tree.last()?)
    }

    /// Header of the oldest stored batch.
    pub(crate) fn first_header(&self, topic: &str) -> Result<Option<BatchHeader>> {
        decode_entry(topic, self.id, self.tree.first()?)
    }

    /// Headers of the stored batches, oldest first (reads headers only).
    pub(crate) fn batch_headers(
        &self,
        topic: &str,
    ) -> impl Iterator<Item = Result<BatchHeader>> + '_ {
        let topic = topic.to_owned();
        self.tree.iter().map(move |item| {
            let (key, value) = item?;
            batch::decode_header(&value).map_err(|e| batch::corrupt(&topic, self.id, &key, e))
        })
    }
}

fn decode_entry(
    topic: &str,
    id: u32,
    entry: Option<(sled::IVec, sled::IVec)>,
) -> Result<Option<BatchHeader>> {
    entry
        .map(|(key, value)| {
            batch::decode_header(&value).map_err(|e| batch::corrupt(topic, id, &key, e))
        })
        .transpose()
}

/// The last batch, dropping a corrupt one at the very end (a torn tail: it cannot have been
/// acknowledged, because acknowledgement follows the sync). Corruption elsewhere is an error
/// found by readers.
fn last_intact_batch(topic: &str, id: u32, tree: &sled::Tree) -> Result<Option<BatchHeader>> {
    while let Some((key, value)) = tree.last()? {
        match batch::decode_header(&value) {
            Ok(header) => return Ok(Some(header)),
            Err(reason) => {
                tracing::warn!(topic, partition = id, %reason, "dropping a corrupt batch at the tail");
                tree.remove(key)?;
            }
        }
    }
    Ok(None)
}
