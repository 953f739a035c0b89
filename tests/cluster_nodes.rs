//! Several Tidings nodes on one three-node NATS JetStream cluster (`tidings serve --cluster`):
//! 2,000 messages sent through node A reach a session on node B in order with no gap; three
//! senders on three nodes into one conversation get `seq` 1..N with no gap or duplicate, and a
//! retried send (same `clientMessageId`) through another node is stored once under the first
//! id; a node started later holds the same history as an old one once it says it is ready; a
//! SIGKILLed node's client reconnects to another node and resumes with no gap; with the quorum
//! lost a send gets 503, never 202, and sends work again once a NATS node is back; an offline
//! recipient gets one `message.new` per message, not one per node; a record published through
//! one node is read and committed through another at once (never out of range there while it
//! is on its way); presence and typing reach
//! the sessions of another node; a Kafka consumer group (kafkajs) with a member bootstrapped to
//! each node is one group: its partitions are spread over both, every record is read once and
//! the committed offsets reach the end; read marks and membership changes hold on every node
//! whichever node took them; a NATS server a node is connected to frozen (a partition without
//! a TCP reset): writes come back within seconds while it is cut off, and nothing acknowledged
//! is lost.
//!
//! Each test has its own NATS cluster (some damage theirs). Nodes share their token secret by
//! the same `secret.key` in each data directory, as docs/cluster.md says.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::bus::{Bus, ADMIN, CONSUMER};
use common::chat::{chat_process_in, chat_server_in, Chat};
use common::clients::Client;
use common::kafka_raw::RawKafka;
use common::nats::NatsCluster;
use common::notify::{read_topic, wait_records};
use common::server::{Process, TestServer};
use common::ws::{config_beside, connect, message_seqs};
use serde_json::{json, Value};

/// How long a node's request to the cluster may take (short, so that the quorum test sees its
/// 503 quickly). No rate limit: the tests send thousands of messages as one user.
/// A replica cache of 16 KiB per partition, so that a node catching up its store, or a client
/// resuming from far back, reads the older records from JetStream rather than from memory.
/// A short presence grace period, so that the presence test sees `offline` soon.
const CLUSTER_TOML: &str = "[cluster]\nrequestTimeoutMs = 2000\nreplicaCacheBytes = 16384\n\
                            [ws]\npresenceGraceMs = 300\n";

/// The tests of this binary run one at a time: each starts three NATS servers and two or three
/// Tidings nodes, more than two cores serve well twice over.
/// (A tokio mutex: a failed test does not poison it for the others.)
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fresh data directory holding `secret` (the first node's), so that every node accepts the
/// same tokens.
fn data_dir(secret: Option<&Path>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    if let Some(from) = secret {
        std::fs::copy(from.join("secret.key"), dir.path().join("secret.key"))
            .expect("share the token secret");
    }
    dir
}

fn node_flags(cluster: &NatsCluster, config: &Path) -> Vec<String> {
    [
        "--listen",
        "127.0.0.1:0",
        "--durability",
        "never",
        "--rate-limit",
        "0",
        "--cluster",
        &cluster.urls(),
        "--config",
        config.to_str().expect("UTF-8 path"),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A node in this process on the cluster, ready.
async fn node(cluster: &NatsCluster, secret: Option<&Path>) -> Chat {
    let dir = data_dir(secret);
    let config = config_beside(&dir, CLUSTER_TOML);
    let flags = node_flags(cluster, &config);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    chat_server_in(dir, &flags).await
}

/// A node as the `tidings serve` binary on the cluster, ready.
async fn node_process(cluster: &NatsCluster, secret: Option<&Path>) -> Chat<Process> {
    let dir = data_dir(secret);
    let config = config_beside(&dir, CLUSTER_TOML);
    let flags = node_flags(cluster, &config);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    chat_process_in(dir, &flags).await
}

/// A node as the `tidings serve` binary on the cluster, with a Kafka listener, ready.
async fn kafka_node(cluster: &NatsCluster, secret: Option<&Path>) -> Chat<Process> {
    let dir = data_dir(secret);
    let config = config_beside(&dir, CLUSTER_TOML);
    let mut flags = node_flags(cluster, &config);
    flags.extend(["--kafka-listen".to_owned(), "127.0.0.1:0".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    chat_process_in(dir, &flags).await
}

/// Sends `contents` one after the other as `user` through `chat`'s node, each answered 202 (a
/// future of its own, to run beside a reader).
fn send_all<S: TestServer>(
    chat: &Chat<S>,
    user: &str,
    conversation: &str,
    contents: Vec<String>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let url = format!(
        "{}/api/conversations/{conversation}/messages",
        chat.server.base()
    );
    let token = chat.token(user);
    async move {
        let http = reqwest::Client::new();
        for content in contents {
            let response = http
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({ "content": content }))
                .send()
                .await
                .expect("send");
            assert_eq!(response.status(), 202, "send {content} to {url}");
        }
    }
}

/// The JSON body of a 202; panics with the answer otherwise.
async fn accepted(response: impl std::future::Future<Output = reqwest::Response>) -> Value {
    let response = response.await;
    let status = response.status();
    let body: Value = response.json().await.expect("JSON answer");
    assert_eq!(status, 202, "send answered {body}");
    body
}

/// Waits until `user` sees conversation `id` on `chat`'s node (its store applied the create).
async fn wait_conversation<S: TestServer>(chat: &Chat<S>, user: &str, id: &str) {
    let path = format!("/api/conversations/{id}");
    chat.wait_for(user, &path, Duration::from_secs(10), |status, _| {
        status == 200
    })
    .await;
}

/// How long a change made through one node may take to show on another.
const WAIT_STATE: Duration = Duration::from_secs(20);

/// Every message of a conversation as `(seq, content)`, paging the history.
async fn history_of<S: TestServer>(chat: &Chat<S>, user: &str, id: &str) -> Vec<(u64, String)> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = chat
            .history(user, id, &format!("?limit=200&after={after}"))
            .await;
        let items = page["items"].as_array().expect("items").clone();
        if items.is_empty() {
            return all;
        }
        for item in &items {
            let seq = item["seq"].as_u64().expect("seq");
            all.push((seq, item["content"].as_str().expect("content").to_owned()));
            after = after.max(seq);
        }
    }
}

/// Waits until conversation `id` holds `count` messages on `chat`'s node.
async fn wait_history<S: TestServer>(
    chat: &Chat<S>,
    user: &str,
    id: &str,
    count: usize,
) -> Vec<(u64, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let history = history_of(chat, user, id).await;
        if history.len() >= count {
            return history;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} messages on {} after 30 s",
            history.len(),
            chat.server.base()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_messages_through_node_a_reach_a_session_on_node_b_in_order() {
    const COUNT: u64 = 2_000;
    let _serial = SERIAL.lock().await;
    let cluster = NatsCluster::start(3);
    let a = node(&cluster, None).await;
    let b = node(&cluster, Some(a.dir.path())).await;
    a.conversation("ann", "c", &["bob"]).await;
    wait_conversation(&b, "bob", "c").await;
    let mut bob = connect(&b, "bob").await;

    let sent: Vec<String> = (1..=COUNT).map(|n| format!("m{n}")).collect();
    let sender = tokio::spawn(send_all(&a, "ann", "c", sent.clone()));
    let frames = bob
        .until(|f| f["type"] == "message" && f["message"]["seq"] == COUNT)
        .await;
    sender.await.expect("sender");
    let seqs = message_seqs(&frames);
    let expected: Vec<u64> = (1..=COUNT).collect();
    assert_eq!(seqs, expected, "node B delivered every seq once, in order");
    let contents: Vec<String> = frames
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| {
            f["message"]["content"]
                .as_str()
                .expect("content")
                .to_owned()
        })
        .collect();
    assert_eq!(contents, sent, "in the order node A accepted them");

    // Node B keeps the tail it delivered from in memory, and says how much on /metrics.
    let cached: f64 = b
        .metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix("tidings_log_cached_bytes "))
        .expect("tidings_log_cached_bytes on /metrics")
        .parse()
        .expect("a number");
    assert!(cached > 0.0, "node B caches the records it read: {cached}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_senders_on_three_nodes_get_dense_seqs_and_a_retry_elsewhere_is_stored_once() {
    const EACH: usize = 150;
    const RETRIED: usize = 20;
    let _serial = SERIAL.lock().await;
    let cluster = NatsCluster::start(3);
    let a = node(&cluster, None).await;
    let b = node(&cluster, Some(a.dir.path())).await;
    let c = node(&cluster, Some(a.dir.path())).await;
    a.conversation("ann", "room", &["bob", "cid"]).await;
    wait_conversation(&b, "bob", "room").await;
    wait_conversation(&c, "cid", "room").await;

    let senders = [("ann", &a), ("bob", &b), ("cid", &c)].map(|(user, chat)| {
        let contents = (0..EACH).map(|n| format!("{user}-{n}")).collect();
        tokio::spawn(send_all(chat, user, "room", contents))
    });
    for sender in senders {
        sender.await.expect("sender");
    }

    // The same send through two nodes at once (a client retrying elsewhere before its first
    // attempt answered): neither store has it yet, so only the idempotency key in the shared
    // log keeps it to one message, and both answers carry its one id.
    for key in 0..RETRIED {
        let body =
            json!({ "content": format!("once-{key}"), "clientMessageId": format!("k-{key}") });
        let path = "/api/conversations/room/messages";
        let (first, again) = tokio::join!(
            accepted(a.post("ann", path, body.clone())),
            accepted(b.post("ann", path, body.clone()))
        );
        assert_eq!(
            first["id"], again["id"],
            "both attempts of k-{key} answer one id"
        );
    }

    let total = 3 * EACH + RETRIED;
    let histories = [
        wait_history(&a, "ann", "room", total).await,
        wait_history(&b, "bob", "room", total).await,
        wait_history(&c, "cid", "room", total).await,
    ];
    let seqs: Vec<u64> = histories[0].iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=total as u64).collect::<Vec<_>>(),
        "seq 1..N with no gap or duplicate"
    );
    let contents: BTreeSet<&str> = histories[0].iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(contents.len(), total, "every send stored once");
    assert_eq!(histories[0], histories[1], "node B agrees with node A");
    assert_eq!(histories[0], histories[2], "node C agrees with node A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_later_is_ready_with_the_same_history() {
    let _serial = SERIAL.lock().await;
    let cluster = NatsCluster::start(3);
    let a = node(&cluster, None).await;
    a.conversation("ann", "c", &["bob"]).await;
    for n in 1..=300 {
        a.send("ann", "c", &format!("m{n}")).await;
    }
    let edit_target = a.send("ann", "c", "to be edited").await;
    let response = a
        .call(
            Some("ann"),
            reqwest::Method::PATCH,
            &format!(
                "/api/conversations/c/messages/{}",
                edit_target["id"].as_str().expect("id")
            ),
            Some(json!({ "content": "edited" })),
        )
        .await;
    assert!(
        response.status().is_success(),
        "edit: {}",
        response.status()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let old = loop {
        let old = wait_history(&a, "bob", "c", 301).await;
        if old.last().is_some_and(|(_, c)| c == "edited") {
            break old;
        }
        assert!(Instant::now() < deadline, "the edit not applied on node A");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // `node` returns once /readyz says ready: the new node must hold everything by then.
    let late = node(&cluster, Some(a.dir.path())).await;
    let new = history_of(&late, "bob", "c").await;
    assert_eq!(new, old, "the new node's history equals the old node's");
    assert_eq!(new.last().map(|(_, c)| c.as_str()), Some("edited"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_client_resumes_on_another_node_with_no_gap() {
    let _serial = SERIAL.lock().await;
    let cluster = NatsCluster::start(3);
    let mut a = node_process(&cluster, None).await;
    let b = node(&cluster, Some(a.dir.path())).await;
    a.conversation("ann", "c", &["bob"]).await;
    wait_conversation(&b, "bob", "c").await;
    let mut bob = connect(&a, "bob").await;
    for n in 1..=20 {
        b.send("ann", "c", &format!("m{n}")).await;
    }
    let seen = message_seqs(&bob.until(|f| f["message"]["seq"] == 20).await);
    assert_eq!(seen, (1..=20).collect::<Vec<u64>>());

    a.server.child.kill().expect("SIGKILL node A");
    a.server.child.wait().expect("reap node A");
    // Messages sent while bob is away.
    for n in 21..=40 {
        b.send("ann", "c", &format!("m{n}")).await;
    }
    let mut bob = connect(&b, "bob").await;
    bob.send(json!({"type": "resume", "ref": "r", "conversations": {"c": 20}}))
        .await;
    for n in 41..=50 {
        b.send("ann", "c", &format!("m{n}")).await;
    }
    let frames = bob
        .until(|f| f["type"] == "message" && f["message"]["seq"] == 50)
        .await;
    assert_eq!(
        message_seqs(&frames),
        (21..=50).collect::<Vec<u64>>(),
        "resumed on node B: the missed messages, then the live ones, each once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_a_send_gets_503_never_202_and_works_again_after() {
    let _serial = SERIAL.lock().await;
    let mut cluster = NatsCluster::start(3);
    let a = node(&cluster, None).await;
    a.conversation("ann", "c", &["bob"]).await;
    a.send("ann", "c", "before").await;

    cluster.stop(1);
    cluster.stop(2);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = a
            .post(
                "ann",
                "/api/conversations/c/messages",
                json!({"content": "lost?"}),
            )
            .await;
        let status = response.status().as_u16();
        assert_ne!(
            status, 202,
            "a send without a quorum must not be acknowledged"
        );
        if status == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 503 within 30 s (last {status})"
        );
    }

    cluster.restart(1);
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let response = a
            .post(
                "ann",
                "/api/conversations/c/messages",
                json!({"content": "after"}),
            )
            .await;
        if response.status() == 202 {
            break response.json::<Value>().await.expect("ack");
        }
        assert!(
            Instant::now() < deadline,
            "sends still refused 60 s after the quorum came back: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(after["id"].is_string());
    let history = wait_history(&a, "ann", "c", 2).await;
    // A refused send may still land later (its ack was what timed out): the client was told
    // 503, not 202, and may retry; what matters is that seqs stay dense.
    let contents: Vec<&str> = history.iter().map(|(_, c)| c.as_str()).collect();
    let seqs: Vec<u64> = history.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=history.len() as u64).collect::<Vec<_>>());
    assert_eq!(contents.first(), Some(&"before"));
    assert_eq!(contents.last(), Some(&"after"));
}

/// Until the `notify` group has handled every event of `messages.sent` (lag 0 everywhere).
async fn wait_notify_drained<S: TestServer>(bus: &Bus<S>) {
    wait_group_caught_up(bus, "notify", "messages.sent", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_recipient_gets_one_notification_per_message_whichever_node_took_it() {
    const SENDS: usize = 30;
    let _serial = SERIAL.lock().await;
    let cluster = NatsCluster::start(3);
    let a = Bus::of(node(&cluster, None).await);
    let b = node(&cluster, Some(a.chat.dir.path())).await;
    a.chat.conversation("ann", "c", &["bob", "cid"]).await;
    wait_conversation(&b, "ann", "c").await;
    for n in 0..SENDS {
        let through = if n % 2 == 0 { &a.chat } else { &b };
        through.send("ann", "c", &format!("m{n}")).await;
    }
    wait_history(&a.chat, "ann", "c", SENDS).await;
    wait_records(&a, "message.new", 2 * SENDS, Duration::from_secs(30)).await;
    wait_notify_drained(&a).await;
    let records = read_topic(&a, "message.new").await;
    let pairs: BTreeSet<(String, String)> = records
        .iter()
        .map(|r| {
            let value = &r["value"];
            (
                value["messageId"].as_str().expect("messageId").to_owned(),
                value["recipientId"]
                    .as_str()
                    .expect("recipientId")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(pairs.len(), 2 * SENDS, "bob and cid, for every message");
    assert_eq!(
        records.len(),
        2 * SENDS,
        "each notification once, not once per node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_published_through_one_node_is_read_and_committed_through_another_at_once() {
    const RECORDS: u64 = 300;
    let _serial = SERIAL.lock().await;
    let cluster = NatsCluster::start(3);
    let a = Bus::of(node(&cluster, None).await);
    let b = Bus::of(node(&cluster, Some(a.chat.dir.path())).await);
    a.create("hop", 1).await;
    wait_topic(&b, "hop").await;
    let joined = b
        .post(
            CONSUMER,
            "/api/groups/hop/members",
            json!({"topics": ["hop"]}),
        )
        .await;
    assert_eq!(joined.status(), 200, "join on b");
    let joined: Value = joined.json().await.expect("join JSON");
    let member = joined["memberId"].as_str().expect("memberId");
    // Two records a time, the second read at once: past b's copy while neither reached it.
    for i in 0..RECORDS {
        let pair = json!([{"value": {"i": i, "of": 0}}, {"value": {"i": i, "of": 1}}]);
        let offsets = a.publish("hop", pair).await;
        let offset = offsets[1]["offset"].as_u64().expect("offset");

        let path = format!("/api/topics/hop/partitions/0/records?offset={offset}&waitMs=5000");
        let read = b.get(CONSUMER, &path).await;
        assert_eq!(read.status(), 200, "record {i} at {offset}, read on b");
        let page: Value = read.json().await.expect("page JSON");
        assert_eq!(page["records"][0]["offset"], offset, "{page}");
        assert_eq!(
            page["records"][0]["value"],
            json!({"i": i, "of": 1}),
            "{page}"
        );

        let past_it = json!([{"topic": "hop", "partition": 0, "offset": offset + 1}]);
        let commit = json!({"memberId": member, "offsets": past_it});
        let committed = b.post(CONSUMER, "/api/groups/hop/offsets", commit).await;
        assert_eq!(committed.status(), 204, "commit past {offset} on b");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_typing_reach_a_session_on_another_node() {
    let _serial = SERIAL.lock().await;
    let cluster = NatsCluster::start(3);
    let a = node(&cluster, None).await;
    let b = node(&cluster, Some(a.dir.path())).await;
    a.conversation("ann", "c", &["bob"]).await;
    wait_conversation(&b, "bob", "c").await;
    let mut bob = connect(&b, "bob").await;
    let mut ann = connect(&a, "ann").await;

    let online = bob.next_of("presence").await;
    assert_eq!(
        online,
        json!({"type": "presence", "userId": "ann", "status": "online"}),
        "bob, on node B, hears ann come online on node A"
    );
    let told = ann.next_of("presence").await;
    assert_eq!(
        (told["userId"].clone(), told["status"].clone()),
        (json!("bob"), json!("online")),
        "ann's new session on node A is told bob is online on node B"
    );
    ann.send(json!({"type": "typing", "conversationId": "c", "typing": true}))
        .await;
    let typing = bob.next_of("typing").await;
    assert_eq!(
        typing,
        json!({"type": "typing", "conversationId": "c", "userId": "ann", "typing": true})
    );
    ann.close().await;
    let offline = bob
        .until(|f| f["type"] == "presence" && f["userId"] == "ann")
        .await;
    let offline = offline.last().expect("a presence frame");
    assert_eq!(offline["status"], "offline");
    assert!(offline["lastSeen"]
        .as_str()
        .expect("lastSeen")
        .ends_with('Z'));
}

/// A kafkajs `reader` of `group` on `topic` bootstrapped to these nodes (the first first).
fn kafka_reader(nodes: &[&Bus<Process>], group: &str, topic: &str) -> Client {
    let brokers: Vec<String> = nodes
        .iter()
        .map(|bus| bus.chat.server.kafka.clone().expect("kafka listening"))
        .collect();
    Client::start(
        "kafka_clients.mjs",
        &json!({"scenario": "reader", "brokers": brokers, "topic": topic, "group": group}),
    )
}

/// The port of `bus`'s node's Kafka listener.
fn kafka_port(bus: &Bus<Process>) -> i32 {
    let address = bus.chat.server.kafka.as_deref().expect("kafka listening");
    let port = address.rsplit_once(':').expect("HOST:PORT").1;
    port.parse().expect("a port")
}

/// Publishes `keys` (one record each, value `{"n": key}`) to `topic` through `bus`'s node.
async fn publish_numbered(bus: &Bus<Process>, topic: &str, keys: std::ops::Range<usize>) {
    let records: Vec<Value> = keys
        .map(|n| json!({"key": format!("k{n}"), "value": {"n": n}}))
        .collect();
    for chunk in records.chunks(100) {
        bus.publish(topic, Value::Array(chunk.to_vec())).await;
    }
}

/// What the readers printed so far: each one's latest assignment and records.
#[derive(Default)]
struct Reading {
    owned: [Vec<u64>; 2],
    got: [Vec<(u64, u64)>; 2],
    /// Every line that was neither an assignment nor a record (kafkajs restarts), and how
    /// many assignments there were: said when an assertion fails.
    other: Vec<Value>,
    assignments: usize,
}

impl Reading {
    fn take(&mut self, reader: usize, line: &Value) {
        if let Some(owned) = line["owned"].as_array() {
            self.owned[reader] = owned.iter().filter_map(Value::as_u64).collect();
        } else if let Some(got) = line["got"].as_array() {
            let at = |i: usize| {
                got.get(i)
                    .and_then(Value::as_u64)
                    .expect("partition, offset")
            };
            self.got[reader].push((at(0), at(1)));
        }
    }

    /// Whether both readers own partitions, none twice, all of them between the two.
    fn split_over(&self, partitions: u64) -> bool {
        let mut all: Vec<u64> = self.owned.concat();
        all.sort_unstable();
        self.owned.iter().all(|o| !o.is_empty()) && all == (0..partitions).collect::<Vec<_>>()
    }

    /// Every one of `records` records was read, none twice.
    fn assert_each_read_once(&self, records: usize) {
        let all: Vec<(u64, u64)> = self.got.concat();
        let distinct: BTreeSet<(u64, u64)> = all.iter().copied().collect();
        assert_eq!(
            (distinct.len(), all.len()),
            (records, records),
            "every record read once; {} assignments in all, and {:?}",
            self.assignments,
            self.other
        );
    }

    fn records(&self) -> usize {
        self.got.iter().map(Vec::len).sum()
    }
}

/// Reads the readers' lines until `done` holds (each `next` has the script timeout).
/// How long the Kafka readers of a test may take to reach each point.
const READ_PATIENCE: Duration = Duration::from_secs(150);

async fn read_until(
    readers: &mut [Client; 2],
    reading: &mut Reading,
    done: impl Fn(&Reading) -> bool,
) {
    // Bounded as a whole, not per line: after a node's SIGKILL both kafkajs readers may be
    // silent for a minute under load while they give up on the dead node and rejoin.
    let deadline = Instant::now() + READ_PATIENCE;
    while !done(reading) {
        let patience = deadline.saturating_duration_since(Instant::now());
        let [first, second] = readers;
        let (reader, line) = tokio::select! {
            line = first.next_within(patience) => (0, line),
            line = second.next_within(patience) => (1, line),
        };
        let line =
            line.unwrap_or_else(|| panic!("the readers did not get there in {READ_PATIENCE:?}"));
        reading.take(reader, &line);
    }
}

/// Until `group` has a lag of 0 on every partition of `topic` it committed on (on `partitions`
/// of them when given), as `bus`'s node shows it over HTTP.
async fn wait_group_caught_up<S: TestServer>(
    bus: &Bus<S>,
    group: &str,
    topic: &str,
    partitions: Option<usize>,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view: Value = bus
            .get(ADMIN, &format!("/api/groups/{group}"))
            .await
            .json()
            .await
            .expect("group JSON");
        let lags: Vec<Value> = view["offsets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["topic"] == topic)
            .flat_map(|t| t["partitions"].as_array().cloned().unwrap_or_default())
            .collect();
        let all_there = partitions.is_none_or(|n| lags.len() == n);
        if all_there && lags.iter().all(|p| p["lag"] == 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} still lags on {topic} after 30 s: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_group_with_members_on_two_nodes_reads_every_record_once() {
    const PARTITIONS: u64 = 4;
    const RECORDS: usize = 400;
    let _serial = SERIAL.lock().await;
    let cluster = NatsCluster::start(3);
    let a = Bus::of(kafka_node(&cluster, None).await);
    let b = Bus::of(kafka_node(&cluster, Some(a.chat.dir.path())).await);
    a.create("jobs", PARTITIONS as u32).await;
    wait_topic(&b, "jobs").await;
    let mut readers = [
        kafka_reader(&[&a], "workers", "jobs"),
        kafka_reader(&[&b], "workers", "jobs"),
    ];
    let mut reading = Reading::default();
    read_until(&mut readers, &mut reading, |r| r.split_over(PARTITIONS)).await;
    let assigned = reading.owned.clone();

    publish_numbered(&b, "jobs", 0..RECORDS).await;
    read_until(&mut readers, &mut reading, |r| r.records() >= RECORDS).await;
    reading.assert_each_read_once(RECORDS);
    for (reader, got) in reading.got.iter().enumerate() {
        assert!(!got.is_empty(), "reader {reader} read records");
        assert!(
            got.iter().all(|(p, _)| assigned[reader].contains(p)),
            "reader {reader} read only its own partitions {:?}",
            assigned[reader]
        );
    }
    stop_readers(readers).await;
    wait_group_caught_up(&a, "workers", "jobs", Some(PARTITIONS as usize)).await;
    wait_group_caught_up(&b, "workers", "jobs", Some(PARTITIONS as usize)).await;
}

/// librdkafka (confluent-kafka) on a cluster: an idempotent, lz4, acks=all producer and a
/// two-member group, all bootstrapped to both nodes (Metadata names each node the leader of
/// every partition, so the clients write and read through whichever node they ask). Each record
/// is read once, and both nodes' logs hold each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_producer_and_group_on_two_nodes_read_each_record_once() {
    const COUNT: u64 = 2_000;
    let _serial = SERIAL.lock().await;
    let cluster = NatsCluster::start(3);
    let a = Bus::of(kafka_node(&cluster, None).await);
    let b = Bus::of(kafka_node(&cluster, Some(a.chat.dir.path())).await);
    a.create("telemetry", 4).await;
    wait_topic(&b, "telemetry").await;
    let brokers: Vec<String> = [&b, &a]
        .iter()
        .map(|bus| bus.chat.server.kafka.clone().expect("kafka listening"))
        .collect();
    let out = common::clients::run_python(
        "kafka_librdkafka.py",
        &json!({"scenario": "group", "broker": brokers.join(","), "topic": "telemetry",
                "group": "readers", "count": COUNT}),
    )
    .await;
    assert_eq!(out["delivery_errors"], json!([]), "{out}");
    assert_eq!(out["read"], COUNT, "{out}");
    assert_eq!(out["duplicates"], 0, "each record read exactly once: {out}");
    let per_member = out["per_member"].as_array().expect("per member");
    assert!(
        per_member.iter().all(|n| n.as_u64() > Some(0)),
        "both members read: {out}"
    );
    for bus in [&a, &b] {
        wait_stored(bus, "telemetry", COUNT).await;
        wait_group_caught_up(bus, "readers", "telemetry", Some(4)).await;
    }
}

/// Until `bus`'s node holds `count` records of `topic`, never more: a node's view of a
/// partition follows its stream and may trail it for a moment (a follower whose consumer went
/// quiet is replaced after an idle second), but no record is ever stored twice.
async fn wait_stored<S: TestServer>(bus: &Bus<S>, topic: &str, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let view: Value = bus
            .get(ADMIN, &format!("/api/topics/{topic}"))
            .await
            .json()
            .await
            .expect("topic JSON");
        let stored: u64 = view["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .map(|p| p["high"].as_u64().expect("high") - p["low"].as_u64().expect("low"))
            .sum();
        assert!(stored <= count, "no record stored twice: {view}");
        if stored == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{stored} of {count} records after 10 s: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Until `bus`'s node knows `topic`.
async fn wait_topic<S: TestServer>(bus: &Bus<S>, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while bus
        .get(ADMIN, &format!("/api/topics/{topic}"))
        .await
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "{topic} not known after 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Tells both readers to stop and waits until they left the group and exited.
async fn stop_readers(mut readers: [Client; 2]) {
    for reader in &mut readers {
        reader.say(&json!("stop")).await;
        while reader.next().await["stopped"] != true {}
    }
    let [first, second] = readers;
    first.finish().await;
    second.finish().await;
}

/// The node coordinating a Kafka group is SIGKILLed: its lease expires, the members (each
/// bootstrapped to both nodes) find the coordinator on the live node and rejoin, and from the
/// committed offsets read what is published after that: nothing lost, nothing read twice.
/// (Records read but not committed while the group had no coordinator would be read again
/// after the rejoin, at least once as in Kafka: so the test publishes once the group re-formed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_group_goes_on_when_its_coordinator_node_is_killed() {
    const PARTITIONS: u64 = 4;
    const RECORDS: usize = 200;
    let _serial = SERIAL.lock().await;
    let cluster = NatsCluster::start(3);
    let mut a = Bus::of(kafka_node(&cluster, None).await);
    let b = Bus::of(kafka_node(&cluster, Some(a.chat.dir.path())).await);
    a.create("jobs", PARTITIONS as u32).await;
    wait_topic(&b, "jobs").await;
    // Node A takes the group's lease (the first node asked for a free one does), and both
    // nodes name it: the clients, whichever node they ask, join the group there.
    let a_port = kafka_port(&a);
    let mut on_a = RawKafka::connect(a.chat.server.kafka.as_deref().expect("kafka")).await;
    assert_eq!(
        on_a.find_coordinator("workers").await.map(|c| c.1),
        Ok(a_port)
    );
    let mut on_b = RawKafka::connect(b.chat.server.kafka.as_deref().expect("kafka")).await;
    assert_eq!(
        on_b.find_coordinator("workers").await.map(|c| c.1),
        Ok(a_port)
    );
    let mut first = kafka_reader(&[&a, &b], "workers", "jobs");
    let mut reading = Reading::default();
    while reading.owned[0].len() != PARTITIONS as usize {
        reading.take(0, &first.next().await);
    }
    let mut readers = [first, kafka_reader(&[&b, &a], "workers", "jobs")];
    read_until(&mut readers, &mut reading, |r| r.split_over(PARTITIONS)).await;
    publish_numbered(&b, "jobs", 0..RECORDS / 2).await;
    read_until(&mut readers, &mut reading, |r| r.records() >= RECORDS / 2).await;
    wait_group_caught_up(&b, "workers", "jobs", Some(PARTITIONS as usize)).await;

    a.chat.server.child.kill().expect("SIGKILL node A");
    let _ = a.chat.server.child.wait();
    let killed = Instant::now();
    reading.owned = Default::default();
    read_until(&mut readers, &mut reading, |r| r.split_over(PARTITIONS)).await;
    eprintln!(
        "the group re-formed on node B {:?} after node A was killed",
        killed.elapsed()
    );
    publish_numbered(&b, "jobs", RECORDS / 2..RECORDS).await;
    read_until(&mut readers, &mut reading, |r| r.records() >= RECORDS).await;
    reading.assert_each_read_once(RECORDS);
    stop_readers(readers).await;
    wait_group_caught_up(&b, "workers", "jobs", Some(PARTITIONS as usize)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_state_and_membership_hold_whichever_node_took_the_change() {
    let _serial = SERIAL.lock().await;
    let cluster = NatsCluster::start(3);
    let a = node(&cluster, None).await;
    let b = node(&cluster, Some(a.dir.path())).await;
    a.conversation("ann", "c", &["bob"]).await;
    for n in 1..=3 {
        a.send("ann", "c", &format!("m{n}")).await;
    }
    wait_history(&b, "bob", "c", 3).await;

    // Bob reads up to seq 2 through node B: node A shows it, and the one message left unread.
    let read = b
        .post("bob", "/api/conversations/c/read", json!({"seq": 2}))
        .await;
    assert_eq!(read.status(), 204);
    let on_a = a
        .wait_for("bob", "/api/conversations/c", WAIT_STATE, |_, c| {
            c["lastReadSeq"] == 2
        })
        .await;
    assert_eq!(on_a["unreadCount"], 1, "{on_a}");
    // Read state only moves forward, whichever node the older mark reaches.
    let back = a
        .post("bob", "/api/conversations/c/read", json!({"seq": 1}))
        .await;
    assert_eq!(back.status(), 204);
    b.send("ann", "c", "m4").await;
    let on_b = b
        .wait_for("bob", "/api/conversations/c", WAIT_STATE, |_, c| {
            c["unreadCount"] == 2
        })
        .await;
    assert_eq!(on_b["lastReadSeq"], 2, "{on_b}");

    // Cid, added through node B, reads the history on node A.
    let added = b
        .post(
            "ann",
            "/api/conversations/c/participants",
            json!({"userId": "cid"}),
        )
        .await;
    assert_eq!(added.status(), 204);
    wait_conversation(&a, "cid", "c").await;
    assert_eq!(wait_history(&a, "cid", "c", 4).await.len(), 4);

    // Bob, removed through node A, can neither read nor send through node B.
    let removed = a
        .call(
            Some("ann"),
            reqwest::Method::DELETE,
            "/api/conversations/c/participants/bob",
            None,
        )
        .await;
    assert_eq!(removed.status(), 204);
    b.wait_for(
        "bob",
        "/api/conversations/c/messages",
        WAIT_STATE,
        |status, _| status == 403 || status == 404,
    )
    .await;
    let refused = b
        .post(
            "bob",
            "/api/conversations/c/messages",
            json!({"content": "still here?"}),
        )
        .await
        .status()
        .as_u16();
    assert!(refused == 403 || refused == 404, "bob's send: {refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_nats_server_is_a_partition_writes_come_back_without_it_and_nothing_acked_is_lost()
{
    let _serial = SERIAL.lock().await;
    let cluster = NatsCluster::start(3);
    let a = node(&cluster, None).await;
    let b = node(&cluster, Some(a.dir.path())).await;
    a.conversation("ann", "c", &["bob"]).await;
    wait_conversation(&b, "bob", "c").await;

    // Ann sends through A and bob through B, one send at a time each, until told to stop;
    // each keeps what was acknowledged (202) and counts the refusals.
    let started = Instant::now();
    let stop = tokio_util::sync::CancellationToken::new();
    let acked_after = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<(String, Instant)>::new()));
    let senders = [("ann", &a), ("bob", &b)].map(|(user, chat)| {
        let url = format!("{}/api/conversations/c/messages", chat.server.base());
        let token = chat.token(user);
        let stop = stop.clone();
        let acked = acked_after.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            let mut refused = 0u64;
            let mut n = 0u64;
            while !stop.is_cancelled() {
                n += 1;
                let content = format!("{user}-{n}");
                let answer = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "content": content }))
                    .send()
                    .await;
                match answer.map(|r| r.status().as_u16()) {
                    Ok(202) => acked.lock().push((content, Instant::now())),
                    Ok(503) | Err(_) => {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(other) => panic!("a send got {other}"),
                }
            }
            refused
        })
    });
    let acks_by = |at: Instant| acked_after.lock().iter().filter(|(_, t)| *t > at).count();
    let wait_acks = |from: Instant, count: usize, what: &'static str| {
        let acks_by = &acks_by;
        async move {
            let deadline = Instant::now() + Duration::from_secs(45);
            while acks_by(from) < count {
                assert!(
                    Instant::now() < deadline,
                    "{what}: fewer than {count} acks in 45 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_acks(started, 20, "before the partition").await;

    // A server a Tidings node is connected to freezes (SIGSTOP): no TCP reset, as behind a
    // partition. The streams it led elect new leaders, and the node moves to another server:
    // writes come back while it is still cut off.
    let cut_off = cluster.node_serving("tidings");
    cluster.pause(cut_off);
    let frozen = Instant::now();
    wait_acks(frozen, 40, "while a node's server is cut off").await;
    eprintln!("writes back {:?} after the freeze", frozen.elapsed());
    cluster.resume(cut_off);
    let resumed = Instant::now();
    wait_acks(resumed, 20, "after n0 came back").await;
    stop.cancel();
    let mut refusals = 0;
    for sender in senders {
        refusals += sender.await.expect("sender");
    }
    eprintln!("sends refused during the partition: {refusals}");

    // Every acknowledged send is in both nodes' histories, once, with dense seqs; the two
    // histories are the same.
    let acked: BTreeSet<String> = acked_after.lock().iter().map(|(c, _)| c.clone()).collect();
    let on_a = wait_history(&a, "ann", "c", acked.len()).await;
    let on_b = wait_history(&b, "bob", "c", on_a.len()).await;
    assert_eq!(on_a, on_b, "both nodes hold the same history");
    let seqs: Vec<u64> = on_a.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=on_a.len() as u64).collect::<Vec<_>>(),
        "dense seqs"
    );
    let stored: Vec<&String> = on_a.iter().map(|(_, c)| c).collect();
    let distinct: BTreeSet<&String> = stored.iter().copied().collect();
    assert_eq!(distinct.len(), stored.len(), "no message stored twice");
    let missing: Vec<&String> = acked.iter().filter(|c| !distinct.contains(c)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}
