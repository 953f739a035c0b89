//! The data directory: recognising it, locking it, and opening the storage engine in it.
//!
//! ```text
//! DIR/FORMAT   "tidings-data 2": written once, checked on every open
//! DIR/LOCK     exclusive lock held while open; holds the owner's pid for error messages
//! DIR/engine/  the log's sled database (partitions, topics, consumer groups' offsets)
//! DIR/store/   the chat store's own sled database (opened by `store/`, not here)
//! ```
//!
//! A directory of format 1 (an earlier 0.x version, whose chat store lived inside the log's
//! engine) is refused with a message saying so; there is no migration.
//!
//! A directory that holds other files and no `FORMAT` is refused untouched, so pointing
//! `--data-dir` at the wrong place cannot damage anything. The engine holds a marker of its own
//! (tree `meta`, key `tidings-data`): a directory whose `FORMAT` says it was initialized but
//! whose engine is missing, emptied or replaced is refused as corrupt instead of being opened as
//! a new, empty log. On first use the marker is made durable before `FORMAT` is written.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::config::{Durability, LogConfig};
use super::error::{io_error, LogError, Result};

const FORMAT_LINE: &str = "tidings-data 2\n";
/// What an earlier 0.x version wrote: the chat store's trees inside the log's engine.
const FORMAT_1_LINE: &str = "tidings-data 1\n";
/// sled pages are at most a quarter of a segment before they become unsynced blob files; 8 MiB
/// segments keep every page of 64 KiB batches inline.
const SEGMENT_BYTES: usize = 8 * 1024 * 1024;

/// Key of the engine's own marker, in tree `meta`.
const ENGINE_MARKER: &[u8] = b"tidings-data";

/// How long an open waits for a lock this same process holds: a log closed a moment ago can
/// still hold it while another thread of the process forks a child, which holds a copy of the
/// lock file's descriptor until it runs its program (the lock goes with the last copy).
const OWN_LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);
/// How often it looks again meanwhile.
const OWN_LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(5);

/// An open, locked data directory.
pub(crate) struct DataDir {
    pub path: PathBuf,
    /// `FORMAT` was there when the directory was opened.
    initialized: bool,
    _lock: File,
}

impl DataDir {
    pub(super) fn open(path: &Path) -> Result<DataDir> {
        std::fs::create_dir_all(path).map_err(io_error(path))?;
        if let Err(e) = restrict_to_owner(path) {
            tracing::warn!(dir = %path.display(), error = %e, "cannot make the data directory private (0700)");
        }
        let initialized = check_format(path)?;
        let lock = lock(path)?;
        Ok(DataDir {
            path: path.to_owned(),
            initialized,
            _lock: lock,
        })
    }

    /// Makes every file the storage engine wrote so far readable by the owner only (0600,
    /// directories 0700). The data directory itself is 0700 already, so files the engine makes
    /// later are out of other users' reach too.
    /// A failure is logged: the directory's own mode is what protects the files.
    pub(super) fn restrict_engine_files(&self) {
        let engine = self.engine_path();
        if let Err(e) = crate::private_files::restrict_tree(&engine) {
            tracing::warn!(dir = %engine.display(), error = %e, "cannot make the engine's files private (0600)");
        }
    }

    pub(super) fn engine_path(&self) -> PathBuf {
        self.path.join("engine")
    }

    /// Opens the storage engine and checks (or, on first use, writes) its marker; then writes
    /// `FORMAT` if the directory is new. The engine's own flusher is off unless durability is
    /// `never`: the syncer decides when to flush.
    pub(super) fn open_engine(&self, config: &LogConfig) -> Result<sled::Db> {
        if self.initialized && !self.engine_path().exists() {
            return Err(self.engine_lost("its engine directory is missing"));
        }
        let db = self.open_sled(config)?;
        let meta = db.open_tree("meta")?;
        match (meta.get(ENGINE_MARKER)?, self.initialized) {
            (Some(_), _) => {}
            (None, true) => {
                return Err(self.engine_lost("its storage engine is empty or was replaced"))
            }
            (None, false) => {
                meta.insert(ENGINE_MARKER, FORMAT_LINE.trim().as_bytes())?;
                db.flush()?;
                let db_file = self.engine_path().join("db");
                File::open(&db_file)
                    .and_then(|f| f.sync_data())
                    .map_err(io_error(&db_file))?;
            }
        }
        if !self.initialized {
            write_format(&self.path)?;
        }
        Ok(db)
    }

    fn engine_lost(&self, what: &str) -> LogError {
        LogError::Corrupt {
            location: self.engine_path().display().to_string(),
            reason: format!(
                "FORMAT says this data directory was initialized, but {what}; restore it from a \
                 backup, or move the directory aside and start with an empty one"
            ),
        }
    }

    fn open_sled(&self, config: &LogConfig) -> Result<sled::Db> {
        let flush_every = match config.durability {
            Durability::Never => Some(500),
            Durability::Always | Durability::Interval(_) => None,
        };
        remove_unfinished_snapshots(&self.engine_path())?;
        let engine = sled::Config::new()
            .path(self.engine_path())
            .segment_size(SEGMENT_BYTES)
            .cache_capacity(config.cache_bytes)
            .flush_every_ms(flush_every)
            .mode(sled::Mode::HighThroughput);
        // sled panics on some malformed files instead of returning an error.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.open())) {
            Ok(Ok(db)) => Ok(db),
            Ok(Err(e)) => Err(engine_error(&self.path, e)),
            Err(_) => Err(LogError::Corrupt {
                location: self.engine_path().display().to_string(),
                reason: "the storage engine could not read its files".into(),
            }),
        }
    }
}

/// Deletes the engine's unfinished snapshot files (`snap.<lsn>.generating`).
///
/// sled writes a snapshot to `snap.<lsn>.generating`, syncs it, then renames it to
/// `snap.<lsn>`; but on open it takes the highest-sorting `snap.*` name as the latest snapshot,
/// `.generating` included, and calls the engine corrupt when that file is empty or cut short.
/// A disk that filled up while the engine wrote a snapshot (at open, or at shutdown) leaves
/// exactly that behind, and the next start said "corrupt data" although nothing acknowledged
/// was damaged. An unfinished snapshot holds nothing the log does not: the engine rebuilds its
/// state from the previous snapshot (kept until a new one is renamed in place) and its log.
fn remove_unfinished_snapshots(engine_dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(engine_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(engine_dir)(e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %name, "removing an unfinished storage-engine snapshot");
            let path = entry.path();
            std::fs::remove_file(&path).map_err(io_error(&path))?;
        }
    }
    Ok(())
}

/// Any failure to open the engine's files is reported against the directory: at open time
/// sled's "unsupported" and I/O errors mean unreadable or foreign files — except a full disk:
/// the engine writes while it recovers, and a directory that met ENOSPC is intact and opens
/// once there is room, so calling it corrupt would send the operator the wrong way.
fn engine_error(dir: &Path, e: sled::Error) -> LogError {
    let location = dir.join("engine").display().to_string();
    match e {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => LogError::NoSpace {
            path: dir.to_owned(),
        },
        sled::Error::Io(io) => LogError::Corrupt {
            location,
            reason: format!("the storage engine could not open its files: {io}"),
        },
        sled::Error::Unsupported(what) => LogError::Corrupt {
            location,
            reason: format!("the storage engine's files are damaged or foreign: {what}"),
        },
        other => other.into(),
    }
}

/// True if the directory is ours; an error if it is someone else's.
fn check_format(path: &Path) -> Result<bool> {
    let format_path = path.join("FORMAT");
    match std::fs::read_to_string(&format_path) {
        Ok(content) if content == FORMAT_LINE => Ok(true),
        Ok(content) if content == FORMAT_1_LINE => Err(LogError::ForeignDirectory {
            path: path.to_owned(),
            reason: format!(
                "it was made by an earlier 0.x version of tidings (FORMAT {:?}) and this version \
                 ({:?}) cannot open it; there is no migration between 0.x data formats: start \
                 with an empty directory",
                FORMAT_1_LINE.trim(),
                FORMAT_LINE.trim()
            ),
        }),
        Ok(content) => Err(LogError::ForeignDirectory {
            path: path.to_owned(),
            reason: format!(
                "FORMAT says {:?}, this version reads {:?}",
                content.trim(),
                FORMAT_LINE.trim()
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let stranger = std::fs::read_dir(path)
                .map_err(io_error(path))?
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                // Ours, even before FORMAT exists: a first start that stopped half-way.
                .find(|name| {
                    !name.starts_with('.')
                        && !["secret.key", "LOCK", "engine", "store"].contains(&name.as_str())
                });
            match stranger {
                Some(name) => Err(LogError::ForeignDirectory {
                    path: path.to_owned(),
                    reason: format!(
                        "it holds {name:?} but no FORMAT file; use an empty or new directory"
                    ),
                }),
                None => Ok(false),
            }
        }
        Err(e) => Err(io_error(&format_path)(e)),
    }
}

fn write_format(path: &Path) -> Result<()> {
    let format_path = path.join("FORMAT");
    let mut file = File::create(&format_path).map_err(io_error(&format_path))?;
    file.write_all(FORMAT_LINE.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(&format_path))?;
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(path))
}

fn lock(path: &Path) -> Result<File> {
    let lock_path = path.join("LOCK");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io_error(&lock_path))?;
    let patience = std::time::Instant::now() + OWN_LOCK_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => {
                write_holder(&mut file).map_err(io_error(&lock_path))?;
                return Ok(file);
            }
            Err(TryLockError::WouldBlock) => {
                let holder = lock_holder(&mut file);
                if holder == std::process::id().to_string() && std::time::Instant::now() < patience
                {
                    std::thread::sleep(OWN_LOCK_RETRY);
                    continue;
                }
                let holder = if holder.is_empty() {
                    String::new()
                } else {
                    format!(", pid {holder}")
                };
                return Err(LogError::Locked {
                    path: path.to_owned(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_error(&lock_path)(e)),
        }
    }
}

/// Writes this process's pid as the lock file's whole content. From its start: a wait for the
/// lock has read the file, which moved the position to its end.
fn write_holder(file: &mut File) -> std::io::Result<()> {
    use std::io::Seek as _;
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
}

/// The pid written in a lock file (empty if none).
fn lock_holder(file: &mut File) -> String {
    use std::io::Seek as _;
    let mut holder = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut holder));
    holder.trim().to_owned()
}

/// 0700 on `dir` (it holds message text and the token secret): no other user may list or read
/// anything in it, whatever mode the files in it have.
#[cfg(unix)]
fn restrict_to_owner(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        tracing::info!(dir = %dir.display(), was = format!("{mode:o}"), "data directory made private (0700)");
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_to_owner(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_this_process_holds_is_waited_for_then_refused_naming_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        let started = std::time::Instant::now();
        let refused = lock(dir.path()).unwrap_err();
        assert!(
            started.elapsed() >= OWN_LOCK_PATIENCE,
            "{:?}",
            started.elapsed()
        );
        let pid = format!(", pid {}", std::process::id());
        assert!(
            matches!(&refused, LogError::Locked { holder, .. } if *holder == pid),
            "{refused}"
        );

        // Released by another thread while the second open tries (before its first look or
        // during its wait): it takes the lock.
        let release = std::thread::spawn(move || drop(held));
        assert!(lock(dir.path()).is_ok());
        release.join().unwrap();
    }

    #[test]
    fn the_holder_is_written_from_the_start_even_after_a_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("LOCK");
        std::fs::write(&path, "4194304\n").unwrap();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        assert_eq!(lock_holder(&mut file), "4194304");
        write_holder(&mut file).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
    }

    #[test]
    fn a_full_disk_at_open_is_reported_as_no_space_not_as_corruption() {
        let enospc = std::io::Error::from_raw_os_error(28);
        let error = engine_error(Path::new("/data"), sled::Error::Io(enospc));
        assert!(matches!(error, LogError::NoSpace { .. }), "{error}");
        let eio = std::io::Error::from_raw_os_error(5);
        let error = engine_error(Path::new("/data"), sled::Error::Io(eio));
        assert!(matches!(error, LogError::Corrupt { .. }), "{error}");
    }

    #[test]
    fn an_unfinished_snapshot_left_by_a_full_disk_does_not_make_the_engine_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig::new(dir.path());
        {
            let data_dir = DataDir::open(dir.path()).unwrap();
            let db = data_dir.open_engine(&config).unwrap();
            db.open_tree("kept").unwrap().insert("k", "v").unwrap();
            db.flush().unwrap();
        }
        // What sled leaves when its snapshot write meets ENOSPC: the file, empty.
        let unfinished = dir.path().join("engine/snap.FFFFFFFFFFFFFFFF.generating");
        std::fs::write(&unfinished, b"").unwrap();

        let data_dir = DataDir::open(dir.path()).unwrap();
        let db = crate::testing::reopen(|| data_dir.open_engine(&config));
        let kept = db.open_tree("kept").unwrap().get("k").unwrap();
        assert_eq!(kept.as_deref(), Some(&b"v"[..]));
        assert!(!unfinished.exists());
    }
}
