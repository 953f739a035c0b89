//! The store's applied-up-to position, kept in its own database, and its mirror in the log.
//!
//! Tree `applied`: partition of `messages` (u32 BE) → the next offset to apply (u64 BE). The
//! store writer moves it forward in memory after each batch ([`Store::commit_batch`]); the
//! store's [`checkpoint`](super::checkpoint) writes it to disk together with the activity and
//! read state it covers, then flushes and syncs. After a crash the writer resumes from the
//! position of the last checkpoint ([`Store::applied_offset`]) and replays what followed.
//! Nothing here is synced per batch: the 202 of a send rests on the log, and the store is state
//! derived from it.
//!
//! The log's consumer group `store` still exists, for `tidings groups describe store`, lag in
//! `/metrics` and retention's protection of `messages`, but it follows the store and is never
//! ahead of what the store holds durably: [`Store::mirror_position`] checkpoints at most every
//! [`MIRROR_INTERVAL`], off the writers' path, and then commits the positions the checkpoint
//! wrote. It does so a last time when the writers have stopped.
//!
//! This module does not apply batches (`apply`) and knows nothing of how records are read.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::sync::Notify;

use super::apply::BatchPosition;
use super::error::{Result, StoreError};
use super::keys;
use super::Store;
use crate::log::{Log, LogError};

/// How often, at most, the store checkpoints and commits its position to the log.
/// Often, so each flush is small: a larger flush holds the disk long enough to delay the log's
/// syncs, and with them every send's acknowledgement and delivery (docs/architecture.md, "The
/// store's position", has the figures for 1 s, 100 ms, 50, 30 and 20 ms).
const MIRROR_INTERVAL: Duration = Duration::from_millis(30);

/// The applied position of every partition: on disk (tree `applied`) and in memory.
pub(crate) struct Positions {
    tree: sled::Tree,
    /// The next offset to apply per partition, as applied (written at the next checkpoint).
    next: Mutex<BTreeMap<u32, u64>>,
    /// Signalled after every move, to wake the mirror.
    changed: Notify,
}

impl Positions {
    pub(super) fn open(db: &sled::Db) -> Result<Positions> {
        let tree = db.open_tree("applied")?;
        let mut next = BTreeMap::new();
        for item in tree.iter() {
            let (key, value) = item?;
            let partition = <[u8; 4]>::try_from(key.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::corrupt("applied", "malformed partition key"))?;
            next.insert(partition, keys::decode_u64("applied", &value)?);
        }
        Ok(Positions {
            tree,
            next: Mutex::new(next),
            changed: Notify::new(),
        })
    }

    fn next(&self) -> parking_lot::MutexGuard<'_, BTreeMap<u32, u64>> {
        // Every update of the map is one insert: a panic cannot leave it half changed.
        self.next.lock()
    }

    /// Moves a partition's position forward; a move back is refused (`CommitRegression`).
    fn advance(&self, position: &BatchPosition<'_>) -> Result<()> {
        let mut next = self.next();
        let current = next.get(&position.partition).copied();
        match current {
            Some(committed) if position.next_offset < committed => {
                return Err(StoreError::Log(LogError::CommitRegression {
                    group: position.group.into(),
                    topic: position.topic.into(),
                    partition: position.partition,
                    offset: position.next_offset,
                    committed,
                }))
            }
            Some(committed) if position.next_offset == committed => return Ok(()),
            _ => {}
        }
        next.insert(position.partition, position.next_offset);
        drop(next);
        self.changed.notify_one();
        Ok(())
    }

    /// Every partition's position now, for a checkpoint to write.
    pub(super) fn noted(&self) -> BTreeMap<u32, u64> {
        self.next().clone()
    }

    /// Writes noted positions (not synced: the checkpoint flushes after), calling `count`
    /// before each write (the checkpoint's crash test hook).
    pub(super) fn write(
        &self,
        noted: &BTreeMap<u32, u64>,
        count: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        for (partition, next_offset) in noted {
            count()?;
            self.tree
                .insert(partition.to_be_bytes(), &next_offset.to_be_bytes())?;
        }
        Ok(())
    }
}

impl Store {
    /// The next offset of `partition` the store has to apply (`None`: it never applied any);
    /// the store writer resumes from it.
    pub(crate) fn applied_offset(&self, partition: u32) -> Option<u64> {
        self.positions().next().get(&partition).copied()
    }

    /// Records that every record of the partition below `position.next_offset` is applied and
    /// its events relayed (forward only). In memory: the next checkpoint writes it.
    pub(crate) fn commit_batch(&self, position: &BatchPosition<'_>) -> Result<()> {
        self.positions().advance(position)
    }

    /// Keeps the log's consumer group `group` on `topic` at the store's durable position until
    /// `writers_done` resolves, then mirrors a last time and returns. Each round (at most one
    /// per [`MIRROR_INTERVAL`]) checkpoints (see [`checkpoint`](super::checkpoint)) and commits
    /// the positions it made durable: the group is never ahead of what a crash would keep.
    pub(crate) async fn mirror_position(
        self,
        log: Log,
        group: &'static str,
        topic: &'static str,
        writers_done: impl Future<Output = ()>,
    ) {
        tokio::pin!(writers_done);
        loop {
            self.mirror_once(&log, group, topic).await;
            tokio::select! {
                () = &mut writers_done => break,
                () = self.positions().changed.notified() => {}
            }
            tokio::select! {
                () = &mut writers_done => break,
                () = tokio::time::sleep(MIRROR_INTERVAL) => {}
            }
        }
        self.mirror_once(&log, group, topic).await;
    }

    async fn mirror_once(&self, log: &Log, group: &str, topic: &str) {
        let store = self.clone();
        let checkpointed = tokio::task::spawn_blocking(move || store.checkpoint())
            .await
            .map_err(|e| StoreError::Storage(format!("the checkpoint task failed: {e}")))
            .and_then(|written| written);
        let noted = match checkpointed {
            Ok(noted) => noted,
            Err(e) => {
                tracing::warn!(error = %e, "cannot checkpoint the store; its position in the log waits");
                return;
            }
        };
        for (partition, offset) in noted {
            match log.commit_offset(group, topic, partition, offset) {
                // A later round (or the final one) committed further already.
                Ok(()) | Err(LogError::CommitRegression { .. }) => {}
                Err(e) => {
                    tracing::warn!(partition, offset, error = %e, "cannot commit the store's position to the log")
                }
            }
        }
    }
}
