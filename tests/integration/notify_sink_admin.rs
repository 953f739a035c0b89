//! Sinks under an operator's hands, against real local webhook receivers: a sink added to an
//! install that already has notifications starts after them (`startFrom = "latest"`, the
//! default) or replays them all (`"earliest"`), and `tidings dlq replay` re-delivers a dead
//! letter to the sink that failed it only (`--sink NAME`: the dead letters of that sink only).

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::bus::{Bus, ADMIN};
use common::chat::chat_process_in;
use common::notify::{read_topic, wait_records, webhook_sink, ConfigFile, Receiver};
use common::server::{sigterm, wait_exit, Process};
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(20);

/// Starts the binary on `dir` with the configuration `toml`.
async fn start(dir: tempfile::TempDir, toml: &str) -> (Bus<Process>, ConfigFile) {
    let config = ConfigFile::new(toml);
    let args = config.args("never");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Bus::of(chat_process_in(dir, &args).await), config)
}

/// Stops the server and hands its data directory back.
fn stop(mut bus: Bus<Process>) -> tempfile::TempDir {
    sigterm(&bus.chat.server);
    assert!(wait_exit(&mut bus.chat.server, WITHIN).success());
    std::mem::replace(&mut bus.chat.dir, tempfile::tempdir().expect("temp dir"))
}

/// alice sends `count` messages to bob, who is offline: one notification each.
async fn notify_bob(bus: &Bus<Process>, count: usize, prefix: &str) {
    for i in 0..count {
        bus.chat
            .send("alice", "pair", &format!("{prefix} {i}"))
            .await;
    }
}

/// Waits until the sink's group has read every notification (lag 0 on every partition).
async fn wait_caught_up(bus: &Bus<Process>, sink: &str) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let described: Value = bus
            .get(ADMIN, &format!("/api/groups/notify.sink.{sink}"))
            .await
            .json()
            .await
            .expect("group JSON");
        let lag: u64 = described["offsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["partitions"].as_array().cloned().unwrap_or_default())
            .map(|p| p["lag"].as_u64().unwrap_or(u64::MAX))
            .sum();
        if lag == 0
            && described["offsets"]
                .as_array()
                .is_some_and(|o| !o.is_empty())
        {
            return;
        }
        assert!(Instant::now() < deadline, "sink {sink} lags: {described}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn accepted(receiver: &Receiver) -> usize {
    receiver
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_added_later_starts_after_the_old_notifications_unless_told_earliest() {
    // Proves a new sink gets none of the N notifications made before it existed by default,
    // all of them with startFrom = "earliest", and both get the ones made after.
    let (bus, _config) = start(tempfile::tempdir().unwrap(), "").await;
    bus.chat.conversation("alice", "pair", &["bob"]).await;
    notify_bob(&bus, 5, "old").await;
    wait_records(&bus, "message.new", 5, WITHIN).await;
    let dir = stop(bus);

    let fresh = Receiver::start(0, Duration::ZERO).await;
    let replay = Receiver::start(0, Duration::ZERO).await;
    let toml = format!(
        "{}\n{}startFrom = \"earliest\"\n",
        webhook_sink("fresh", &fresh.url(), 3),
        webhook_sink("replay", &replay.url(), 3)
    );
    let (bus, _config) = start(dir, &toml).await;
    notify_bob(&bus, 2, "new").await;
    replay
        .wait_until(WITHIN, |r| {
            r.iter().filter(|r| r.status == 200).count() == 7
        })
        .await;
    fresh
        .wait_until(WITHIN, |r| {
            r.iter().filter(|r| r.status == 200).count() == 2
        })
        .await;
    wait_caught_up(&bus, "fresh").await;
    let contents: Vec<String> = fresh
        .requests()
        .iter()
        .map(|r| {
            r.body["messageContent"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(contents, ["new 0", "new 1"]);
    assert_eq!(accepted(&replay), 7);

    // The choice was committed at the first start: a restart does not make it again.
    let dir = stop(bus);
    let (bus, _config) = start(dir, &toml).await;
    notify_bob(&bus, 1, "after restart").await;
    fresh
        .wait_until(WITHIN, |r| {
            r.iter().filter(|r| r.status == 200).count() == 3
        })
        .await;
    wait_caught_up(&bus, "fresh").await;
    wait_caught_up(&bus, "replay").await;
    assert_eq!(accepted(&fresh), 3);
    assert_eq!(accepted(&replay), 8);
    stop(bus);
}

fn dlq_replay(bus: &Bus<Process>, extra: &[&str]) -> Value {
    let dir = bus.chat.dir.path().to_str().expect("utf-8 temp path");
    let output = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["dlq", "replay", "--json", "--server", &bus.chat.server.base])
        .args(["--data-dir", dir])
        .args(extra)
        .env_remove("TIDINGS_DATA_DIR")
        .env_remove("TIDINGS_SERVER")
        .output()
        .expect("run tidings dlq replay");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "dlq replay failed: {stderr}");
    serde_json::from_slice(&output.stdout).expect("one JSON report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_replay_re_delivers_only_to_the_sink_that_failed() {
    // Proves, with a healthy sink and one that fails N notifications: a replay re-delivers
    // each dead letter to the failing sink only (the healthy one still has N deliveries, not
    // 2N), and `--sink` replays that sink's dead letters only.
    const N: usize = 3;
    let healthy = Receiver::start(0, Duration::ZERO).await;
    // 503 to everything of the first round and of the first replay, then 200.
    let flaky = Receiver::start(2 * N, Duration::ZERO).await;
    let toml = format!(
        "{}\n{}",
        webhook_sink("healthy", &healthy.url(), 3),
        webhook_sink("flaky", &flaky.url(), 1)
    );
    let (bus, _config) = start(tempfile::tempdir().unwrap(), &toml).await;
    bus.chat.conversation("alice", "pair", &["bob"]).await;
    notify_bob(&bus, N, "hello").await;
    wait_records(&bus, "message.new.dlq", N, WITHIN).await;
    wait_caught_up(&bus, "healthy").await;
    assert_eq!(accepted(&healthy), N);

    let report = dlq_replay(&bus, &[]);
    assert_eq!(report["replayed"], N as u64, "{report}");
    // The flaky sink fails the replays again: N more dead letters, from the replayed records.
    let letters = wait_records(&bus, "message.new.dlq", 2 * N, WITHIN).await;
    assert!(letters
        .iter()
        .all(|l| l["headers"]["tidings-dlq-sink"] == "flaky"));
    wait_caught_up(&bus, "healthy").await;
    wait_caught_up(&bus, "flaky").await;
    assert_eq!(accepted(&healthy), N, "the healthy sink got no replay");
    assert_eq!(flaky.requests().len(), 2 * N);
    let replayed = read_topic(&bus, "message.new").await;
    assert_eq!(replayed.len(), 2 * N);
    let addressed = replayed
        .iter()
        .filter(|r| r["headers"]["tidings-replay-sink"] == "flaky")
        .count();
    assert_eq!(addressed, N, "{replayed:?}");

    let other = dlq_replay(&bus, &["--sink", "healthy"]);
    assert_eq!(other["replayed"], 0, "{other}");
    assert_eq!(other["otherSinks"], 2 * N as u64, "{other}");
    let report = dlq_replay(&bus, &["--sink", "flaky"]);
    assert_eq!(report["group"], "dlq-replay.flaky", "{report}");
    assert_eq!(report["replayed"], 2 * N as u64, "{report}");
    flaky
        .wait_until(WITHIN, |r| {
            r.iter().filter(|r| r.status == 200).count() == 2 * N
        })
        .await;
    wait_caught_up(&bus, "healthy").await;
    wait_caught_up(&bus, "flaky").await;
    assert_eq!(accepted(&healthy), N, "the healthy sink got no replay");
    assert_eq!(accepted(&flaky), 2 * N);
    stop(bus);
}
