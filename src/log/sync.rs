//! Making a group commit durable against power loss, not only against a process crash.
//!
//! `sled::Db::flush` writes the engine's buffers and ends in `sync_file_range`, which does not
//! flush the drive's cache or the file's metadata. After each flush we therefore `fdatasync` the
//! engine's data file (`File::sync_data`, kept open). Values too large for a page go to separate
//! blob files the engine never syncs; new ones are synced here too, with their directory.
//!
//! Failpoints `log::flush` and `log::sync` sit in front of the two calls (see "Fault injection"
//! in docs/architecture.md).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::error::{io_error, Result};

/// Names the engine's files under its directory and syncs them.
pub(crate) struct DurableFiles {
    db_file: File,
    db_path: PathBuf,
    blobs_dir: PathBuf,
    blobs_seen: Option<SystemTime>,
    blobs_synced_up_to: u64,
}

impl DurableFiles {
    pub(super) fn open(engine_dir: &Path) -> Result<DurableFiles> {
        let db_path = engine_dir.join("db");
        let db_file = File::open(&db_path).map_err(io_error(&db_path))?;
        Ok(DurableFiles {
            db_file,
            db_path,
            blobs_dir: engine_dir.join("blobs"),
            blobs_seen: None,
            blobs_synced_up_to: 0,
        })
    }

    /// Flushes the engine and makes everything it wrote durable.
    pub(super) fn flush_and_sync(&mut self, db: &sled::Db) -> Result<()> {
        flush_fault()?;
        db.flush()?;
        self.sync_fault()?;
        self.db_file.sync_data().map_err(io_error(&self.db_path))?;
        self.sync_new_blobs()
    }

    /// Failpoint `log::sync`, just before the `fdatasync`: `return` fails it with `EIO`
    /// (`return(enospc)`: no space), `sleep(MS)` makes a slow disk.
    fn sync_fault(&self) -> Result<()> {
        fail::fail_point!("log::sync", |arg| Err(io_error(&self.db_path)(
            super::error::injected_io_error(arg)
        )));
        Ok(())
    }

    /// Blob files are named by a growing log sequence number; any created since the last look
    /// (the directory's mtime moved) and above the last synced one are synced, then the directory.
    fn sync_new_blobs(&mut self) -> Result<()> {
        let modified = match std::fs::metadata(&self.blobs_dir).and_then(|m| m.modified()) {
            Ok(modified) => modified,
            Err(_) => return Ok(()), // no blob was ever written
        };
        if self.blobs_seen == Some(modified) {
            return Ok(());
        }
        let entries = std::fs::read_dir(&self.blobs_dir).map_err(io_error(&self.blobs_dir))?;
        let mut highest = self.blobs_synced_up_to;
        for entry in entries.flatten() {
            let lsn = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(lsn) = lsn.filter(|lsn| *lsn > self.blobs_synced_up_to) {
                let path = entry.path();
                File::open(&path)
                    .and_then(|f| f.sync_data())
                    .map_err(io_error(&path))?;
                highest = highest.max(lsn);
            }
        }
        File::open(&self.blobs_dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(&self.blobs_dir))?;
        self.blobs_synced_up_to = highest;
        self.blobs_seen = Some(modified);
        Ok(())
    }
}

/// Failpoint `log::flush`, just before the engine writes its buffers: `return` fails the flush
/// with `EIO`, `return(enospc)` with "no space left on device" — where a real full disk shows.
fn flush_fault() -> Result<()> {
    fail::fail_point!("log::flush", |arg| Err(sled::Error::Io(
        super::error::injected_io_error(arg)
    )
    .into()));
    Ok(())
}
