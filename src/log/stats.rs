//! Counters of the log's work, read by metrics and by `tidings bench log`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters (relaxed atomics: they are statistics, not synchronisation).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub append_requests: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub batches: AtomicU64,
    pub groups: AtomicU64,
    pub syncs: AtomicU64,
    pub sync_nanos: AtomicU64,
}

/// A snapshot of the counters since the log was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Append calls completed successfully.
    pub append_requests: u64,
    /// Records appended.
    pub records: u64,
    /// Encoded batch bytes written.
    pub bytes: u64,
    /// Record batches written (one storage-engine insert each).
    pub batches: u64,
    /// Group commits (each gathers every append waiting at that moment).
    pub groups: u64,
    /// Flush + `fdatasync` rounds issued.
    pub syncs: u64,
    /// Total time spent in them, in nanoseconds.
    pub sync_nanos: u64,
    /// Bytes of records held in memory to answer reads (the cluster log's cached tails; 0 for
    /// the embedded log, whose reads go to its storage engine).
    pub cached_bytes: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> LogStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LogStats {
            append_requests: get(&self.append_requests),
            records: get(&self.records),
            bytes: get(&self.bytes),
            batches: get(&self.batches),
            groups: get(&self.groups),
            syncs: get(&self.syncs),
            sync_nanos: get(&self.sync_nanos),
            cached_bytes: 0,
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
