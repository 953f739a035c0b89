//! How many sessions the process's open-file limit allows.
//!
//! Every WebSocket session holds one descriptor, and so does every HTTP connection, the data
//! directory's files and the runtime's own. [`raise_open_file_limit`] lifts the soft
//! `RLIMIT_NOFILE` to the hard one (the server calls it once on start) and
//! [`sessions_allowed`] keeps [`RESERVED_DESCRIPTORS`] of it for everything but sessions, so a
//! server at its session maximum still has descriptors for HTTP requests and its files: new
//! sessions are refused with 503 instead of failing in `accept`.

/// Descriptors kept for everything but WebSocket sessions.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the soft open-file limit to the hard limit; returns the soft limit now in force.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The soft open-file limit now in force (`None` if it cannot be read).
pub fn open_file_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Sessions `limit` open files allow, keeping [`RESERVED_DESCRIPTORS`] for the rest (at least 1).
pub fn sessions_allowed(limit: u64) -> usize {
    let sessions = limit.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    usize::try_from(sessions).unwrap_or(usize::MAX)
}
