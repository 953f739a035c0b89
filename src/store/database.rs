//! The store's own sled database, `DATA_DIR/store/`: opening it, private to its owner.
//!
//! The store shares nothing with the log's engine (`DATA_DIR/engine/`): it keeps its trees and
//! its applied-up-to position ([`position`](super::position)) here, so it does not depend on how
//! the log stores records. The data directory itself (its `FORMAT`, its lock) belongs to the
//! log, which is opened first; this module only opens the subdirectory.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::error::{Result, StoreError};

/// The store's directory under the data directory.
pub(crate) const STORE_DIR: &str = "store";

/// sled's page cache for the store. Modest on purpose: conversations and read state are served
/// from the in-memory view, so the cache only holds what the writer and history reads touch
/// (recent messages and their indexes); the OS page cache keeps the rest warm. sled's default
/// (1 GiB) would let the store alone grow the process by that much next to the log's cache.
/// Not smaller: with 32 MiB, sled evicted and rebuilt the writer's pages so often that
/// `tidings bench send` fell to about half the rate (one trial, 2 cores).
pub(crate) const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The store's open database and the path of its data file (synced by [`sync_data`]).
pub(crate) struct Database {
    pub db: sled::Db,
    db_file: PathBuf,
}

impl Database {
    /// Opens (or creates) `data_dir/store/` (0700, its files 0600).
    ///
    /// sled's own flusher thread is off: the store's position module flushes (about once a
    /// second) and what is not flushed is replayed from the log after a crash. Without that
    /// thread, dropping the last handle closes the files at once, so the directory can be
    /// reopened right away in the same process.
    pub(super) fn open(data_dir: &Path) -> Result<Database> {
        let path = data_dir.join(STORE_DIR);
        std::fs::create_dir_all(&path).map_err(|e| io_error(&path, e))?;
        let config = sled::Config::new()
            .path(&path)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput);
        // sled panics on some malformed files instead of returning an error.
        let db = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open())) {
            Ok(opened) => opened?,
            Err(_) => {
                return Err(StoreError::corrupt(
                    path.display().to_string(),
                    "the storage engine could not read its files",
                ))
            }
        };
        if let Err(e) = crate::private_files::restrict_tree(&path) {
            tracing::warn!(dir = %path.display(), error = %e, "cannot make the store's files private (0600)");
        }
        Ok(Database {
            db,
            db_file: path.join("db"),
        })
    }

    /// Writes sled's buffers (`Db::flush`, which ends in `sync_file_range` only) and then
    /// `fdatasync`s the data file, so the flushed writes survive a power loss too. Blocking.
    pub(super) fn flush_and_sync(&self) -> Result<()> {
        self.db.flush()?;
        File::open(&self.db_file)
            .and_then(|file| file.sync_data())
            .map_err(|e| io_error(&self.db_file, e))
    }
}

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Storage(format!("{}: {e}", path.display()))
}
