//! A dead webhook endpoint (connection refused) ends each notification in `message.new.dlq`,
//! with headers naming the error, the attempts, the sink and the source; `tidings dlq replay`
//! against the running server brings the record back to `message.new`, and a replay on the data
//! directory after the server stopped repeats nothing a previous replay did.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::notify::{bus_with_config, read_topic, wait_records, webhook_sink};
use common::server::{sigterm, wait_exit};
use serde_json::Value;

fn dlq_replay(extra: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["dlq", "replay", "--topic", "message.new.dlq", "--json"])
        .args(extra)
        .env_remove("TIDINGS_DATA_DIR")
        .output()
        .expect("run tidings dlq replay");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "dlq replay failed: {stderr}");
    serde_json::from_slice(&output.stdout).expect("one JSON report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_dead_letters_and_replay_brings_the_record_back() {
    // A port nobody listens on: bind, note it, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (mut bus, _config) = bus_with_config(
        &webhook_sink("push", &format!("http://{dead}/hook"), 3),
        &[],
    )
    .await;
    bus.chat.conversation("alice", "pair", &["bob"]).await;
    let ack = bus.chat.send("alice", "pair", "anyone?").await;

    let dead_letters = wait_records(&bus, "message.new.dlq", 1, Duration::from_secs(20)).await;
    let letter = &dead_letters[0];
    let original = read_topic(&bus, "message.new").await;
    assert_eq!(original.len(), 1);
    assert_eq!(letter["value"], original[0]["value"]);
    assert_eq!(letter["key"], "bob");
    assert_eq!(letter["value"]["messageId"], ack["id"]);
    let headers = &letter["headers"];
    assert!(
        headers["tidings-dlq-error"]
            .as_str()
            .unwrap()
            .contains("connection"),
        "{headers}"
    );
    assert_eq!(headers["tidings-dlq-attempts"], "3");
    assert_eq!(headers["tidings-dlq-sink"], "push");
    assert_eq!(headers["tidings-dlq-topic"], "message.new");
    assert_eq!(
        headers["tidings-dlq-partition"],
        original[0]["partition"].to_string()
    );
    assert_eq!(
        headers["tidings-dlq-offset"],
        original[0]["offset"].to_string()
    );

    let dir = bus.chat.dir.path().to_str().unwrap().to_owned();
    let report = dlq_replay(&["--server", &bus.chat.server.base, "--data-dir", &dir]);
    assert_eq!(report["replayed"], 1, "{report}");
    assert_eq!(report["to"]["message.new"], 1, "{report}");
    let records = read_topic(&bus, "message.new").await;
    assert_eq!(records.len(), 2, "the dead letter is back: {records:?}");
    let replayed = records
        .iter()
        .find(|r| {
            r["offset"] != original[0]["offset"] || r["partition"] != original[0]["partition"]
        })
        .unwrap();
    assert_eq!(replayed["key"], "bob");
    assert_eq!(replayed["value"], original[0]["value"]);
    assert!(
        replayed["headers"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("tidings-dlq-")),
        "{replayed}"
    );

    // The replayed record fails again (the endpoint is still dead), so the queue may grow; but
    // what one replay did, the next never repeats.
    sigterm(&bus.chat.server);
    assert!(wait_exit(&mut bus.chat.server, Duration::from_secs(20)).success());
    let first = dlq_replay(&["--data-dir", &dir]);
    let second = dlq_replay(&["--data-dir", &dir]);
    assert_eq!(second["replayed"], 0, "first {first}, second {second}");
}

/// `POST /api/dlq/replay` (what the web console's Replay button calls) brings a dead letter
/// back to `message.new` for the sink that failed it, repeats nothing on a second call, and
/// refuses a token without `admin`, a topic that holds no dead letters and an unknown field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_replay_route_brings_dead_letters_back_once() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (bus, _config) = bus_with_config(
        &webhook_sink("push", &format!("http://{dead}/hook"), 1),
        &[],
    )
    .await;
    bus.chat.conversation("alice", "pair", &["bob"]).await;
    bus.chat.send("alice", "pair", "anyone?").await;
    wait_records(&bus, "message.new.dlq", 1, Duration::from_secs(20)).await;

    let member = bus
        .post(
            &["events:publish"],
            "/api/dlq/replay",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(member.status(), 403);
    for bad in [
        serde_json::json!({"topic": "messages"}),
        serde_json::json!({"topics": "message.new.dlq"}),
        serde_json::json!({"group": "x".repeat(100_000)}),
        serde_json::json!({"group": "no spaces/or slashes"}),
    ] {
        let refused = bus.post(&["admin"], "/api/dlq/replay", bad.clone()).await;
        assert_eq!(refused.status(), 400, "{bad}");
    }
    // The server's own workers' groups are not a replay's to move, admin or not.
    for internal in ["notify", "store"] {
        let refused = bus
            .post(
                &["admin"],
                "/api/dlq/replay",
                serde_json::json!({"group": internal}),
            )
            .await;
        assert_eq!(refused.status(), 403, "{internal}");
    }
    assert_eq!(
        read_topic(&bus, "message.new").await.len(),
        1,
        "nothing replayed yet"
    );

    let answer = bus
        .post(&["admin"], "/api/dlq/replay", serde_json::json!({}))
        .await;
    assert_eq!(answer.status(), 200);
    let report: Value = answer.json().await.unwrap();
    assert_eq!(report["replayed"], 1, "{report}");
    assert_eq!(report["group"], "dlq-replay", "{report}");
    let records = read_topic(&bus, "message.new").await;
    assert_eq!(records.len(), 2, "the dead letter is back: {records:?}");
    assert!(
        records
            .iter()
            .any(|r| r["headers"]["tidings-replay-sink"] == "push"),
        "addressed to the sink that failed it: {records:?}"
    );

    // The replayed record fails again and is dead-lettered again; only that new one is
    // replayed by the next call.
    wait_records(&bus, "message.new.dlq", 2, Duration::from_secs(20)).await;
    let again: Value = bus
        .post(&["admin"], "/api/dlq/replay", serde_json::json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["replayed"], 1, "{again}");
}
