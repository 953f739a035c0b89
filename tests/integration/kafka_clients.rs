//! Real Kafka clients against the `tidings serve` binary's Kafka listener (`--kafka-listen`):
//! kafkajs 2.2.4 (tests/clients/kafka_clients.mjs) produces and consumes with consumer groups,
//! and what it writes or reads is the same topic, offsets, keys, values and committed group
//! offsets HTTP sees.

use crate::common;

use common::bus::{Bus, CONSUMER};
use common::clients;
use common::server::Process;
use serde_json::{json, Value};

/// A server with the Kafka listener on an ephemeral port.
async fn kafka_server() -> (Bus<Process>, String) {
    let bus = Bus::start_process(&["--kafka-listen", "127.0.0.1:0"]).await;
    let broker = bus
        .chat
        .server
        .kafka
        .clone()
        .expect("the server printed `kafka listening on HOST:PORT`");
    (bus, broker)
}

async fn get_json(bus: &Bus<Process>, path: &str) -> Value {
    let response = bus.get(CONSUMER, path).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.expect("JSON")
}

/// kafkajs consumes `count` records of `topic` in `group` (from the beginning) and commits.
async fn consume(broker: &str, topic: &str, group: &str, count: usize) -> Vec<Value> {
    let out = clients::run(
        "kafka_clients.mjs",
        &json!({"scenario": "consume", "broker": broker, "topic": topic, "group": group, "count": count}),
    )
    .await;
    out["records"].as_array().expect("records").clone()
}

/// The group's lag on every partition of `topic`, as HTTP shows it.
async fn lags(bus: &Bus<Process>, group: &str, topic: &str) -> Vec<u64> {
    let described = get_json(bus, &format!("/api/groups/{group}")).await;
    let offsets = described["offsets"].as_array().expect("offsets");
    let on_topic = offsets
        .iter()
        .find(|t| t["topic"] == topic)
        .unwrap_or_else(|| panic!("no offsets of {group} on {topic}: {described}"));
    on_topic["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["lag"].as_u64().expect("lag"))
        .collect()
}

#[tokio::test]
async fn kafkajs_produces_json_with_keys_and_http_reads_the_same_keys_and_values() {
    let (bus, broker) = kafka_server().await;
    let records: Vec<Value> = (0..20)
        .map(|i| json!({"key": format!("order-{}", i % 4), "value": json!({"n": i, "text": "héllo"}).to_string()}))
        .collect();
    let out = clients::run(
        "kafka_clients.mjs",
        &json!({"scenario": "produce", "broker": broker, "topic": "orders", "records": records}),
    )
    .await;
    assert!(!out["offsets"].as_array().expect("offsets").is_empty());
    let topic = get_json(&bus, "/api/topics/orders").await;
    let mut seen = Vec::new();
    for partition in topic["partitions"].as_array().expect("partitions") {
        let p = partition["partition"].as_u64().expect("partition");
        let page = get_json(
            &bus,
            &format!("/api/topics/orders/partitions/{p}/records?offset=0&limit=100"),
        )
        .await;
        for record in page["records"].as_array().expect("records") {
            seen.push((
                record["key"].as_str().expect("key").to_owned(),
                record["value"].clone(),
            ));
        }
    }
    seen.sort_by_key(|(_, value)| value["n"].as_u64());
    let expected: Vec<(String, Value)> = (0..20)
        .map(|i| (format!("order-{}", i % 4), json!({"n": i, "text": "héllo"})))
        .collect();
    assert_eq!(
        seen, expected,
        "every record, with its key, as JSON over HTTP"
    );
}

#[tokio::test]
async fn records_published_over_http_are_consumed_by_a_kafkajs_group_which_then_lags_zero() {
    let (bus, broker) = kafka_server().await;
    bus.create("payments", 3).await;
    let records: Vec<Value> = (0..9)
        .map(|i| json!({"key": format!("acct-{i}"), "value": {"amount": i}}))
        .collect();
    bus.publish("payments", json!(records)).await;
    let consumed = consume(&broker, "payments", "billing", 9).await;
    let mut values: Vec<Value> = consumed
        .iter()
        .map(|r| serde_json::from_str(r["value"].as_str().expect("value")).expect("JSON text"))
        .collect();
    values.sort_by_key(|v| v["amount"].as_u64());
    let expected: Vec<Value> = (0..9).map(|i| json!({"amount": i})).collect();
    assert_eq!(
        values, expected,
        "a value published over HTTP reads as its JSON text"
    );
    for record in &consumed {
        let key = record["key"].as_str().expect("key");
        let value: Value =
            serde_json::from_str(record["value"].as_str().expect("value")).expect("JSON");
        assert_eq!(key, format!("acct-{}", value["amount"]));
    }
    assert_eq!(
        lags(&bus, "billing", "payments").await,
        vec![0, 0, 0],
        "committed up to the end"
    );
}

#[tokio::test]
async fn the_notification_service_as_written_reads_message_new_of_an_offline_recipient() {
    let (bus, broker) = kafka_server().await;
    let chat = &bus.chat;
    chat.conversation("alice", "c1", &["bob", "carol"]).await;
    chat.send("alice", "c1", "hello from kafka land").await;
    // bob and carol have no session: one message.new each.
    let consumed = consume(&broker, "message.new", "notification-service", 2).await;
    let mut recipients: Vec<String> = consumed
        .iter()
        .map(|r| {
            let event: Value =
                serde_json::from_str(r["value"].as_str().expect("value")).expect("JSON");
            assert_eq!(event["messageContent"], "hello from kafka land");
            assert_eq!(event["senderId"], "alice");
            assert_eq!(r["key"], event["recipientId"], "keyed by recipient");
            event["recipientId"].as_str().expect("recipient").to_owned()
        })
        .collect();
    recipients.sort();
    assert_eq!(recipients, ["bob", "carol"]);
}

#[tokio::test]
async fn a_two_member_group_splits_the_partitions_and_a_leaving_member_hands_its_share_over() {
    let (bus, broker) = kafka_server().await;
    bus.create("jobs", 4).await;
    let mut script = clients::Client::start(
        "kafka_clients.mjs",
        &json!({"scenario": "split", "broker": broker, "topic": "jobs", "group": "workers", "partitions": 4}),
    );
    let split = script.next().await;
    let mut owned: Vec<u64> = split["assigned"]
        .as_array()
        .expect("two members' partitions")
        .iter()
        .flat_map(|member| member.as_array().expect("partitions").clone())
        .map(|p| p.as_u64().expect("partition"))
        .collect();
    owned.sort_unstable();
    assert_eq!(
        owned,
        [0, 1, 2, 3],
        "each partition to exactly one member: {split}"
    );
    let after = script.next().await;
    assert_eq!(
        after["after"],
        json!([0, 1, 2, 3]),
        "the remaining member owns every partition"
    );
    script.finish().await;
    drop(bus);
}

/// The next `{"owned": [...]}` a `member` script prints.
async fn owned(member: &mut clients::Client) -> Vec<u64> {
    let line = member.next().await;
    line["owned"]
        .as_array()
        .unwrap_or_else(|| panic!("an assignment: {line}"))
        .iter()
        .map(|p| p.as_u64().expect("partition"))
        .collect()
}

#[tokio::test]
async fn a_member_that_dies_hands_its_partitions_over_after_its_session_timeout() {
    let (bus, broker) = kafka_server().await;
    bus.create("orders", 4).await;
    let config =
        json!({"scenario": "member", "broker": broker, "topic": "orders", "group": "packers"});
    let mut a = clients::Client::start("kafka_clients.mjs", &config);
    assert_eq!(
        owned(&mut a).await,
        [0, 1, 2, 3],
        "alone, a owns every partition"
    );
    let mut b = clients::Client::start("kafka_clients.mjs", &config);
    let b_share = loop {
        let share = owned(&mut b).await;
        if !share.is_empty() && share.len() < 4 {
            break share;
        }
    };
    // a is killed, not closed: no LeaveGroup reaches the server, only its silence.
    a.kill().await;
    // b's share grows to every partition only once the server has evicted a; `next` fails the
    // test if that does not happen within the script timeout.
    let mut b_owns = b_share;
    while b_owns != [0, 1, 2, 3] {
        b_owns = owned(&mut b).await;
    }
}

#[tokio::test]
async fn an_idempotent_lz4_librdkafka_producer_and_a_two_member_group_read_each_record_once() {
    let (bus, broker) = kafka_server().await;
    bus.create("telemetry", 4).await;
    let out = clients::run_python(
        "kafka_librdkafka.py",
        &json!({"scenario": "group", "broker": broker, "topic": "telemetry", "group": "readers", "count": 3000}),
    )
    .await;
    assert_eq!(out["delivery_errors"], json!([]), "{out}");
    assert_eq!(out["read"], 3000, "{out}");
    assert_eq!(out["duplicates"], 0, "each record read exactly once: {out}");
    let per_member = out["per_member"].as_array().expect("per member");
    assert!(
        per_member.iter().all(|n| n.as_u64() > Some(0)),
        "both members read: {out}"
    );
    let stored: u64 = get_json(&bus, "/api/topics/telemetry").await["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["high"].as_u64().expect("high") - p["low"].as_u64().expect("low"))
        .sum();
    assert_eq!(stored, 3000, "no record stored twice");
    assert_eq!(lags(&bus, "readers", "telemetry").await, vec![0, 0, 0, 0]);
}

#[tokio::test]
async fn gzip_snappy_zstd_and_lz4_batches_from_librdkafka_round_trip() {
    let (_bus, broker) = kafka_server().await;
    let codecs = ["gzip", "snappy", "zstd", "lz4"];
    let out = clients::run_python(
        "kafka_librdkafka.py",
        &json!({"scenario": "compression", "broker": broker, "topic": "codecs", "count": 200, "codecs": codecs}),
    )
    .await;
    for codec in codecs {
        let sorted = |v: &Value| {
            let mut values: Vec<String> = v
                .as_array()
                .expect("values")
                .iter()
                .map(|s| s.as_str().expect("text").to_owned())
                .collect();
            values.sort();
            values
        };
        assert_eq!(
            sorted(&out["read"][codec]),
            sorted(&out["sent"][codec]),
            "{codec}"
        );
        assert_eq!(sorted(&out["read"][codec]).len(), 200, "{codec}");
    }
}

#[tokio::test]
async fn kcat_prints_the_stored_message_sent_events() {
    let (bus, broker) = kafka_server().await;
    bus.chat.conversation("alice", "c1", &["bob"]).await;
    bus.chat.send("alice", "c1", "seen through kcat").await;
    common::notify::wait_records(&bus, "messages.sent", 1, std::time::Duration::from_secs(10))
        .await;
    let kcat = clients::ensure_kcat();
    let output = tokio::process::Command::new(kcat)
        .args([
            "-b",
            &broker,
            "-C",
            "-t",
            "messages.sent",
            "-o",
            "beginning",
            "-e",
            "-q",
        ])
        .output()
        .await
        .expect("run kcat");
    assert!(
        output.status.success(),
        "kcat failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).expect("UTF-8");
    let events: Vec<Value> = printed
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line an event"))
        .collect();
    assert_eq!(events.len(), 1, "{printed}");
    assert_eq!(events[0]["eventType"], "MessageSent");
    assert_eq!(events[0]["message"]["content"], "seen through kcat");
}

/// A value that is not JSON (plain text from kcat) reads over HTTP as `valueBase64`, and a key
/// that is not UTF-8 as `keyBase64`; nothing is read lossily, and a JSON value stays `value`.
#[tokio::test]
async fn kafka_values_that_are_not_json_and_keys_that_are_not_utf8_read_as_base64_over_http() {
    use tokio::io::AsyncWriteExt;
    let (bus, broker) = kafka_server().await;
    bus.create("raw", 1).await;
    let kcat = clients::ensure_kcat();
    let mut producer = tokio::process::Command::new(kcat)
        .args(["-b", &broker, "-P", "-t", "raw", "-p", "0", "-K", "\t"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run kcat");
    let mut input = producer.stdin.take().expect("kcat's stdin");
    input
        .write_all(b"\xff\x00\tplain text, not JSON\nk\t{\"json\": true}\n")
        .await
        .expect("write to kcat");
    drop(input);
    let status = producer.wait().await.expect("kcat ends");
    assert!(status.success(), "kcat produce failed");

    let page = get_json(
        &bus,
        "/api/topics/raw/partitions/0/records?offset=0&limit=10",
    )
    .await;
    let records = page["records"].as_array().expect("records");
    assert_eq!(records.len(), 2, "{page}");
    assert_eq!(records[0]["keyBase64"], "/wA=", "{page}");
    assert_eq!(records[0]["key"], Value::Null);
    assert_eq!(
        records[0]["valueBase64"], "cGxhaW4gdGV4dCwgbm90IEpTT04=",
        "{page}"
    );
    assert!(records[0].get("value").is_none(), "{page}");
    assert_eq!(records[1]["key"], "k");
    assert_eq!(records[1]["value"], json!({"json": true}));
    assert!(records[1].get("valueBase64").is_none(), "{page}");
}

fn token(bus: &Bus<Process>, scopes: &[&str]) -> String {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    bus.auth
        .issue("svc", None, &scopes, std::time::Duration::from_secs(3600))
}

#[tokio::test]
async fn sasl_plain_and_oauthbearer_carry_a_token_and_its_scopes_and_the_chat_topics_stay_closed() {
    let (bus, broker, _config) = Bus::start_kafka_sasl_only().await;
    bus.create("orders", 1).await;
    let publisher = token(&bus, &["events:publish"]);
    let admin = token(&bus, &["admin"]);
    let attempts = json!([
        {"topic": "orders", "mechanism": "PLAIN", "token": publisher},
        {"topic": "orders", "mechanism": "OAUTHBEARER", "token": publisher},
        {"topic": "orders"},
        {"topic": "orders", "mechanism": "PLAIN", "token": "not.a.token"},
        {"topic": "messages", "mechanism": "PLAIN", "token": admin},
        {"topic": "messages.sent", "mechanism": "PLAIN", "token": admin},
    ]);
    let out = clients::run_python(
        "kafka_librdkafka.py",
        &json!({"scenario": "sasl", "broker": broker, "attempts": attempts}),
    )
    .await;
    let outcomes = out["outcomes"].as_array().expect("outcomes");
    assert_eq!(
        outcomes[0],
        Value::Null,
        "PLAIN with a publish token: {out}"
    );
    assert_eq!(
        outcomes[1],
        Value::Null,
        "OAUTHBEARER with a publish token: {out}"
    );
    assert_eq!(
        outcomes[2], "TOPIC_AUTHORIZATION_FAILED",
        "no SASL, no scopes: {out}"
    );
    assert_ne!(
        outcomes[3],
        Value::Null,
        "a bad token stores nothing: {out}"
    );
    assert_eq!(
        outcomes[4], "TOPIC_AUTHORIZATION_FAILED",
        "chat's command log: {out}"
    );
    assert_eq!(
        outcomes[5], "TOPIC_AUTHORIZATION_FAILED",
        "chat's events: {out}"
    );
    let high = get_json(&bus, "/api/topics/orders").await["partitions"][0]["high"].clone();
    assert_eq!(high, 2, "exactly the two authenticated records");
    let messages = bus.get(&["admin"], "/api/topics/messages").await;
    if messages.status() == 200 {
        let body: Value = messages.json().await.expect("JSON");
        let stored: u64 = body["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .map(|p| p["high"].as_u64().expect("high"))
            .sum();
        assert_eq!(stored, 0, "nothing reached chat's command log");
    }
}

#[tokio::test]
async fn an_admin_client_creates_describes_and_deletes_a_topic() {
    let (bus, broker, _config) = Bus::start_kafka_sasl_only().await;
    let admin = token(&bus, &["admin"]);
    let out = clients::run_python(
        "kafka_librdkafka.py",
        &json!({"scenario": "admin", "broker": broker, "topic": "audit", "token": admin}),
    )
    .await;
    assert_eq!(out["partitions"], 3, "{out}");
    assert_eq!(out["retention_ms"], "60000", "{out}");
    assert_eq!(out["duplicate_error"], "TOPIC_ALREADY_EXISTS", "{out}");
    assert_eq!(out["exists_after_delete"], false, "{out}");
    let gone = bus.get(CONSUMER, "/api/topics/audit").await;
    assert_eq!(gone.status(), 404, "deleted for HTTP too");
}

#[tokio::test]
async fn a_sigkill_during_produce_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The default durability (`always`): an acknowledgement means synced to disk.
    let args = ["--listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0"];
    let mut server = common::server::start(common::server::command(dir.path(), &args));
    common::server::wait_ready(&server).await;
    let broker = server.kafka.clone().expect("kafka listening");
    let mut producer = clients::Client::start_python(
        "kafka_librdkafka.py",
        &json!({"scenario": "stream", "broker": broker, "topic": "durable"}),
    );
    let mut acked = Vec::new();
    while acked.len() < 400 {
        acked.push(producer.next().await);
    }
    server.child.kill().expect("SIGKILL the server");
    server.child.wait().expect("reap the server");
    drop(producer);

    let server = common::server::start(common::server::command(dir.path(), &args));
    common::server::wait_ready(&server).await;
    let token = common::chat::authenticator(dir.path()).issue(
        "auditor",
        None,
        &["events:consume".to_owned()],
        std::time::Duration::from_secs(600),
    );
    let http = reqwest::Client::new();
    for record in &acked {
        let (p, offset) = (&record["partition"], &record["offset"]);
        let url = format!(
            "{}/api/topics/durable/partitions/{p}/records?offset={offset}&limit=1",
            server.base
        );
        let page: Value = http
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("read")
            .json()
            .await
            .expect("JSON");
        assert_eq!(
            page["records"][0]["value"]["n"], record["n"],
            "acknowledged record {record} is where its acknowledgement said"
        );
    }
}
