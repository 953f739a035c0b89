//! The durability stage of the group commit: the thread that syncs and acknowledges.
//!
//! The appender writes a group into the storage engine and hands the syncer the group's replies
//! and new partition ends. The syncer takes everything handed over so far, makes it durable with
//! one flush and one `fdatasync` (`always`), then publishes the high watermarks and completes the
//! waiters. While it syncs, the appender already writes the next group, so writing and syncing
//! overlap and one sync covers every group written during the previous one.
//!
//! A group of lingering appends only (`Log::append_lingering`: records nobody waits on at once,
//! such as the chat pipeline's events) does not get a sync of its own in `always` mode: it is
//! held for up to [`LogConfig::linger`](super::LogConfig::linger) until a group that does
//! comes along, and both are made durable by that one sync (a barrier or shutdown syncs it
//! too). Its waiters are still answered only once it is durable, so a lingering append
//! promises what an append does, a few milliseconds later at most. On the chat path each
//! message's event rides on the sync of the next message's command (at 1,000 messages a second,
//! 0.95 `fdatasync`s per message instead of 1.70).
//!
//! In `interval` mode the syncer acknowledges at once and publishes watermarks (what readers may
//! see) only after the periodic sync; in `never` mode it acknowledges and publishes at once.
//! A failed sync poisons the log and fails every waiter it covered.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::sync::oneshot;

use super::appender::AppendReply;
use super::config::Durability;
use super::error::{LogError, Result};
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
    /// Every append of the group is lingering: it may wait for another group's sync.
    pub lingering: bool,
}

pub(crate) enum Stage {
    Written(Written),
    /// Sync everything written so far, then answer.
    Barrier(oneshot::Sender<Result<()>>),
    Shutdown,
}

pub(crate) struct Syncer {
    shared: Arc<Shared>,
    rx: Receiver<Stage>,
    files: DurableFiles,
    /// Interval mode: when the oldest unsynced write happened, and the ends it will publish.
    unsynced_since: Option<Instant>,
    unsynced: Vec<PartitionEnd>,
    /// Lingering groups waiting for a sync, and since when the first has waited.
    lingering: Vec<Written>,
    lingering_since: Option<Instant>,
}

impl Syncer {
    pub(super) fn new(shared: Arc<Shared>, rx: Receiver<Stage>, files: DurableFiles) -> Self {
        Syncer {
            shared,
            rx,
            files,
            unsynced_since: None,
            unsynced: Vec::new(),
            lingering: Vec::new(),
            lingering_since: None,
        }
    }

    /// Runs until `Shutdown` (or the appender is gone), then syncs everything once more.
    pub(super) fn run(mut self) {
        loop {
            let first = match self.wait() {
                Ok(stage) => stage,
                Err(RecvTimeoutError::Timeout) if self.lingering_since.is_some() => {
                    self.sync_lingering();
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {
                    // A failure is logged and poisons the log inside; nothing waits on this one.
                    let _ = self.sync_now();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut stages = vec![first];
            stages.extend(self.rx.try_iter());
            if self.handle(stages) {
                break;
            }
        }
        self.sync_lingering();
        // The final sync on the way out; a failure is logged inside.
        let _ = self.sync_now();
    }

    fn wait(&self) -> std::result::Result<Stage, RecvTimeoutError> {
        if let Some(since) = self.lingering_since {
            return self.rx.recv_deadline(since + self.shared.config.linger);
        }
        match (self.shared.config.durability, self.unsynced_since) {
            (Durability::Interval(every), Some(since)) => self.rx.recv_deadline(since + every),
            _ => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        }
    }

    /// Handles everything handed over since the last round; true on shutdown.
    fn handle(&mut self, stages: Vec<Stage>) -> bool {
        let mut written = Vec::new();
        let mut barriers = Vec::new();
        let mut shutdown = false;
        for stage in stages {
            match stage {
                Stage::Written(w) => written.push(w),
                Stage::Barrier(reply) => barriers.push(reply),
                Stage::Shutdown => shutdown = true,
            }
        }
        match self.shared.config.durability {
            Durability::Always => self.sync_then_complete(written),
            Durability::Interval(every) => {
                self.complete_before_sync(written);
                if self
                    .unsynced_since
                    .is_some_and(|since| since.elapsed() >= every)
                {
                    let _ = self.sync_now();
                }
            }
            Durability::Never => {
                for w in written {
                    publish(&w.ends);
                    reply_all(w.replies);
                }
            }
        }
        if !barriers.is_empty() || shutdown {
            self.sync_lingering();
        }
        if !barriers.is_empty() {
            let outcome = self.sync_now();
            for reply in barriers {
                let _ = reply.send(outcome.clone().map_err(LogError::Poisoned));
            }
        }
        shutdown
    }

    /// `always` mode: syncs what was written, with the lingering groups held so far, and
    /// completes it; a round of lingering groups only is held instead, while the first of them
    /// has waited less than the linger.
    fn sync_then_complete(&mut self, written: Vec<Written>) {
        let hold = self.may_linger(&written);
        // In the order they were written: the held groups came first.
        self.lingering.extend(written);
        if hold {
            self.lingering_since.get_or_insert_with(Instant::now);
            return;
        }
        self.lingering_since = None;
        let written = std::mem::take(&mut self.lingering);
        if written.is_empty() {
            return;
        }
        match self.flush_and_sync() {
            Ok(()) => {
                for w in written {
                    publish(&w.ends);
                    reply_all(w.replies);
                }
            }
            Err(reason) => {
                for w in written {
                    for (reply, _) in w.replies {
                        let _ = reply.send(Err(LogError::Poisoned(reason.clone())));
                    }
                }
            }
        }
    }

    fn may_linger(&self, written: &[Written]) -> bool {
        !written.is_empty()
            && written.iter().all(|w| w.lingering)
            && self
                .lingering_since
                .is_none_or(|since| since.elapsed() < self.shared.config.linger)
    }

    /// Syncs and completes the lingering groups now, if any wait.
    fn sync_lingering(&mut self) {
        if self.lingering_since.is_some() {
            self.sync_then_complete(Vec::new());
        }
    }

    /// Interval mode: acknowledge now, let readers see the records after the next sync.
    fn complete_before_sync(&mut self, written: Vec<Written>) {
        for w in written {
            self.unsynced_since.get_or_insert_with(Instant::now);
            self.unsynced.extend(w.ends);
            reply_all(w.replies);
        }
    }

    /// Syncs and publishes whatever interval mode held back. Err carries the poison reason.
    fn sync_now(&mut self) -> std::result::Result<(), String> {
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
