//! The free-space guard: refuses appends before the disk under the data directory fills up,
//! and lets them through again by itself once space is freed.
//!
//! A write that meets a full disk poisons the log (the storage engine is fail-stop after an I/O
//! error) and needs a restart; refusing earlier keeps the log healthy. The guard asks the
//! filesystem (`statvfs`: blocks available to unprivileged writers × fragment size) at most once
//! per [`CHECK_EVERY`], lazily, from whichever append or readiness probe comes first: no thread
//! of its own, one atomic load on the hot path. It owns only that check; the log decides which
//! writes it guards (appends, topic creation and growth, not deletes or retention, which free
//! space), and the API decides what the refusal looks like.
//!
//! Failpoint `log::free_space`: `return(PATH)` reads the free byte count from the file at PATH
//! (a missing or unreadable file falls back to the real value), so a test can fill and free a
//! "disk" without root.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::error::{LogError, Result};

/// How stale the free-space figure may be. A group commit writes at most a few MiB, so a
/// minimum of a few dozen MiB absorbs what is written between two checks.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct FreeSpaceGuard {
    dir: PathBuf,
    minimum: u64,
    started: Instant,
    /// Free bytes at the last check.
    available: AtomicU64,
    /// When the last check ran, in milliseconds since `started`.
    checked_at_ms: AtomicU64,
}

impl FreeSpaceGuard {
    /// A guard over the filesystem holding `dir` that refuses below `minimum` free bytes
    /// (0 turns it off). Checks once now.
    pub(crate) fn new(dir: &Path, minimum: u64) -> FreeSpaceGuard {
        let guard = FreeSpaceGuard {
            dir: dir.to_owned(),
            minimum,
            started: Instant::now(),
            available: AtomicU64::new(u64::MAX),
            checked_at_ms: AtomicU64::new(0),
        };
        if minimum > 0 {
            guard.refresh();
        }
        guard
    }

    /// `StorageFull` while the disk has less free space than the minimum.
    pub(crate) fn check(&self) -> Result<()> {
        if self.minimum == 0 {
            return Ok(());
        }
        let available = self.available();
        if available < self.minimum {
            return Err(LogError::StorageFull {
                available,
                minimum: self.minimum,
            });
        }
        Ok(())
    }

    /// The free bytes, re-read from the filesystem when the last figure is older than
    /// [`CHECK_EVERY`]; one caller re-reads, the others use the figure they find.
    fn available(&self) -> u64 {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.checked_at_ms.load(Ordering::Acquire);
        let stale = now.saturating_sub(last) >= CHECK_EVERY.as_millis() as u64;
        if stale
            && self
                .checked_at_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.refresh();
        }
        self.available.load(Ordering::Acquire)
    }

    /// Re-reads the free space; a failed look keeps the last figure (a guard that cannot see
    /// the disk neither blocks nor unblocks writes on a guess).
    fn refresh(&self) {
        match available_bytes(&self.dir) {
            Ok(bytes) => {
                let before = self.available.swap(bytes, Ordering::AcqRel);
                self.log_transition(before, bytes);
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read free disk space");
            }
        }
    }

    fn log_transition(&self, before: u64, now: u64) {
        let (was_low, is_low) = (before < self.minimum, now < self.minimum);
        if is_low && !was_low {
            tracing::warn!(
                free = now,
                minimum = self.minimum,
                "disk almost full; refusing appends until space is freed"
            );
        } else if was_low && !is_low {
            tracing::info!(free = now, "disk space freed; accepting appends again");
        }
    }
}

/// Bytes an unprivileged writer may still use on the filesystem holding `dir`.
fn available_bytes(dir: &Path) -> std::io::Result<u64> {
    fail::fail_point!("log::free_space", |arg: Option<String>| {
        match arg.and_then(|path| std::fs::read_to_string(path).ok()) {
            Some(text) => text
                .trim()
                .parse()
                .map_err(|_| std::io::Error::other(format!("not a byte count: {text:?}"))),
            None => statvfs_available(dir),
        }
    });
    statvfs_available(dir)
}

fn statvfs_available(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_minimum_never_refuses() {
        let dir = tempfile::tempdir().unwrap();
        assert!(FreeSpaceGuard::new(dir.path(), 0).check().is_ok());
    }

    #[test]
    fn refuses_below_the_minimum_with_the_figures() {
        let dir = tempfile::tempdir().unwrap();
        let guard = FreeSpaceGuard::new(dir.path(), u64::MAX);
        match guard.check() {
            Err(LogError::StorageFull { available, minimum }) => {
                assert_eq!(minimum, u64::MAX);
                assert!(available < u64::MAX);
            }
            other => panic!("expected StorageFull, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_real_free_space() {
        let dir = tempfile::tempdir().unwrap();
        assert!(statvfs_available(dir.path()).unwrap() > 0);
    }
}
