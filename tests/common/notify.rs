//! Helpers of the notification tests: a real local webhook receiver (axum on 127.0.0.1:0) that
//! checks each request's HMAC signature and timestamp and can fail the first attempts, a server
//! configured with sinks (in process, or as the binary), and a reader of every record of a topic over HTTP.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::bus::{Bus, ADMIN};
use super::chat::{chat_process_in, chat_server_in};
use super::server::{Process, TestServer};

/// The secret the test sinks sign with.
pub const SECRET: &str = "test-webhook-secret";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    /// The signature matched HMAC-SHA256(SECRET, timestamp "." body).
    pub signed: bool,
    /// The timestamp header was within 5 minutes of the receiver's clock.
    pub fresh: bool,
    /// What the receiver answered.
    pub status: u16,
}

#[derive(Default)]
struct Inbox {
    requests: Vec<Received>,
    /// Answer 503 to this many requests before accepting.
    failures_left: usize,
}

/// A webhook receiver on an ephemeral local port.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    inbox: Arc<Mutex<Inbox>>,
    delay: Duration,
}

impl Receiver {
    /// Starts a receiver that answers 503 to the first `failures` requests, then 200, each
    /// after `delay`.
    pub async fn start(failures: usize, delay: Duration) -> Receiver {
        let inbox = Arc::new(Mutex::new(Inbox {
            requests: Vec::new(),
            failures_left: failures,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        let receiver = Receiver { addr, inbox, delay };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.inbox.lock().unwrap().requests.clone()
    }

    /// Accepted requests (200) by messageId → how many times.
    pub fn accepted_by_message(&self) -> BTreeMap<String, usize> {
        let mut by = BTreeMap::new();
        for r in self.requests().iter().filter(|r| r.status == 200) {
            let id = r.body["messageId"].as_str().unwrap_or_default().to_owned();
            *by.entry(id).or_default() += 1;
        }
        by
    }

    /// Waits until `done` holds for the requests (at most `within`).
    pub async fn wait_until(&self, within: Duration, done: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + within;
        while !done(&self.requests()) {
            assert!(
                Instant::now() < deadline,
                "receiver state not reached in {within:?}: {:?}",
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    tokio::time::sleep(receiver.delay).await;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let timestamp = header("x-tidings-timestamp");
    let signed = verify(&timestamp, &header("x-tidings-signature"), &body);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let fresh = timestamp
        .parse::<u64>()
        .is_ok_and(|t| t.abs_diff(now) <= 300);
    let mut inbox = receiver.inbox.lock().unwrap();
    let status = if inbox.failures_left > 0 {
        inbox.failures_left -= 1;
        503
    } else {
        200
    };
    inbox.requests.push(Received {
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        signed,
        fresh,
        status,
    });
    StatusCode::from_u16(status).unwrap()
}

/// Checks `sha256=HEX` against HMAC-SHA256(SECRET, timestamp "." body), as a receiver would.
fn verify(timestamp: &str, signature: &str, body: &[u8]) -> bool {
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Some(expected) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// A `[[notify.sinks]]` webhook table for `url` (fast retries so tests finish quickly).
pub fn webhook_sink(name: &str, url: &str, max_attempts: u32) -> String {
    format!(
        "[[notify.sinks]]\nname = \"{name}\"\ntype = \"webhook\"\nurl = \"{url}\"\n\
         secret = \"{SECRET}\"\nmaxAttempts = {max_attempts}\ntimeoutMs = 2000\n\
         backoffBaseMs = 20\nbackoffMaxMs = 100\n"
    )
}

/// A sink configuration file (outside the data directory, which must hold only the server's
/// files); deleted when dropped.
pub struct ConfigFile(pub tempfile::TempPath);

impl ConfigFile {
    pub fn new(toml: &str) -> ConfigFile {
        let mut file = tempfile::Builder::new()
            .prefix("tidings-")
            .suffix(".toml")
            .tempfile()
            .expect("config file");
        std::io::Write::write_all(&mut file, toml.as_bytes()).expect("write config");
        ConfigFile(file.into_temp_path())
    }

    /// The serve flags that use it, on an ephemeral port with `durability`.
    pub fn args(&self, durability: &str) -> Vec<String> {
        vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--durability".into(),
            durability.into(),
            "--config".into(),
            self.0.display().to_string(),
        ]
    }

    /// [`args`](Self::args) followed by `extra`.
    pub fn args_with(&self, durability: &str, extra: &[&str]) -> Vec<String> {
        let mut args = self.args(durability);
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        args
    }
}

/// Starts the server in process with the configuration file `toml` (and `extra` flags), in a
/// fresh data directory; keep the returned file alive as long as the server.
pub async fn bus_with_config(toml: &str, extra: &[&str]) -> (Bus, ConfigFile) {
    let config = ConfigFile::new(toml);
    let args = config.args_with("never", extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let chat = chat_server_in(tempfile::tempdir().expect("temp dir"), &args).await;
    (Bus::of(chat), config)
}

/// [`bus_with_config`], as the `tidings serve` binary.
pub async fn bus_process_with_config(toml: &str, extra: &[&str]) -> (Bus<Process>, ConfigFile) {
    let config = ConfigFile::new(toml);
    let args = config.args_with("never", extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let chat = chat_process_in(tempfile::tempdir().expect("temp dir"), &args).await;
    (Bus::of(chat), config)
}

/// Every record of `topic` (all partitions, from the earliest), read over HTTP as admin.
pub async fn read_topic<S: TestServer>(bus: &Bus<S>, topic: &str) -> Vec<Value> {
    let described: Value = bus
        .get(ADMIN, &format!("/api/topics/{topic}"))
        .await
        .json()
        .await
        .expect("topic JSON");
    let mut all = Vec::new();
    for partition in described["partitions"].as_array().expect("partitions") {
        let p = partition["partition"].as_u64().unwrap();
        let mut offset = partition["low"].as_u64().unwrap();
        let high = partition["high"].as_u64().unwrap();
        while offset < high {
            let page: Value = bus
                .get(
                    ADMIN,
                    &format!(
                        "/api/topics/{topic}/partitions/{p}/records?offset={offset}&limit=1000"
                    ),
                )
                .await
                .json()
                .await
                .expect("page JSON");
            offset = page["nextOffset"].as_u64().unwrap();
            all.extend(page["records"].as_array().unwrap().iter().cloned());
        }
    }
    all
}

/// Waits until `topic` holds at least `count` records (at most `within`); returns them all.
pub async fn wait_records<S: TestServer>(
    bus: &Bus<S>,
    topic: &str,
    count: usize,
    within: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let records = read_topic(bus, topic).await;
        if records.len() >= count {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} holds {} of {count} records after {within:?}",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
