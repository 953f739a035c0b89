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

/// What a tracing subscriber writes, kept in memory (`with_writer(captured.clone())`).
#[derive(Clone, Default)]
pub(crate) struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Everything written so far.
    pub(crate) fn text(&self) -> String {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'a self) -> CapturedLog {
        self.clone()
    }
}
