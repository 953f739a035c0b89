//! Helpers shared by the crate's unit tests (compiled for tests only).

use std::fmt::Debug;
use std::time::Duration;

/// Opens a sled-backed component again in the same process, retrying for up to 2 s while the
/// previous instance's file lock is still held: sled 0.34 releases it from a background thread
/// after the last handle is dropped (spacejam/sled#1234, #1289). A new process never meets it.
pub(crate) fn reopen<T, E: Debug + std::fmt::Display>(mut open: impl FnMut() -> Result<T, E>) -> T {
    for _ in 0..100 {
        match open() {
            Ok(opened) => return opened,
            Err(e) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("reopen: {e:?}"),
        }
    }
    panic!("reopen: the previous instance's file lock was not released within 2 s")
}
