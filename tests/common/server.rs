//! Shared harness of the integration tests: the real server on an ephemeral port with a
//! temporary data directory, run one of two ways, both behind [`TestServer`]:
//!
//! - [`Server`], in this test process: `tidings::server::run` on its own tokio runtime on its
//!   own thread (so the test's runtime and the server's are as independent as two processes),
//!   configured from the same `tidings serve` flags through the same parser and resolution
//!   (`tidings::cli::serve::ServeArgs`, `Config::load_with_env` with an empty environment).
//!   [`sigterm`] completes its shutdown future, as `main` does on SIGTERM; [`wait_exit`] waits
//!   for `run` to return and for the data directory's locks to be free (a restart or a direct
//!   open may follow at once). Dropping it stops it the same way; a panic or an error of the
//!   server then fails the test. What the threads of its runtime log (at `warn`, or
//!   `TIDINGS_TEST_LOG_LEVEL`) is kept in its [`ServerLog`] and shown if the test fails (unless
//!   the test binary installed a global subscriber, which then gets it); the server's own
//!   threads (the log's appender and syncer, the store writer) log nowhere.
//! - [`Process`], the `tidings serve` binary ([`command`] + [`start`]), killed when dropped.
//!
//! Every test whose point is HTTP or WebSocket behaviour (chat, groups, topics, metrics,
//! notifications to a local webhook, limits, graceful stop storing everything) uses [`Server`]:
//! it starts in milliseconds and needs no process. These keep the binary, because the process
//! is their point:
//! - SIGKILL crash tests (`log_crash`, `chat_crash`, `notify_crash`): a crash is the death of a
//!   process; an in-process server cannot die without its test.
//! - command-line tests (`cli_admin`, `cli_remote`, `auth_tokens`' `tidings token`): they run
//!   the binary's commands, against a server that `cli_remote` also kills with -9.
//! - SIGTERM and start-up tests (`server_health`, `ws_shutdown`): the signal handlers, the
//!   `listening on` line, exit codes, configuration errors and precedence with the environment.
//! - failpoint tests (`faults`): `FAILPOINTS` is armed per process, so it must not leak into
//!   the other tests of a binary.
//! - open-file-limit tests (`ws_descriptors`, one of `http_limits`): the limit is set with
//!   `ulimit` on the process.
//! - tests that read the server's stderr (`notify_webhook`'s log sink, `faults`).
//! - `bench_soak` runs `tidings bench soak`, which starts and kills servers of its own.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio_util::sync::CancellationToken;

pub const STARTUP: Duration = Duration::from_secs(60);

/// How long dropping an in-process server waits for its graceful stop.
const STOP_ON_DROP: Duration = Duration::from_secs(30);

/// What the shared helpers need of a running server, whichever way it runs.
pub trait TestServer {
    /// What stopping it ends with: an exit status, or the in-process [`Stopped`].
    type Exit: std::fmt::Debug;
    /// `http://127.0.0.1:PORT`.
    fn base(&self) -> &str;
    /// Asks for a graceful stop, as SIGTERM does.
    fn sigterm(&self);
    /// Waits (at most `within`) until the server stopped.
    fn wait_exit(&mut self, within: Duration) -> Self::Exit;
    /// Why the server already stopped, if it did (it will never become ready then).
    fn stopped_early(&self) -> Option<String>;
}

/// Asks `server` to stop gracefully: SIGTERM for the binary, the shutdown future for
/// [`Server`].
pub fn sigterm(server: &impl TestServer) {
    server.sigterm();
}

/// Waits (at most `within`) until `server` stopped; how it ended.
pub fn wait_exit<S: TestServer>(server: &mut S, within: Duration) -> S::Exit {
    server.wait_exit(within)
}

/// Polls `/readyz` until it answers 200; fails at once if the server stopped.
pub async fn wait_ready(server: &impl TestServer) {
    let deadline = Instant::now() + STARTUP;
    loop {
        if let Some(why) = server.stopped_early() {
            panic!("the server stopped before it was ready: {why}");
        }
        let status = reqwest::get(format!("{}/readyz", server.base()))
            .await
            .map(|r| r.status().as_u16());
        if status.as_ref().ok() == Some(&200) {
            return;
        }
        assert!(Instant::now() < deadline, "not ready: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ----- in process -------------------------------------------------------------------------

/// `tidings serve`'s flags, parsed by the binary's own parser.
#[derive(Parser)]
struct ServeFlags {
    #[command(flatten)]
    args: tidings::cli::serve::ServeArgs,
}

/// `tidings::server::run` on its own runtime and thread; stopped gracefully when dropped.
pub struct Server {
    pub base: String,
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    /// What `run` returned (formatted with its causes), sent once its runtime is gone. In a
    /// mutex so that `&Server` (and a `&Chat` held across an `.await`) can cross threads.
    outcome: Mutex<mpsc::Receiver<Result<(), String>>>,
    thread: Option<JoinHandle<()>>,
    /// How it ended, once [`TestServer::wait_exit`] saw it.
    exit: Option<Stopped>,
    /// What the threads of its runtime logged.
    pub log: ServerLog,
}

/// How an in-process server ended: what `run` returned.
#[derive(Debug, Clone)]
pub struct Stopped {
    /// The error `run` returned, with its causes.
    pub error: Option<String>,
}

impl Stopped {
    /// `run` returned `Ok`, as the binary then exits 0.
    pub fn success(&self) -> bool {
        self.error.is_none()
    }

    /// The exit code the binary has for this outcome (`main`: `Ok` → 0, an error → 1).
    pub fn code(&self) -> Option<i32> {
        Some(if self.success() { 0 } else { 1 })
    }
}

/// Runs the server in this process on `data_dir` with `tidings serve` flags `extra` (which
/// must include `--listen`); returns once it listens (it may not be ready yet).
pub fn serve(data_dir: &Path, extra: &[&str]) -> Server {
    let dir = data_dir.to_str().expect("a UTF-8 data directory");
    let leading = ["serve", "--data-dir", dir];
    let flags = ServeFlags::try_parse_from(leading.iter().chain(extra))
        .unwrap_or_else(|e| panic!("bad serve flags {extra:?}: {e}"));
    // No environment: a developer's TIDINGS_* variables must not change what a test runs.
    let config = flags
        .args
        .resolve(|_| None)
        .unwrap_or_else(|e| panic!("configuration of {extra:?}: {e}"));
    let listener = std::net::TcpListener::bind(config.listen).expect("bind the server");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking socket");
    let base = format!("http://{}", listener.local_addr().expect("bound address"));
    let shutdown = CancellationToken::new();
    let (report, outcome) = mpsc::channel();
    let stop = shutdown.clone();
    let log = ServerLog::default();
    // A test binary that installed a subscriber of its own reads the logs there.
    let dispatch = (!tracing::dispatcher::has_been_set()).then(|| log.dispatch());
    let thread = std::thread::Builder::new()
        .name("tidings-server".into())
        .spawn(move || {
            let result = run_to_end(listener, config, stop, dispatch);
            let _ = report.send(result);
        })
        .expect("spawn the server thread");
    Server {
        base,
        data_dir: data_dir.to_owned(),
        shutdown,
        outcome: Mutex::new(outcome),
        thread: Some(thread),
        exit: None,
        log,
    }
}

/// Runs the server until `stop` is cancelled and its runtime is gone (every task and blocking
/// thread of it finished, as when a process exits); its runtime's threads log to `dispatch`
/// if there is one, else to the global subscriber.
fn run_to_end(
    listener: std::net::TcpListener,
    config: tidings::config::Config,
    stop: CancellationToken,
    dispatch: Option<tracing::Dispatch>,
) -> Result<(), String> {
    let _logging = dispatch.as_ref().map(tracing::dispatcher::set_default);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(dispatch) = dispatch {
        runtime.on_thread_start(move || {
            // For the thread's whole life: a runtime thread ends with the runtime.
            std::mem::forget(tracing::dispatcher::set_default(&dispatch));
        });
    }
    let runtime = runtime
        .enable_all()
        .build()
        .map_err(|e| format!("no runtime: {e}"))?;
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| format!("cannot use the listener: {e}"))?;
        tidings::server::run(listener, config, stop.cancelled_owned())
            .await
            .map_err(|e| with_causes(&e))
    });
    drop(runtime);
    result
}

/// `error: cause: cause`, as `main` prints an error.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

impl Server {
    /// Waits for the thread's outcome; `None` if it did not come within `within`. A panic of
    /// the server fails the test with the panic's message.
    fn finish(&mut self, within: Duration) -> Option<Stopped> {
        if let Some(exit) = &self.exit {
            return Some(exit.clone());
        }
        let outcome = match self.receiver().recv_timeout(within) {
            Ok(outcome) => outcome,
            Err(mpsc::RecvTimeoutError::Timeout) => return None,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the in-process server panicked: {}", self.panic_message())
            }
        };
        if let Some(thread) = self.thread.take() {
            thread
                .join()
                .expect("the server thread ended after reporting");
        }
        let exit = Stopped {
            error: outcome.err(),
        };
        self.exit = Some(exit.clone());
        Some(exit)
    }

    fn receiver(&mut self) -> &mut mpsc::Receiver<Result<(), String>> {
        self.outcome
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The message of the server thread's panic.
    fn panic_message(&mut self) -> String {
        let Some(thread) = self.thread.take() else {
            return "(already reported)".into();
        };
        match thread.join() {
            Ok(()) => "(no panic: the thread ended without an outcome)".into(),
            Err(payload) => payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "(a non-text panic)".into()),
        }
    }
}

impl TestServer for Server {
    type Exit = Stopped;

    fn base(&self) -> &str {
        &self.base
    }

    fn sigterm(&self) {
        self.shutdown.cancel();
    }

    fn wait_exit(&mut self, within: Duration) -> Stopped {
        let exit = self
            .finish(within)
            .unwrap_or_else(|| panic!("server did not exit in {within:?}"));
        wait_until_unlocked(&self.data_dir);
        exit
    }

    fn stopped_early(&self) -> Option<String> {
        let finished = self.thread.as_ref().is_none_or(|t| t.is_finished());
        finished.then(|| match self.outcome.lock().map(|o| o.try_recv()) {
            Ok(Ok(Ok(()))) => "it stopped without an error".into(),
            Ok(Ok(Err(e))) => e,
            _ => "it panicked (see the panic above)".into(),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if std::thread::panicking() {
            // The test failed already: stop the server, show what it logged.
            let _ = self.receiver().recv_timeout(STOP_ON_DROP);
            self.log.show(&self.base);
            return;
        }
        match self.finish(STOP_ON_DROP) {
            Some(Stopped { error: None }) => {}
            Some(Stopped { error: Some(e) }) => panic!("the in-process server failed: {e}"),
            None => panic!("the in-process server did not stop within {STOP_ON_DROP:?}"),
        }
    }
}

/// Waits until the files the server locked in `data_dir` can be locked again. sled 0.34 closes
/// its files from its own flusher thread after the last handle is gone (spacejam/sled#1234), so
/// they may still be held for a moment after `run` returned; a new process never sees that.
fn wait_until_unlocked(data_dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for file in ["LOCK", "engine/db", "store/db"] {
        let path = data_dir.join(file);
        while !lockable(&path) {
            assert!(
                Instant::now() < deadline,
                "{} is still locked after the server stopped",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The file is missing or this process can lock it (flock: a lock held through another open
/// file, even in this process, refuses it).
fn lockable(path: &Path) -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(file) => file.try_lock().is_ok(),
        Err(_) => true,
    }
}

// ----- the binary -------------------------------------------------------------------------

/// A running `tidings serve`, killed if a test fails before it stops it. Its stderr is read
/// as it comes ([`ServerLog`]) and shown when the test fails.
pub struct Process {
    pub child: Child,
    pub base: String,
    /// `HOST:PORT` of the Kafka listener, when the server printed `kafka listening on`.
    pub kafka: Option<String>,
    /// What the server printed on stderr.
    pub log: ServerLog,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            self.log.show(&self.base);
        }
    }
}

/// How much of a server's stderr is kept: the end of it, enough for the lines before a
/// failure at the tests' levels, bounded whatever a server logs.
const LOG_KEPT: usize = 256 * 1024;

/// What a server logged, the last [`LOG_KEPT`] bytes of it: a process's stderr, read by a
/// thread of its own from the moment it starts (a pipe nobody reads would block the server's
/// logging once full), or what an in-process server's runtime logged ([`ServerLog::dispatch`]).
#[derive(Clone, Default)]
pub struct ServerLog {
    text: std::sync::Arc<(Mutex<LogText>, std::sync::Condvar)>,
}

#[derive(Default)]
struct LogText {
    kept: String,
    /// The pipe closed: the server exited and everything it printed is in `kept`.
    ended: bool,
}

impl ServerLog {
    fn read(stderr: impl Read + Send + 'static) -> ServerLog {
        let log = ServerLog::default();
        let writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                writer.append(&line);
            }
            writer.update(|text| text.ended = true);
        });
        log
    }

    /// A subscriber logging into this, as the binary logs (text, no colours), at the tests'
    /// level.
    fn dispatch(&self) -> tracing::Dispatch {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(server_log_level()))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::Dispatch::new(subscriber)
    }

    fn append(&self, line: &str) {
        self.append_text(line);
        self.append_text("\n");
    }

    fn append_text(&self, more: &str) {
        self.update(|text| {
            text.kept.push_str(more);
            if text.kept.len() > LOG_KEPT {
                let mut cut = text.kept.len() - LOG_KEPT / 2;
                while !text.kept.is_char_boundary(cut) {
                    cut += 1;
                }
                text.kept.replace_range(..cut, "[…]\n");
            }
        });
    }

    fn update(&self, change: impl FnOnce(&mut LogText)) {
        let (text, changed) = &*self.text;
        change(&mut text.lock().unwrap_or_else(PoisonError::into_inner));
        changed.notify_all();
    }

    /// What the server printed so far.
    pub fn so_far(&self) -> String {
        let (text, _) = &*self.text;
        text.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .kept
            .clone()
    }

    /// Waits (at most `within`) until what the server printed satisfies `done`, and returns
    /// it; `None` if it did not in time or the server exited first.
    pub fn wait_for(&self, within: Duration, done: impl Fn(&str) -> bool) -> Option<String> {
        let (text, changed) = &*self.text;
        let deadline = Instant::now() + within;
        let mut text = text.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if done(&text.kept) {
                return Some(text.kept.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            if text.ended {
                return None;
            }
            text = changed
                .wait_timeout(text, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Everything a server process printed, once it has exited (call after stopping it).
    pub fn to_end(&self) -> String {
        let within = Duration::from_secs(10);
        let (text, changed) = &*self.text;
        let text = changed
            .wait_timeout_while(
                text.lock().unwrap_or_else(PoisonError::into_inner),
                within,
                |text| !text.ended,
            )
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        assert!(
            text.ended,
            "the server's stderr stayed open {within:?} after it exited"
        );
        text.kept.clone()
    }

    /// Prints what the server logged (for a failed test: libtest shows it with the failure).
    fn show(&self, server: &str) {
        let text = self.so_far();
        if !text.is_empty() {
            eprintln!("----- log of the server at {server} -----\n{text}----- end -----");
        }
    }
}

impl TestServer for Process {
    type Exit = ExitStatus;

    fn base(&self) -> &str {
        &self.base
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit in {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stopped_early(&self) -> Option<String> {
        None
    }
}

/// An in-process server's log lines, written by its subscriber.
impl std::io::Write for ServerLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.append_text(&String::from_utf8_lossy(bytes));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The servers' log level: `warn`, or `TIDINGS_TEST_LOG_LEVEL` (a filter such as
/// `warn,tidings::cluster=debug`) to see more of what a failing test's servers did.
fn server_log_level() -> String {
    std::env::var("TIDINGS_TEST_LOG_LEVEL").unwrap_or_else(|_| "warn".to_owned())
}

pub fn command(data_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidings"));
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env_remove("TIDINGS_CONFIG")
        .env_remove("TIDINGS_LISTEN")
        .env_remove("TIDINGS_DATA_DIR")
        .env_remove("FAILPOINTS")
        .env("TIDINGS_LOG_LEVEL", server_log_level())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `cmd` run under an open-file limit of `limit` (soft and hard, set by `sh`'s `ulimit`).
pub fn with_open_file_limit(cmd: &Command, limit: u64) -> Command {
    let mut wrapped = Command::new("sh");
    wrapped
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

/// Starts the binary and waits for its `listening on http://HOST:PORT` line (and takes the
/// `kafka listening on HOST:PORT` line printed before it, if any).
pub fn start(mut cmd: Command) -> Process {
    let mut child = cmd.spawn().expect("spawn tidings");
    let stdout = child.stdout.take().expect("piped stdout");
    let log = ServerLog::read(child.stderr.take().expect("piped stderr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kafka = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(address) = line.strip_prefix("kafka listening on ") {
                kafka = Some(address.to_owned());
            }
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = tx.send((url.to_owned(), kafka.take()));
            }
        }
    });
    let (base, kafka) = match rx.recv_timeout(STARTUP) {
        Ok(started) => started,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no `listening on` line; stderr: {}", log.to_end());
        }
    };
    Process {
        child,
        base,
        kafka,
        log,
    }
}

/// The binary on `data_dir`, on an ephemeral port.
pub fn started(data_dir: &Path) -> Process {
    start(command(data_dir, &["--listen", "127.0.0.1:0"]))
}
