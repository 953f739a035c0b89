//! The server's log lines on their way to stderr: each thread that logs copies its line into one
//! buffer under a lock, and a thread of its own writes the buffer out [`FLUSH_EVERY`] after a
//! line lands in it empty, with every line logged meanwhile (the thread whose line does not fit
//! writes it out at once). Under load a line then costs a copy, not a system call, and only the
//! first line of each interval wakes the writing thread: a queue drained by a writer thread
//! woke it for nearly every line, and it spun between lines (7 % of the server's CPU on a
//! one-record-per-request publish load). With nothing logged the thread sleeps: an idle server
//! does not wake for its log.
//!
//! Lines are never dropped: if stderr stops taking them, the thread that fills the buffer
//! waits, and every thread that logs waits behind it. A line reaches stderr at most
//! [`FLUSH_EVERY`] after it was logged; [`FlushGuard`] writes what is left when dropped (a
//! process killed outright loses at most that much). This module does not format lines: the
//! tracing subscriber does, and hands each one over whole.

use std::io::{BufWriter, Stderr, Write};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use tracing_subscriber::fmt::MakeWriter;

/// Longest time a line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// The buffer's size: a line that does not fit writes the buffer out first.
const BUFFER_BYTES: usize = 64 * 1024;

/// Where the subscriber writes: stderr (or `W`) behind the shared buffer, one lock per line.
#[derive(Debug)]
pub struct Lines<W: Write = Stderr> {
    buffer: Arc<Mutex<BufWriter<W>>>,
    flusher: Arc<Flusher>,
}

/// What the flushing thread sleeps on: it wakes when a line lands in an empty buffer, and when
/// it is told to stop. An idle server's log thread does not wake at all.
#[derive(Debug, Default)]
struct Flusher {
    state: Mutex<FlusherState>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct FlusherState {
    /// A line is waiting that no flush has been started for.
    lines_waiting: bool,
    stopped: bool,
}

impl<W: Write> Clone for Lines<W> {
    fn clone(&self) -> Self {
        Lines {
            buffer: Arc::clone(&self.buffer),
            flusher: Arc::clone(&self.flusher),
        }
    }
}

/// One line's hold on the buffer.
#[derive(Debug)]
pub struct LineWriter<'a, W: Write> {
    buffer: MutexGuard<'a, BufWriter<W>>,
    /// The line goes into an empty buffer: the flushing thread is to be woken for it.
    first: bool,
    flusher: &'a Flusher,
}

impl<'a, W: Write + 'a> MakeWriter<'a> for Lines<W> {
    type Writer = LineWriter<'a, W>;

    fn make_writer(&'a self) -> LineWriter<'a, W> {
        let buffer = self.buffer.lock();
        LineWriter {
            first: buffer.buffer().is_empty(),
            buffer,
            flusher: &self.flusher,
        }
    }
}

impl<W: Write> Write for LineWriter<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.write(bytes)
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.buffer.write_all(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.buffer.flush()
    }
}

impl<W: Write> Drop for LineWriter<'_, W> {
    fn drop(&mut self) {
        if self.first && !self.buffer.buffer().is_empty() {
            self.flusher.state.lock().lines_waiting = true;
            self.flusher.wake.notify_one();
        }
    }
}

/// Stops the flushing thread and writes what is buffered, when dropped.
#[derive(Debug)]
pub struct FlushGuard<W: Write = Stderr> {
    lines: Lines<W>,
    thread: Option<JoinHandle<()>>,
}

/// The buffer the subscriber writes into, and the guard that keeps it flushed.
pub fn buffered_stderr() -> std::io::Result<(Lines, FlushGuard)> {
    buffered(std::io::stderr())
}

/// [`buffered_stderr`] for any output.
fn buffered<W: Write + Send + 'static>(out: W) -> std::io::Result<(Lines<W>, FlushGuard<W>)> {
    let lines = Lines {
        buffer: Arc::new(Mutex::new(BufWriter::with_capacity(BUFFER_BYTES, out))),
        flusher: Arc::default(),
    };
    let thread = std::thread::Builder::new()
        .name("tidings-log".into())
        .spawn({
            let lines = lines.clone();
            move || flush_until_stopped(&lines)
        })?;
    let guard = FlushGuard {
        lines: lines.clone(),
        thread: Some(thread),
    };
    Ok((lines, guard))
}

/// Sleeps until a line waits, lets the lines of the next [`FLUSH_EVERY`] join it, writes them
/// all out, and sleeps again.
fn flush_until_stopped<W: Write>(lines: &Lines<W>) {
    let flusher = &lines.flusher;
    let mut state = flusher.state.lock();
    loop {
        while !state.lines_waiting && !state.stopped {
            flusher.wake.wait(&mut state);
        }
        if state.stopped {
            return;
        }
        let deadline = Instant::now() + FLUSH_EVERY;
        while !state.stopped && !flusher.wake.wait_until(&mut state, deadline).timed_out() {}
        // Cleared before the write: a line landing in the emptied buffer sets it again.
        state.lines_waiting = false;
        MutexGuard::unlocked(&mut state, || flush(lines));
    }
}

/// Writes out the buffer. A failed write to stderr has nowhere to be reported.
fn flush<W: Write>(lines: &Lines<W>) {
    let _ = lines.buffer.lock().flush();
}

impl<W: Write> Drop for FlushGuard<W> {
    fn drop(&mut self) {
        self.lines.flusher.state.lock().stopped = true;
        self.lines.flusher.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
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
    fn a_lone_line_is_written_within_the_flush_interval() {
        let sink = Sink::default();
        let (lines, _guard) = buffered(sink.clone()).unwrap();
        for round in 0..3 {
            let line = format!("lone line {round}\n");
            lines.make_writer().write_all(line.as_bytes()).unwrap();
            // Generous against a busy machine: the interval is 20 ms.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !String::from_utf8_lossy(&sink.0.lock()).contains(&line) {
                assert!(Instant::now() < deadline, "{line:?} never written");
                std::thread::sleep(Duration::from_millis(1));
            }
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
