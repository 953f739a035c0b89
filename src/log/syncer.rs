//! The durability stage of the group commit: syncing written groups and acknowledging them.
//!
//! The appender thread writes a group into the storage engine, then hands the group's replies
//! and new partition ends to this stage on the same thread. In `always` mode the stage makes
//! the group durable with one flush and one `fdatasync`, then publishes the high watermarks and
//! completes every waiter. Everything that arrived during that sync is the appender's next
//! group, so load raises the group size, not the number of syncs.
//!
//! It runs on the appender's thread rather than on a thread of its own: a second thread overlaps
//! writing with syncing, but costs two context switches per group, and writing a group (a
//! memcpy per record, one engine insert per 64 KiB) is short next to the sync. On two cores
//! the switches cost more than the overlap won (see docs/benchmarks.md, "Side by side").
//!
//! In `interval` mode the stage acknowledges at once and publishes watermarks (what readers may
//! see) only after the periodic sync; in `never` mode it acknowledges and publishes at once.
//! A failed sync poisons the log and fails every waiter it covered.

use std::sync::Arc;
use std::time::Instant;

use super::appender::AppendReply;
use super::config::Durability;
use super::error::LogError;
use super::partition::Partition;
use super::record::Appended;
use super::stats::Counters;
use super::sync::DurableFiles;
use super::Shared;

/// A partition and its new end offset (the high watermark to publish once durable).
pub(crate) type PartitionEnd = (Arc<Partition>, u64);

/// One written group, waiting to be made durable.
pub(crate) struct Written {
    pub replies: Vec<(AppendReply, Vec<Appended>)>,
    pub ends: Vec<PartitionEnd>,
}

pub(crate) struct Syncer {
    shared: Arc<Shared>,
    files: DurableFiles,
    /// Interval mode: when the oldest unsynced write happened, and the ends it will publish.
    unsynced_since: Option<Instant>,
    unsynced: Vec<PartitionEnd>,
}

impl Syncer {
    pub fn new(shared: Arc<Shared>, files: DurableFiles) -> Self {
        Syncer {
            shared,
            files,
            unsynced_since: None,
            unsynced: Vec::new(),
        }
    }

    /// Interval mode: when the held-back writes must be synced; `None` when nothing waits.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.shared.config.durability, self.unsynced_since) {
            (Durability::Interval(every), Some(since)) => Some(since + every),
            _ => None,
        }
    }

    /// Makes a written group durable as the durability mode says, then acknowledges it.
    pub fn complete(&mut self, written: Written) {
        if written.replies.is_empty() && written.ends.is_empty() {
            return; // every request of the group was refused: nothing was written
        }
        match self.shared.config.durability {
            Durability::Always => self.sync_then_complete(written),
            Durability::Interval(every) => {
                self.complete_before_sync(written);
                if self
                    .unsynced_since
                    .is_some_and(|since| since.elapsed() >= every)
                {
                    // A failure is logged and poisons the log inside; the waiters have their
                    // answer already (interval mode acknowledges before the sync).
                    let _ = self.sync_now();
                }
            }
            Durability::Never => {
                publish(&written.ends);
                reply_all(written.replies);
            }
        }
    }

    fn sync_then_complete(&mut self, written: Written) {
        match self.flush_and_sync() {
            Ok(()) => {
                publish(&written.ends);
                reply_all(written.replies);
            }
            Err(reason) => {
                for (reply, _) in written.replies {
                    let _ = reply.send(Err(LogError::Poisoned(reason.clone())));
                }
            }
        }
    }

    /// Interval mode: acknowledge now, let readers see the records after the next sync.
    fn complete_before_sync(&mut self, written: Written) {
        self.unsynced_since.get_or_insert_with(Instant::now);
        self.unsynced.extend(written.ends);
        reply_all(written.replies);
    }

    /// Syncs and publishes whatever interval mode held back. Err carries the poison reason.
    pub fn sync_now(&mut self) -> std::result::Result<(), String> {
        self.flush_and_sync()?;
        self.unsynced_since = None;
        publish(&std::mem::take(&mut self.unsynced));
        Ok(())
    }

    fn flush_and_sync(&mut self) -> std::result::Result<(), String> {
        if let Some(reason) = self.shared.poison_reason() {
            return Err(reason);
        }
        let started = Instant::now();
        if let Err(e) = self.files.flush_and_sync(&self.shared.db) {
            let reason = e.to_string();
            tracing::error!(error = %reason, "log sync failed; refusing further writes");
            self.shared.poison(reason.clone());
            return Err(reason);
        }
        let counters = &self.shared.counters;
        Counters::add(&counters.syncs, 1);
        Counters::add(&counters.sync_nanos, started.elapsed().as_nanos() as u64);
        Ok(())
    }
}

fn publish(ends: &[PartitionEnd]) {
    for (partition, end) in ends {
        partition.publish_high(*end);
    }
}

fn reply_all(replies: Vec<(AppendReply, Vec<Appended>)>) {
    for (reply, appended) in replies {
        let _ = reply.send(Ok(appended));
    }
}
