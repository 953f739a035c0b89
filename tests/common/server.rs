//! Shared harness of the integration tests: start the real `tidings serve` binary on an
//! ephemeral port with a temporary data directory, wait until it is ready, stop it.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const STARTUP: Duration = Duration::from_secs(30);

/// A running `tidings serve`, killed if a test fails before it stops it.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
        .env("TIDINGS_LOG_LEVEL", "warn")
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

/// Starts the binary and waits for its `listening on http://HOST:PORT` line.
pub fn start(mut cmd: Command) -> Server {
    let mut child = cmd.spawn().expect("spawn tidings");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let base = match rx.recv_timeout(STARTUP) {
        Ok(url) => url,
        Err(_) => {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            panic!("no `listening on` line; stderr: {err}");
        }
    };
    Server { child, base }
}

pub fn started(data_dir: &Path) -> Server {
    start(command(data_dir, &["--listen", "127.0.0.1:0"]))
}

pub async fn wait_ready(server: &Server) {
    let deadline = Instant::now() + STARTUP;
    loop {
        let status = reqwest::get(format!("{}/readyz", server.base))
            .await
            .map(|r| r.status().as_u16());
        if status.as_ref().ok() == Some(&200) {
            return;
        }
        assert!(Instant::now() < deadline, "not ready: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn sigterm(server: &Server) {
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

pub fn wait_exit(server: &mut Server, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = server.child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit in {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
