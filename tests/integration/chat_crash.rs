//! Crash safety of the chat service: 8 clients send concurrently, the server is SIGKILLed
//! mid-stream and restarted on the same data directory; every message answered 202 is in
//! history exactly once, with seq 1..n dense per conversation, and its `message.sent` event is
//! in `messages.sent` exactly once, because the store caught up from its own applied position
//! (in its own database) and the relay skipped the events relayed before the crash. Each
//! conversation's lastSeq and unread counts match its history again.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::server::{command, sigterm, start, wait_exit, wait_ready, Process};
use serde_json::{json, Value};
use tidings::log::{Log, LogConfig, ReadLimits};

const CLIENTS: usize = 8;
const CONVERSATIONS: usize = 3;

fn bearer(data_dir: &std::path::Path, user: &str) -> String {
    let secret = std::fs::read(data_dir.join("secret.key")).expect("secret.key after first start");
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": user, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    format!("Bearer {token}")
}

fn serve(dir: &std::path::Path) -> Process {
    start(command(
        dir,
        &["--listen", "127.0.0.1:0", "--rate-limit", "0"],
    ))
}

async fn create_conversations(server: &Process, alice: &str) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..CONVERSATIONS {
        let response = client
            .post(format!("{}/api/conversations", server.base))
            .header("authorization", alice)
            .json(&json!({"id": format!("crash-{i}"), "participants": ["bob"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        ids.push(format!("crash-{i}"));
    }
    ids
}

/// Sends until the server dies; returns (conversation, message id) of every 202.
async fn send_until_dead(
    base: String,
    alice: String,
    conversations: Vec<String>,
    client_no: usize,
    acked: Arc<Mutex<Vec<(String, String)>>>,
) {
    let client = reqwest::Client::new();
    for n in 0.. {
        let conversation = &conversations[(client_no + n) % conversations.len()];
        let sent = client
            .post(format!("{base}/api/conversations/{conversation}/messages"))
            .header("authorization", &alice)
            .json(&json!({"content": format!("client {client_no} message {n}"), "clientMessageId": format!("c{client_no}-{n}")}))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let Ok(response) = sent else { return };
        if response.status() != 202 {
            return;
        }
        let Ok(body) = response.json::<Value>().await else {
            return;
        };
        let id = body["id"].as_str().expect("202 carries the id").to_owned();
        acked.lock().unwrap().push((conversation.clone(), id));
    }
}

async fn conversation_as(base: &str, user: &str, conversation: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}/api/conversations/{conversation}"))
        .header("authorization", user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn history(base: &str, alice: &str, conversation: &str) -> Vec<Value> {
    let client = reqwest::Client::new();
    let mut items = Vec::new();
    let mut after = 0;
    loop {
        let page: Value = client
            .get(format!(
                "{base}/api/conversations/{conversation}/messages?after={after}&limit=100"
            ))
            .header("authorization", alice)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let batch = page["items"].as_array().unwrap().clone();
        if let Some(last) = batch.last() {
            after = last["seq"].as_u64().unwrap();
        }
        items.extend(batch);
        if !page["hasMore"].as_bool().unwrap() {
            return items;
        }
    }
}

#[tokio::test]
async fn sigkill_mid_stream_loses_and_duplicates_no_accepted_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path());
    wait_ready(&server).await;
    let alice = bearer(dir.path(), "alice");
    let conversations = create_conversations(&server, &alice).await;

    let acked = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(send_until_dead(
                server.base.clone(),
                alice.clone(),
                conversations.clone(),
                c,
                acked.clone(),
            ))
        })
        .collect();
    while acked.lock().unwrap().len() < 600 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for client in clients {
        client.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 600);

    let mut server = serve(dir.path());
    wait_ready(&server).await;
    let mut stored_ids = HashSet::new();
    let mut per_conversation: HashMap<&str, usize> = HashMap::new();
    for conversation in &conversations {
        let items = history(&server.base, &alice, conversation).await;
        let seqs: Vec<u64> = items.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(
            seqs,
            (1..=items.len() as u64).collect::<Vec<_>>(),
            "{conversation}: seq dense from 1"
        );
        for item in &items {
            assert!(
                stored_ids.insert(item["id"].as_str().unwrap().to_owned()),
                "stored twice: {item}"
            );
        }
        per_conversation.insert(conversation, items.len());
        // Activity and read state are written at checkpoints, not per message: the replay from
        // the last one brought them back to every stored message.
        let bob = bearer(dir.path(), "bob");
        for (user, unread) in [(&alice, 0), (&bob, items.len())] {
            let shown = conversation_as(&server.base, user, conversation).await;
            assert_eq!(shown["lastSeq"], items.len(), "{conversation}: lastSeq");
            assert_eq!(shown["unreadCount"], unread, "{conversation}: unreadCount");
        }
    }
    for (conversation, id) in &acked {
        assert!(
            stored_ids.contains(id),
            "202'd message {id} in {conversation} is missing after the restart"
        );
    }
    // At most one unacknowledged send per client may have been stored as well.
    assert!(
        stored_ids.len() <= acked.len() + CLIENTS,
        "{} stored, {} acked",
        stored_ids.len(),
        acked.len()
    );

    sigterm(&server);
    assert!(wait_exit(&mut server, Duration::from_secs(20)).success());
    let mut events_per_id: HashMap<String, usize> = HashMap::new();
    for event in events(dir.path()) {
        assert_eq!(event["eventType"], "MessageSent");
        let id = event["message"]["id"].as_str().expect("the message's id");
        *events_per_id.entry(id.to_owned()).or_default() += 1;
    }
    let evented: HashSet<String> = events_per_id.keys().cloned().collect();
    assert_eq!(
        evented, stored_ids,
        "one event per stored message, no other"
    );
    assert!(
        events_per_id.values().all(|n| *n == 1),
        "an event relayed twice"
    );
}

/// Every event of `messages.sent` in the stopped server's data directory, by partition in
/// offset order, as JSON (the format docs/events.md describes).
fn events(data_dir: &std::path::Path) -> Vec<Value> {
    let log = Log::open(LogConfig::new(data_dir)).expect("open the stopped server's log");
    let mut events = Vec::new();
    for p in log
        .describe_topic("messages.sent")
        .expect("topic")
        .partitions
    {
        let mut offset = p.low;
        while offset < p.high {
            let records = log
                .read(
                    "messages.sent",
                    p.partition,
                    offset,
                    ReadLimits::records(10_000),
                )
                .expect("read");
            offset = records.last().map_or(p.high, |r| r.offset + 1);
            events.extend(
                records
                    .iter()
                    .map(|r| serde_json::from_slice::<Value>(&r.value).expect("event JSON")),
            );
        }
    }
    events
}
