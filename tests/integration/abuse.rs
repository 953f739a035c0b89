//! The server under a hostile client: every hole the abuse review found stays closed. Each test
//! tries one attack as a client with a valid token would (or an operator tricked into helping)
//! and checks it is refused with problem+json and changes nothing:
//! - amplification: conversations are capped in participants, a notification carries a bounded
//!   preview, a send to a large conversation costs more of the write budget, mentions are bounded;
//! - forged chat commands: nobody publishes to the server's own topics, and a dead-letter replay
//!   sends only to the topic its dead letters came from;
//! - hijacked consumer groups: nobody joins or commits the server's workers' groups, and a member
//!   id works only for the user that joined with it;
//! - disk exhaustion by topics: topics and partitions are capped, and a refused create leaves
//!   nothing behind;
//! - unlimited writes: every kind of write takes from the same per-user budget;
//! - tokens that are not valid yet, and a data directory other users can read.
//!
//! Idle connections and HTTP-layer errors are in `http_limits.rs`, deep JSON in
//! `decoders_fuzz.rs`, storage faults in `faults.rs`.

use crate::common;

use std::time::{Duration, Instant};

use common::bus::{Bus, ADMIN, BOTH, CONSUMER, PUBLISHER};
use common::chat::{chat_server, chat_server_in, problem, Chat};
use common::notify::{read_topic, ConfigFile};
use common::server::{sigterm, wait_exit};
use common::ws::connect;
use reqwest::Method;
use serde_json::{json, Value};

/// A server whose configuration file is `toml` (plus `extra` flags), on a fresh directory.
async fn server_with(toml: &str, extra: &[&str]) -> (Chat, ConfigFile) {
    let config = ConfigFile::new(toml);
    let mut args = config.args("never");
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let chat = chat_server_in(tempfile::tempdir().expect("temp dir"), &args).await;
    (chat, config)
}

fn users(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

// ----- 1. amplification ----------------------------------------------------------------------

#[tokio::test]
async fn a_conversation_cannot_grow_past_the_participant_limit() {
    let (chat, _config) = server_with("[limits]\nmaxParticipants = 5\n", &[]).await;
    let too_many = json!({"id": "big", "participants": users("u", 5)});
    let refused = problem(chat.post("ann", "/api/conversations", too_many).await, 400).await;
    assert!(
        refused["detail"].as_str().unwrap().contains("at most 5"),
        "{refused}"
    );
    assert_eq!(
        chat.get("ann", "/api/conversations/big").await.status(),
        404,
        "a refused create stores nothing"
    );

    // Duplicates count once, however many times they are listed (and cost linear time).
    let mut repeated = vec!["bob".to_owned(); 50_000];
    repeated.extend(users("u", 3));
    let created = chat
        .post(
            "ann",
            "/api/conversations",
            json!({"id": "full", "participants": repeated}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let conversation: Value = created.json().await.unwrap();
    assert_eq!(conversation["participants"].as_array().unwrap().len(), 5);

    let add = json!({"userId": "one-too-many"});
    let path = "/api/conversations/full/participants";
    let refused = problem(chat.post("ann", path, add).await, 409).await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("5 participants"),
        "{refused}"
    );
    let now = chat.get_json("ann", "/api/conversations/full").await;
    assert_eq!(now["participants"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn the_default_participant_limit_holds_and_notifications_carry_a_bounded_preview() {
    let chat = chat_server(&["--rate-limit", "0"]).await;
    let over = json!({"participants": users("u", 1000)});
    problem(chat.post("ann", "/api/conversations", over).await, 400).await;

    let members = users("u", 999);
    let create = json!({"id": "hall", "participants": members});
    assert_eq!(
        chat.post("ann", "/api/conversations", create)
            .await
            .status(),
        201
    );
    let content = "é".repeat(8 * 1024); // 16 KiB of two-byte characters
    let ack = chat.send("ann", "hall", &content).await;

    let bus = Bus {
        auth: common::chat::authenticator(chat.dir.path()),
        http: reqwest::Client::new(),
        chat,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let notifications = loop {
        let records = read_topic(&bus, "message.new").await;
        if records.len() >= 999 {
            break records;
        }
        assert!(Instant::now() < deadline, "{} notifications", records.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(notifications.len(), 999, "one per offline participant");
    for record in &notifications {
        let preview = record["value"]["messageContent"].as_str().unwrap();
        assert!(preview.len() <= 256, "{} bytes", preview.len());
        assert!(content.starts_with(preview), "a prefix of the message");
        assert_eq!(record["value"]["messageId"], ack["id"]);
    }
}

/// A create and a send reaching 1,000 users each take 10 tokens, a whole burst. No wait for
/// a refill: each spends a full bucket of its own (the creator's, then a member's), and the
/// write right after is refused; that a bucket refills after the `Retry-After` it names is
/// proven on a paused clock in `api::rate_limit`.
#[tokio::test]
async fn a_send_to_a_large_conversation_costs_more_of_the_write_budget() {
    // 5 tokens/s, burst 10. A 2-member send costs 1; a 1,000-member send costs 10.
    let chat = chat_server(&["--rate-limit", "5"]).await;
    let hall = json!({"id": "hall", "participants": users("u", 999)});
    assert_eq!(
        chat.post("ann", "/api/conversations", hall).await.status(),
        201
    );
    let path = "/api/conversations/hall/messages";
    let after_create = chat.post("ann", path, json!({"content": "hi"})).await;
    assert_eq!(
        after_create.headers()["retry-after"],
        "2",
        "a create costs 10 tokens too: the whole burst, back in 2 s at 5/s"
    );
    problem(after_create, 429).await;

    // u0's bucket is full: the send is accepted, and a second one (10 more tokens) is not.
    let sent = chat.post("u0", path, json!({"content": "all hands"})).await;
    assert_eq!(sent.status(), 202);
    let again = chat
        .post("u0", path, json!({"content": "all hands again"}))
        .await;
    let refused = problem(again, 429).await;
    assert!(refused["detail"].as_str().unwrap().contains("5 per second"));
}

#[tokio::test]
async fn mentions_are_bounded_and_must_be_participants() {
    let chat = chat_server(&["--rate-limit", "0"]).await;
    let crowd = users("u", 101);
    let create = json!({"id": "pair", "participants": crowd});
    assert_eq!(
        chat.post("ann", "/api/conversations", create)
            .await
            .status(),
        201
    );
    let path = "/api/conversations/pair/messages";
    let outsider = json!({"content": "hi", "mentions": ["mallory"]});
    problem(chat.post("ann", path, outsider).await, 400).await;
    let flood = json!({"content": "hi", "mentions": crowd});
    problem(chat.post("ann", path, flood).await, 400).await;
    let page = chat.history("ann", "pair", "").await;
    assert_eq!(page["items"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn a_user_flapping_its_connection_does_not_flood_its_contacts_with_presence() {
    let chat = chat_server(&["--rate-limit", "0"]).await;
    chat.conversation("mallory", "pair", &["bob"]).await;
    let mut bob = connect(&chat, "bob").await;
    for _ in 0..20 {
        connect(&chat, "mallory").await.close().await;
    }
    let mut marker = connect(&chat, "mallory").await;
    marker
        .send(json!({"type": "typing", "conversationId": "pair", "typing": true}))
        .await;
    let frames = bob.until(|f| f["type"] == "typing").await;
    let presence = frames.iter().filter(|f| f["type"] == "presence").count();
    assert!(
        presence <= 2,
        "20 reconnects within the grace period show as one online: {frames:?}"
    );
}

// ----- 2. forged chat commands ---------------------------------------------------------------

#[tokio::test]
async fn nobody_publishes_to_the_servers_own_topics() {
    let bus = Bus::start(&[]).await;
    bus.chat.conversation("ann", "c1", &["bob"]).await;
    bus.chat.send("ann", "c1", "hello").await;
    let forged = json!({"records": [{
        "key": "c1",
        "headers": {"tidings-dlq-topic": "messages"},
        "value": {"type": "send", "id": "x", "conversationId": "c1", "senderId": "bob",
                  "senderName": "Bob", "content": "forged", "sentAt": "2024-01-01T00:00:00Z"}
    }]});
    for topic in [
        "message.new.dlq",
        "messages",
        "messages.sent",
        "message.new",
    ] {
        for scopes in [BOTH, ADMIN] {
            let path = format!("/api/topics/{topic}/records");
            let refused = problem(bus.post(scopes, &path, forged.clone()).await, 403).await;
            assert!(
                refused["detail"]
                    .as_str()
                    .unwrap()
                    .contains("written by the server"),
                "{topic}: {refused}"
            );
        }
        for scopes in [BOTH, ADMIN] {
            let path = format!("/api/topics/{topic}");
            problem(bus.delete(scopes, &path).await, 403).await;
        }
    }
    let dlq = bus.get(CONSUMER, "/api/topics/message.new.dlq").await;
    let dlq: Value = dlq.json().await.unwrap();
    assert!(
        dlq["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["high"] == 0),
        "nothing was appended: {dlq}"
    );
    let stored = bus
        .chat
        .wait_messages("ann", "c1", 1, Duration::from_secs(10))
        .await;
    assert_eq!(stored.len(), 1, "only ann's message: {stored:?}");
}

#[tokio::test]
async fn a_dead_letter_replay_sends_only_to_the_topic_the_dead_letters_came_from() {
    let mut bus = Bus::start(&[]).await;
    bus.chat.conversation("ann", "c1", &["bob"]).await;
    bus.chat.send("ann", "c1", "hello").await;
    sigterm(&bus.chat.server);
    assert!(wait_exit(&mut bus.chat.server, Duration::from_secs(20)).success());

    // What a forged dead letter would have been, written straight into the data directory.
    let dir = bus.chat.dir.path().to_owned();
    let log = tidings::log::Log::open(tidings::log::LogConfig::new(&dir)).unwrap();
    let commands_before = commands_in(&log);
    let command = json!({"type": "send", "id": "forged", "conversationId": "c1",
        "senderId": "bob", "senderName": "Bob", "content": "forged",
        "sentAt": "2024-01-01T00:00:00Z"});
    let forged = tidings::log::Record::keyed("c1", command.to_string())
        .with_header("tidings-dlq-topic", "messages");
    let genuine = tidings::log::Record::keyed("bob", r#"{"recipientId":"bob"}"#)
        .with_header("tidings-dlq-topic", "message.new");
    let no_header = tidings::log::Record::keyed("bob", r#"{"recipientId":"bob"}"#);
    log.append("message.new.dlq", vec![forged, genuine, no_header])
        .await
        .unwrap();
    log.shutdown();
    drop(log);

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["dlq", "replay", "--json", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["replayed"], 2, "{report}");
    assert_eq!(report["skipped"], 1, "{report}");
    assert_eq!(report["to"], json!({"message.new": 2}), "{report}");

    let log = tidings::log::Log::open(tidings::log::LogConfig::new(&dir)).unwrap();
    assert_eq!(commands_in(&log), commands_before, "messages untouched");
    log.shutdown();
    drop(log);

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["dlq", "replay", "--topic", "messages", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a dead-letter topic"));
}

/// Records in `messages`, all partitions.
fn commands_in(log: &tidings::log::Log) -> u64 {
    log.describe_topic("messages")
        .unwrap()
        .partitions
        .iter()
        .map(|p| p.high)
        .sum()
}

// ----- 3. hijacked consumer groups -----------------------------------------------------------

#[tokio::test]
async fn nobody_joins_commits_or_resets_the_servers_own_groups() {
    let bus = Bus::start(&[]).await;
    bus.chat.conversation("ann", "c1", &["bob"]).await;
    bus.chat.send("ann", "c1", "hello").await;
    for group in ["notify", "store", "notify.sink.push"] {
        for scopes in [CONSUMER, ADMIN] {
            let join = json!({"topics": ["messages.sent"]});
            let path = format!("/api/groups/{group}/members");
            let refused = problem(bus.post(scopes, &path, join).await, 403).await;
            assert!(
                refused["detail"].as_str().unwrap().contains("server's own"),
                "{refused}"
            );
            let commit = json!({"memberId": "x", "offsets": [
                {"topic": "messages.sent", "partition": 0, "offset": 1}]});
            let path = format!("/api/groups/{group}/offsets");
            problem(bus.post(scopes, &path, commit).await, 403).await;
        }
        let reset = json!({"topic": "messages.sent", "to": "latest"});
        let path = format!("/api/groups/{group}/offsets/reset");
        problem(bus.post(ADMIN, &path, reset).await, 403).await;
    }
    // Describing them is fine (that is how an operator sees their lag), once `notify` has
    // committed its first position.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = bus.get(CONSUMER, "/api/groups/notify").await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 404, "describe notify");
        assert!(Instant::now() < deadline, "notify never committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_member_id_is_useless_to_another_user() {
    let bus = Bus::start(&[]).await;
    bus.create("orders", 2).await;
    bus.publish("orders", json!([{"value": 1}])).await;
    let joined: Value = bus
        .post(
            CONSUMER,
            "/api/groups/billing/members",
            json!({"topics": ["orders"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let member = joined["memberId"].as_str().unwrap();
    let mallory = bus.auth.issue(
        "mallory",
        None,
        &["events:consume".into()],
        Duration::from_secs(60),
    );
    let as_mallory = |method: Method, path: String, body: Option<Value>| {
        let mut request = bus
            .http
            .request(method, format!("{}{path}", bus.chat.server.base))
            .bearer_auth(&mallory);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let poll = format!("/api/groups/billing/members/{member}/poll");
    problem(
        as_mallory(Method::POST, poll.clone(), Some(json!({})))
            .await
            .unwrap(),
        404,
    )
    .await;
    let commit = json!({"memberId": member, "offsets": [
        {"topic": "orders", "partition": 0, "offset": 1}]});
    let path = "/api/groups/billing/offsets".to_owned();
    problem(
        as_mallory(Method::POST, path, Some(commit)).await.unwrap(),
        404,
    )
    .await;
    let leave = format!("/api/groups/billing/members/{member}");
    problem(as_mallory(Method::DELETE, leave, None).await.unwrap(), 404).await;

    let described: Value = bus
        .get(CONSUMER, "/api/groups/billing")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        described["members"].as_array().unwrap().len(),
        1,
        "still there"
    );
    let committed: Vec<&Value> = described["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["partitions"].as_array().unwrap())
        .filter(|p| !p["committed"].is_null())
        .collect();
    assert!(committed.is_empty(), "nothing committed: {described}");
    let polled = bus.post(CONSUMER, &poll, json!({})).await;
    assert_eq!(polled.status(), 200, "the owner's member works");
}

// ----- 4. disk exhaustion by topics ----------------------------------------------------------

#[tokio::test]
async fn topics_and_partitions_are_capped_and_a_refused_create_leaves_nothing() {
    let toml = "[limits]\nmaxTopics = 12\nmaxPartitions = 40\n";
    let (chat, config) = server_with(toml, &[]).await;
    let dir = chat.dir.path().to_owned();
    let bus = Bus {
        auth: common::chat::authenticator(&dir),
        http: reqwest::Client::new(),
        chat,
    };
    let existing: Value = bus.get(ADMIN, "/api/topics").await.json().await.unwrap();
    let topics = existing["items"].as_array().unwrap().len();
    let partitions: usize = existing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["partitions"].as_array().unwrap().len())
        .sum();

    let huge = json!({"name": "huge", "partitions": 40});
    let refused = problem(bus.post(PUBLISHER, "/api/topics", huge).await, 409).await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("maxPartitions"),
        "{refused}"
    );
    let mut created = 0;
    let refusal = loop {
        let name = format!("t{created}");
        let response = bus
            .post(
                PUBLISHER,
                "/api/topics",
                json!({"name": name, "partitions": 1}),
            )
            .await;
        if response.status() != 201 {
            break response;
        }
        created += 1;
        assert!(created <= 12, "never refused");
    };
    let refused = problem(refusal, 409).await;
    assert!(
        refused["detail"].as_str().unwrap().contains("maxTopics"),
        "{refused}"
    );
    assert_eq!(topics + created, 12.min(topics + 40 - partitions));

    let mut chat = bus.chat;
    sigterm(&chat.server);
    assert!(wait_exit(&mut chat.server, Duration::from_secs(20)).success());
    let log = tidings::log::Log::open(tidings::log::LogConfig::new(&dir)).unwrap();
    let names = log.topic_names();
    assert!(!names.iter().any(|n| n == "huge"), "{names:?}");
    assert_eq!(names.len(), topics + created);
    log.shutdown();
    drop(log);
    drop(config);
}

// ----- 6. every kind of write takes from one budget ------------------------------------------

/// Makes `attempt(i)` until it is refused with 429 problem+json and `Retry-After`, and returns
/// how many got through first. With a budget of `rate` tokens/s and `tokens` left, it panics
/// if more writes were accepted than the tokens plus what refilled meanwhile: that kind of
/// write is not charged.
async fn writes_until_refused<F, Fut>(rate: f64, tokens: usize, mut attempt: F) -> usize
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let started = Instant::now();
    for i in 0.. {
        let response = attempt(i).await;
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
            problem(response, 429).await;
            return i;
        }
        assert!(response.status().is_success(), "{}", response.status());
        let refilled = (started.elapsed().as_secs_f64() * rate).floor() as usize;
        assert!(
            i < tokens + refilled,
            "{} writes in a row were accepted with {tokens} tokens and {refilled} refilled",
            i + 1
        );
    }
    unreachable!("the loop returns or panics")
}

#[tokio::test]
async fn edits_deletes_read_marks_conversations_and_participants_share_the_write_budget() {
    // 1 token/s, burst 2: whatever the kind, a third write in a moment is refused.
    let chat = chat_server(&["--rate-limit", "1"]).await;
    let senders = users("s", 4);
    let mut everyone: Vec<&str> = vec!["reader", "adder", "editor", "deleter"];
    everyone.extend(senders.iter().map(String::as_str));
    chat.conversation("owner", "room", &everyone).await;
    for sender in &senders {
        chat.send(sender, "room", "hi").await; // one token of each sender's own budget
    }

    let conversations = writes_until_refused(1.0, 2, |i| {
        chat.post(
            "creator",
            "/api/conversations",
            json!({"id": format!("own{i}"), "participants": ["x"]}),
        )
    })
    .await;
    assert!(conversations >= 2, "{conversations}");

    let marks = writes_until_refused(1.0, 2, |i| {
        chat.post(
            "reader",
            "/api/conversations/room/read",
            json!({"seq": i + 1}),
        )
    })
    .await;
    assert!(marks >= 2, "{marks}");

    // Only owners add participants.
    let promoted = chat
        .call(
            Some("owner"),
            Method::PATCH,
            "/api/conversations/room/participants/adder",
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(promoted.status(), 204);
    let adds = writes_until_refused(1.0, 2, |i| {
        chat.post(
            "adder",
            "/api/conversations/room/participants",
            json!({"userId": format!("guest{i}")}),
        )
    })
    .await;
    assert!(adds >= 2, "{adds}");

    let ack = chat.send("editor", "room", "draft").await;
    let id = ack["id"].as_str().unwrap().to_owned();
    let path = format!("/api/conversations/room/messages/{id}");
    let edits = writes_until_refused(1.0, 1, |i| {
        chat.call(
            Some("editor"),
            Method::PATCH,
            &path,
            Some(json!({"content": format!("edit {i}")})),
        )
    })
    .await;
    assert!(edits >= 1, "the send took one token: {edits}");

    let mut ids = Vec::new();
    for _ in 0..2 {
        let ack = chat.send("deleter", "room", "oops").await;
        ids.push(ack["id"].as_str().unwrap().to_owned());
    }
    let chat = &chat;
    writes_until_refused(1.0, 0, |i| {
        let path = format!(
            "/api/conversations/room/messages/{}",
            ids.get(i % 2).cloned().unwrap_or_default()
        );
        async move {
            chat.call(Some("deleter"), Method::DELETE, &path, None)
                .await
        }
    })
    .await;
}

#[tokio::test]
async fn group_joins_and_topic_creation_take_from_the_write_budget() {
    let bus = Bus::start(&["--rate-limit", "1"]).await;
    let topics = writes_until_refused(1.0, 2, |i| {
        bus.post(
            PUBLISHER,
            "/api/topics",
            json!({"name": format!("t{i}"), "partitions": 1}),
        )
    })
    .await;
    assert!(topics >= 2, "{topics}");
    let token = bus.auth.issue(
        "joiner",
        None,
        &["events:consume".into()],
        Duration::from_secs(60),
    );
    let joins = writes_until_refused(1.0, 2, |i| {
        let request = bus
            .http
            .post(format!("{}/api/groups/g{i}/members", bus.chat.server.base))
            .bearer_auth(&token)
            .json(&json!({"topics": ["t0"]}))
            .send();
        async move { request.await.expect("request") }
    })
    .await;
    assert!(joins >= 2, "{joins}");
}

// ----- 7. smaller holes ----------------------------------------------------------------------

#[tokio::test]
async fn a_token_that_is_not_valid_yet_is_refused() {
    let chat = chat_server(&[]).await;
    let secret = std::fs::read(chat.dir.path().join("secret.key")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "ann", "exp": now + 7200, "nbf": now + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    let response = reqwest::Client::new()
        .get(format!("{}/api/me", chat.server.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    problem(response, 401).await;
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let chat = chat_server_in(dir, &["--listen", "127.0.0.1:0"]).await;
    chat.conversation("ann", "c1", &["bob"]).await;
    chat.send("ann", "c1", "a secret").await;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let root = chat.dir.path();
    assert_eq!(mode(root), 0o700, "the data directory");
    assert_eq!(mode(&root.join("secret.key")), 0o600);
    let mut pending = vec![root.join("engine")];
    let mut files = 0;
    while let Some(dir) = pending.pop() {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files += 1;
                assert_eq!(mode(&path), 0o600, "{}", path.display());
            }
        }
    }
    assert!(files > 0, "the engine wrote files");
}
