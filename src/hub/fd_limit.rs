//! How many sessions the process's open-file limit allows.
//!
//! Every WebSocket session holds one descriptor, and so does every HTTP connection, the data
//! directory's files and the runtime's own. [`raise_open_file_limit`] lifts the soft
//! `RLIMIT_NOFILE` to the hard one (the server calls it once on start) and
//! [`sessions_allowed`] keeps [`RESERVED_DESCRIPTORS`] of it for everything but sessions, so a
//! server at its session maximum still has descriptors for HTTP requests and its files: new
//! sessions are refused with 503 instead of failing in `accept`.

/// Descriptors kept for everything but WebSocket sessions.
pub(crate) const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the soft open-file limit to the hard limit; returns the soft limit now in force.
pub(crate) fn raise_open_file_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The soft open-file limit now in force (`None` if it cannot be read).
pub(crate) fn open_file_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Sessions `limit` open files allow, keeping [`RESERVED_DESCRIPTORS`] for the rest (at least 1).
pub(crate) fn sessions_allowed(limit: u64) -> usize {
    let sessions = limit.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    usize::try_from(sessions).unwrap_or(usize::MAX)
}

/// Sessions allowed when the open-file limit cannot be read and none is configured.
pub(crate) const FALLBACK_MAX_SESSIONS: usize = 10_000;

/// The session maximum in force: `configured` (0 = no preference), never above what the
/// open-file limit in force allows.
pub(crate) fn max_sessions(configured: usize) -> usize {
    let allowed = open_file_limit().map(sessions_allowed);
    match (configured, allowed) {
        (0, Some(allowed)) => allowed,
        (0, None) => FALLBACK_MAX_SESSIONS,
        (configured, Some(allowed)) => configured.min(allowed),
        (configured, None) => configured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_leave_the_reserve_to_everything_else() {
        assert_eq!(sessions_allowed(1024), 1024 - RESERVED_DESCRIPTORS as usize);
        assert_eq!(sessions_allowed(10), 1, "always at least one");
    }

    #[test]
    fn a_configured_maximum_never_exceeds_the_descriptors() {
        let allowed = open_file_limit()
            .map(sessions_allowed)
            .unwrap_or(usize::MAX);
        assert_eq!(max_sessions(5), 5.min(allowed));
        assert!(max_sessions(usize::MAX) <= allowed);
        assert!(max_sessions(0) >= 1);
    }
}
