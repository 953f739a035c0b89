//! The real client libraries users run (`@microsoft/signalr`, `socket.io-client` and `kafkajs`,
//! pinned in `tests/clients/package-lock.json`; `confluent-kafka`, pinned in
//! `tests/clients/requirements.txt`; Debian's `kcat`), driven by Node and Python scripts in
//! `tests/clients/`.
//!
//! Installed on first use, once per test binary, under a file lock so that several binaries
//! running at once do not install over each other: Node.js and npm from Debian's packages when
//! they are missing (as root, or through `sudo`), then the pinned packages with `npm ci`. A
//! machine where that cannot be done fails these tests saying what to install; they never
//! skip.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// How long one client script may run before the test fails.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// `tests/clients/`.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Installs the pinned client packages unless they are there already.
pub fn ensure_installed() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = clients_dir();
        let lock = File::create(std::env::temp_dir().join("tidings-test-clients.lock"))
            .expect("create the install lock file");
        lock.lock().expect("lock the install lock file");
        ensure_node();
        let marker = dir.join("node_modules/.package-lock.json");
        let lockfile = dir.join("package-lock.json");
        let fresh = match (marker.metadata(), lockfile.metadata()) {
            (Ok(installed), Ok(wanted)) => installed.modified().ok() >= wanted.modified().ok(),
            _ => false,
        };
        if !fresh {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .stdin(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("cannot run npm: {e}"));
            assert!(status.success(), "npm ci in {} failed", dir.display());
        }
    });
}

/// Installs Node.js and npm from Debian unless both run already.
fn ensure_node() {
    let runs = |program: &str| {
        Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if runs("node") && runs("npm") {
        return;
    }
    let installed = apt_install(&["nodejs", "npm"]);
    assert!(
        installed && runs("node") && runs("npm"),
        "the client tests need Node.js 18+ and npm, and installing them failed: run \
         `apt-get install nodejs npm` as root"
    );
}

/// Installs Debian `packages` with apt-get (as root, or through `sudo -n`); whether it worked.
pub fn apt_install(packages: &[&str]) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"));
    let apt = |args: &[&str]| {
        let mut command = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    let install = [&["install", "-y", "-qq"][..], packages].concat();
    apt(&["update", "-qq"]) && apt(&install)
}

/// Creates `tests/clients/.venv` with the pinned Python clients unless it is there already
/// (under the same lock as the Node install).
pub fn ensure_python_installed() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = clients_dir();
            let lock = File::create(std::env::temp_dir().join("tidings-test-clients.lock"))
                .expect("create the install lock file");
            lock.lock().expect("lock the install lock file");
            let venv = dir.join(".venv");
            let python = venv.join("bin/python");
            let marker = venv.join("installed-requirements.txt");
            let wanted = std::fs::read_to_string(dir.join("requirements.txt"))
                .expect("read tests/clients/requirements.txt");
            if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
                return python;
            }
            let status = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .unwrap_or_else(|e| {
                    panic!("cannot run python3 (install python3 and python3-venv): {e}")
                });
            assert!(
                status.success(),
                "python3 -m venv {} failed",
                venv.display()
            );
            let status = Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "-r"])
                .arg(dir.join("requirements.txt"))
                .stdin(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("cannot run pip: {e}"));
            assert!(
                status.success(),
                "pip install -r tests/clients/requirements.txt failed"
            );
            std::fs::write(&marker, wanted).expect("write the install marker");
            python
        })
        .clone()
}

/// Installs Debian's `kcat` unless it runs already; returns its name.
pub fn ensure_kcat() -> &'static str {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let runs = || {
            Command::new("kcat")
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        };
        if !runs() {
            let installed = apt_install(&["kcat"]);
            assert!(
                installed && runs(),
                "the kcat test needs kcat, and installing it failed: run `apt-get install kcat` as root"
            );
        }
    });
    "kcat"
}

/// Runs `script` (a Python file in `tests/clients/`) in the clients' venv with `config` as its
/// one argument and returns the JSON it prints last.
pub async fn run_python(script: &str, config: &Value) -> Value {
    let python = ensure_python_installed();
    let mut client = Client::spawn(python.as_os_str(), script, config);
    let last = client.last_line().await;
    client.finish().await;
    last
}

/// Runs `script` (in `tests/clients/`) with `config` as its one argument and returns the JSON
/// it prints last.
pub async fn run(script: &str, config: &Value) -> Value {
    let mut client = Client::start(script, config);
    let last = client.last_line().await;
    client.finish().await;
    last
}

/// A running client script that talks over stdin/stdout: a JSON line each way.
pub struct Client {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    script: String,
}

impl Client {
    /// Starts `node script config`.
    pub fn start(script: &str, config: &Value) -> Client {
        ensure_installed();
        Client::spawn(std::ffi::OsStr::new("node"), script, config)
    }

    /// Starts `python script config` with the clients' venv (see [`ensure_python_installed`]).
    pub fn start_python(script: &str, config: &Value) -> Client {
        let python = ensure_python_installed();
        Client::spawn(python.as_os_str(), script, config)
    }

    /// Starts `program script config` in `tests/clients/`.
    fn spawn(program: &std::ffi::OsStr, script: &str, config: &Value) -> Client {
        let mut child = tokio::process::Command::new(program)
            .arg(script)
            .arg(config.to_string())
            .current_dir(clients_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program:?} {script}: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Client {
            child,
            stdin,
            lines,
            script: script.to_owned(),
        }
    }

    /// The next JSON line the script prints.
    pub async fn next(&mut self) -> Value {
        self.next_within(SCRIPT_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("{} printed nothing for {SCRIPT_TIMEOUT:?}", self.script))
    }

    /// The next JSON line the script prints, or `None` if it prints none within `patience`.
    pub async fn next_within(&mut self, patience: Duration) -> Option<Value> {
        let line = tokio::time::timeout(patience, self.lines.next_line())
            .await
            .ok()?
            .expect("read the script's output")
            .unwrap_or_else(|| panic!("{} ended without printing a result", self.script));
        Some(
            serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{} printed {line:?}, not JSON: {e}", self.script)),
        )
    }

    /// Reads lines until the script's output ends; returns the last.
    async fn last_line(&mut self) -> Value {
        let mut last = self.next().await;
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(SCRIPT_TIMEOUT, self.lines.next_line()).await
        {
            last = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{} printed {line:?}, not JSON: {e}", self.script));
        }
        last
    }

    /// Sends the script one JSON line.
    pub async fn say(&mut self, value: &Value) {
        let mut line = value.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to the script");
    }

    /// Ends the script with SIGKILL, as a crash would: no goodbye reaches its servers.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL the script");
    }

    /// Waits for the script to exit and checks it succeeded.
    pub async fn finish(mut self) {
        let status = tokio::time::timeout(SCRIPT_TIMEOUT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit", self.script))
            .expect("wait for node");
        assert!(status.success(), "{} failed: {status}", self.script);
    }
}
