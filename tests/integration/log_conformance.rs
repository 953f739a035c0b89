//! The log conformance suite (`tests/conformance`: what any backend must do) against the
//! embedded log. That an acknowledged append also survives a SIGKILL of the embedded log's
//! process is shown by `tests/log_crash.rs`, not repeated here.

use std::path::Path;
use std::time::Duration;

use tidings::log::{Log, LogConfig, LogError};

/// The embedded log, with its default durability (every acknowledged append synced).
mod embedded {
    use super::*;

    /// Opens the embedded log, waiting up to 2 s for the previous instance's file lock: sled
    /// 0.34 releases it from a background thread after the last handle is dropped, so an
    /// immediate reopen in the same process can find it still held.
    fn open(dir: &Path) -> Log {
        let mut attempts = 0;
        loop {
            match Log::open(LogConfig::new(dir)) {
                Ok(log) => return log,
                Err(e) if attempts < 100 && is_held(&e) => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("open the embedded log: {e:?}"),
            }
        }
    }

    fn is_held(e: &LogError) -> bool {
        e.to_string().contains("could not acquire lock")
    }

    conformance_tests!(open);
}
