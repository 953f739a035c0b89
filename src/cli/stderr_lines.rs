//! The server's log lines on their way to stderr: each thread that logs copies its line into one
//! buffer under a lock, and a thread of its own writes the buffer out every [`FLUSH_EVERY`]
//! (the thread whose line does not fit writes it out at once). Under load a line then costs a
//! copy, not a system call, and wakes no other thread: a queue drained by a writer thread woke
//! it for nearly every line, and it spun between lines (7 % of the server's CPU on a
//! one-record-per-request publish load).
//!
//! Lines are never dropped: if stderr stops taking them, the thread that fills the buffer
//! waits, and every thread that logs waits behind it. A line reaches stderr at most
//! [`FLUSH_EVERY`] after it was logged; [`FlushGuard`] writes what is left when dropped (a
//! process killed outright loses at most that much). This module does not format lines: the
//! tracing subscriber does, and hands each one over whole.

use std::io::{BufWriter, Stderr, Write};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};
use tracing_subscriber::fmt::MakeWriter;

/// Longest time a line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// The buffer's size: a line that does not fit writes the buffer out first.
const BUFFER_BYTES: usize = 64 * 1024;

/// Where the subscriber writes: stderr (or `W`) behind the shared buffer, one lock per line.
#[derive(Debug)]
pub struct Lines<W: Write = Stderr>(Arc<Mutex<BufWriter<W>>>);

impl<W: Write> Clone for Lines<W> {
    fn clone(&self) -> Self {
        Lines(Arc::clone(&self.0))
    }
}

/// One line's hold on the buffer.
#[derive(Debug)]
pub struct LineWriter<'a, W: Write>(MutexGuard<'a, BufWriter<W>>);

impl<'a, W: Write + 'a> MakeWriter<'a> for Lines<W> {
    type Writer = LineWriter<'a, W>;

    fn make_writer(&'a self) -> LineWriter<'a, W> {
        LineWriter(self.0.lock())
    }
}

impl<W: Write> Write for LineWriter<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.write(bytes)
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Stops the flushing thread and writes what is buffered, when dropped.
#[derive(Debug)]
pub struct FlushGuard<W: Write = Stderr> {
    lines: Lines<W>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    flusher: Option<JoinHandle<()>>,
}

/// The buffer the subscriber writes into, and the guard that keeps it flushed.
pub fn buffered_stderr() -> std::io::Result<(Lines, FlushGuard)> {
    buffered(std::io::stderr())
}

/// [`buffered_stderr`] for any output.
fn buffered<W: Write + Send + 'static>(out: W) -> std::io::Result<(Lines<W>, FlushGuard<W>)> {
    let lines = Lines(Arc::new(Mutex::new(BufWriter::with_capacity(
        BUFFER_BYTES,
        out,
    ))));
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let flusher = std::thread::Builder::new()
        .name("tidings-log".into())
        .spawn({
            let (lines, stop) = (lines.clone(), Arc::clone(&stop));
            move || flush_until_stopped(&lines, &stop)
        })?;
    let guard = FlushGuard {
        lines: lines.clone(),
        stop,
        flusher: Some(flusher),
    };
    Ok((lines, guard))
}

fn flush_until_stopped<W: Write>(lines: &Lines<W>, stop: &(Mutex<bool>, Condvar)) {
    let (stopped, wake) = stop;
    let mut stopped_now = stopped.lock();
    while !*stopped_now {
        wake.wait_for(&mut stopped_now, FLUSH_EVERY);
        flush(lines);
    }
}

/// Writes out the buffer. A failed write to stderr has nowhere to be reported.
fn flush<W: Write>(lines: &Lines<W>) {
    let _ = lines.0.lock().flush();
}

impl<W: Write> Drop for FlushGuard<W> {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        flush(&self.lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read, shared with the writer.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_guard_is_dropped() {
        let sink = Sink::default();
        let (lines, guard) = buffered(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let lines = lines.clone();
                std::thread::spawn(move || {
                    for i in 0..1_000 {
                        let line = format!("thread {t} line {i}\n");
                        lines.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        drop(guard);
        let text = String::from_utf8(sink.0.lock().clone()).unwrap();
        for t in 0..4 {
            let numbers: Vec<usize> = text
                .lines()
                .filter_map(|line| line.strip_prefix(&format!("thread {t} line ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(numbers, (0..1_000).collect::<Vec<_>>(), "thread {t}");
        }
    }

    #[test]
    fn a_line_larger_than_the_buffer_is_written_at_once() {
        let sink = Sink::default();
        let (lines, _guard) = buffered(sink.clone()).unwrap();
        lines.make_writer().write_all(b"small\n").unwrap();
        let large = vec![b'x'; BUFFER_BYTES + 1];
        lines.make_writer().write_all(&large).unwrap();
        let written = sink.0.lock().len();
        assert_eq!(written, "small\n".len() + large.len());
    }
}
