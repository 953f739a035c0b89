//! The soak's own `tidings serve`: starting it as a child process of the current executable on
//! one data directory, reading its `listening on` line, waiting for `/readyz`, and stopping it
//! gracefully (SIGTERM) or by force (SIGKILL) so that it can be started again on the same
//! directory.
//!
//! It knows nothing of the load: it only owns the child process, its flags and its diagnostic
//! log file (appended to across restarts, outside the data directory so the disk figures are
//! the server's own files).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a start may take until `/readyz` answers 200 (recovery after a kill included).
const STARTUP: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the soak calls it a failure and kills.
const GRACEFUL_STOP: Duration = Duration::from_secs(60);

/// How to start the server: the same flags every time, only the port changes.
#[derive(Debug, Clone)]
pub(crate) struct ServerCommand {
    /// The `tidings` executable.
    pub(crate) exe: PathBuf,
    /// The data directory every start reuses.
    pub(crate) data_dir: PathBuf,
    /// The configuration file (the webhook sink and the WebSocket queue).
    pub(crate) config: PathBuf,
    /// Where the server's stderr goes (appended).
    pub(crate) log_file: PathBuf,
    /// `--durability`.
    pub(crate) durability: String,
}

/// A running server child.
pub(crate) struct RunningServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    /// Its process id.
    pub(crate) pid: u32,
}

/// How a server was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// SIGTERM, then wait for exit.
    Graceful,
    /// SIGKILL.
    Kill,
}

impl ServerCommand {
    /// Starts the server and waits until it is ready.
    pub(crate) async fn start(&self) -> anyhow::Result<RunningServer> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .with_context(|| format!("cannot open {}", self.log_file.display()))?;
        let mut child = Command::new(&self.exe)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--rate-limit", "0"])
            .arg("--durability")
            .arg(&self.durability)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--config")
            .arg(&self.config)
            .args(["--log-level", "warn"])
            .env_remove("TIDINGS_CONFIG")
            .env_remove("TIDINGS_LISTEN")
            .env_remove("TIDINGS_DATA_DIR")
            .env_remove("TIDINGS_JWT_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let base = match tokio::time::timeout(STARTUP, listening_line(&mut child)).await {
            Ok(Ok(base)) => base,
            Ok(Err(e)) => return Err(e.context(self.log_hint())),
            Err(_) => anyhow::bail!("no `listening on` line in {STARTUP:?}; {}", self.log_hint()),
        };
        wait_ready(&base).await.with_context(|| self.log_hint())?;
        Ok(RunningServer { child, base, pid })
    }

    fn log_hint(&self) -> String {
        format!("see the server's log {}", self.log_file.display())
    }
}

/// Reads stdout until `listening on URL`; keeps draining it afterwards so the child never
/// blocks on a full pipe.
async fn listening_line(child: &mut Child) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("stdout is piped")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(url) = line.strip_prefix("listening on ") {
            let base = url.trim_end_matches('/').to_owned();
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(base);
        }
    }
    anyhow::bail!("the server exited before it was listening")
}

/// Polls `/readyz` until 200.
async fn wait_ready(base: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + STARTUP;
    loop {
        let status = client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if matches!(status, Ok(200)) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{base}/readyz did not answer 200 within {STARTUP:?} (last: {status:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl RunningServer {
    /// Whether the process already ended on its own (a crash the soak did not cause).
    pub(crate) fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Stops the server. A graceful stop must end with exit status 0 in time; one that does not
    /// is an error, and the process is killed (it is gone either way when this returns).
    pub(crate) async fn stop(mut self, how: Stop) -> anyhow::Result<()> {
        match how {
            Stop::Kill => {
                self.child
                    .start_kill()
                    .context("cannot SIGKILL the server")?;
                self.child.wait().await?;
                Ok(())
            }
            Stop::Graceful => {
                sigterm(self.pid).await?;
                let status = tokio::time::timeout(GRACEFUL_STOP, self.child.wait()).await;
                match status {
                    Ok(Ok(status)) if status.success() => Ok(()),
                    Ok(Ok(status)) => anyhow::bail!("the server stopped with {status}"),
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => {
                        let _ = self.child.start_kill();
                        let _ = self.child.wait().await;
                        anyhow::bail!("the server did not stop within {GRACEFUL_STOP:?} of SIGTERM")
                    }
                }
            }
        }
    }
}

/// Sends SIGTERM with kill(1), as the integration tests do (no libc binding needed).
async fn sigterm(pid: u32) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .context("cannot run kill")?;
    anyhow::ensure!(status.success(), "kill -TERM {pid} failed: {status}");
    Ok(())
}

/// Resident set (KiB) and open descriptors of process `pid`, `None` when it is gone.
pub(crate) fn process_figures(pid: u32) -> (Option<u64>, Option<u64>) {
    // A killed process not reaped yet has no VmRSS and no descriptors: it counts as gone.
    let Some(rss) = crate::bench::report::resident_kib(Some(pid)) else {
        return (None, None);
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|dir| dir.count() as u64);
    (Some(rss), fds)
}

/// Sum of the sizes of every file below `dir`.
pub(crate) fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
