//! The write-behind store writer end to end at library level: log → store → `messages.sent`,
//! with concurrency, idempotency, edits, restarts, and a crash between the writes and the relay.

use std::collections::{HashMap, HashSet};

use super::node::{commands_by_conversation, config, events, start};
use crate::log::Appended;
use crate::pipeline::PipelineConfig;
use crate::store::{
    now_rfc3339, ChatCommand, DeleteMessage, EditMessage, EventType, Message, OutboxEntry,
    SendMessage, Store,
};

const CONVERSATIONS: [&str; 5] = ["c0", "c1", "c2", "c3", "c4"];
const USERS: [&str; 4] = ["ann", "bob", "cid", "dee"];

async fn create_conversations(node: &super::node::Node) {
    for c in CONVERSATIONS {
        let others = USERS[1..].iter().map(|u| u.to_string()).collect();
        node.create_conversation("ann", c, others).await;
    }
}

fn all_messages(store: &Store, conversation: &str) -> Vec<Message> {
    let page = store
        .history(conversation, None, Some(0), 1000)
        .expect("history");
    assert!(!page.has_more);
    page.items
}

/// Sends from every user concurrently; every 5th send is retried with its clientMessageId.
async fn send_concurrently(node: &super::node::Node, per_user: usize) -> Vec<Appended> {
    let mut tasks = Vec::new();
    for (u, user) in USERS.iter().enumerate() {
        let pipeline = node.pipeline.clone();
        tasks.push(tokio::spawn(async move {
            let mut landed = Vec::new();
            for i in 0..per_user {
                let conversation = CONVERSATIONS[(u + i) % CONVERSATIONS.len()];
                let mut send = SendMessage::new(conversation, *user, *user, format!("{user} {i}"));
                send.client_message_id = Some(format!("k{i}"));
                let command = ChatCommand::Send(send.clone());
                landed.push(pipeline.submit(&command).await.expect("submit"));
                if i % 5 == 0 {
                    send.id = crate::store::new_message_id();
                    let retry = ChatCommand::Send(send);
                    landed.push(pipeline.submit(&retry).await.expect("submit"));
                }
            }
            landed
        }));
    }
    let mut landed = Vec::new();
    for task in tasks {
        landed.extend(task.await.expect("sender task"));
    }
    landed
}

/// Checks dense seq in log order, single storage of retries, lastMessage and the events.
fn check_consistent(node: &super::node::Node) {
    let commands = commands_by_conversation(&node.log);
    let mut stored_ids = HashSet::new();
    for c in CONVERSATIONS {
        let mut seen_client_ids = HashSet::new();
        let expected: Vec<String> = commands
            .get(c)
            .into_iter()
            .flatten()
            .filter_map(|command| match command {
                ChatCommand::Send(s) => {
                    let key = (s.sender_id.clone(), s.client_message_id.clone());
                    seen_client_ids.insert(key).then(|| s.id.clone())
                }
                _ => None,
            })
            .collect();
        let stored = all_messages(&node.store, c);
        let ids: Vec<String> = stored.iter().map(|m| m.id.clone()).collect();
        assert_eq!(ids, expected, "{c}: stored once each, in log order");
        let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=stored.len() as u64).collect::<Vec<_>>(),
            "{c}: dense seq"
        );
        let conversation = node.store.conversation(c).expect("conversation");
        assert_eq!(conversation.last_seq, stored.len() as u64);
        assert_eq!(conversation.last_message.as_deref(), stored.last());
        stored_ids.extend(stored.into_iter().map(|m| (m.id, m.seq)));
    }
    let sent: Vec<(String, u64)> = events(&node.log)
        .into_iter()
        .filter(|e| e.event_type == EventType::MessageSent)
        .map(|e| (e.message.id, e.message.seq))
        .collect();
    assert_eq!(
        sent.len(),
        stored_ids.len(),
        "one MessageSent per stored message"
    );
    assert_eq!(sent.into_iter().collect::<HashSet<_>>(), stored_ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_get_dense_seq_in_log_order_and_one_event_each() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config(4)).await;
    create_conversations(&node).await;
    let landed = send_concurrently(&node, 40).await;
    for appended in landed {
        node.applied(appended).await;
    }
    assert_eq!(node.pipeline.lag().unwrap(), 0);
    node.stop().await;
    // Events are relayed after the batch commits: check once the workers have stopped.
    let node = start(dir.path(), config(4)).await;
    check_consistent(&node);
    let retried = node
        .store
        .message_id_for_client_id("bob", "c1", "k0")
        .unwrap();
    assert!(
        retried.is_some(),
        "the client id index answers a retry's id"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_deletes_by_the_sender_apply_and_emit_events_others_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config(2)).await;
    create_conversations(&node).await;
    let send = SendMessage::new("c0", "bob", "Bob", "hello");
    let id = send.id.clone();
    node.submit(&ChatCommand::Send(send)).await;
    let edit = |sender: &str| {
        ChatCommand::Edit(EditMessage {
            message_id: id.clone(),
            conversation_id: "c0".into(),
            sender_id: sender.into(),
            content: format!("edited by {sender}"),
            at: now_rfc3339(),
        })
    };
    node.submit(&edit("ann")).await;
    let appended = node.submit(&edit("bob")).await;
    node.applied(appended).await;
    assert_eq!(
        node.store.message("c0", &id).unwrap().content,
        "edited by bob"
    );
    let delete = ChatCommand::Delete(DeleteMessage {
        message_id: id.clone(),
        conversation_id: "c0".into(),
        sender_id: "bob".into(),
        at: now_rfc3339(),
    });
    let appended = node.submit(&delete).await;
    node.applied(appended).await;
    let deleted = node.store.message("c0", &id).unwrap();
    assert_eq!(
        (deleted.seq, deleted.deleted, deleted.content.as_str()),
        (1, true, "")
    );
    assert!(
        node.store
            .conversation("c0")
            .unwrap()
            .last_message
            .unwrap()
            .deleted
    );
    node.stop().await;
    let node = start(dir.path(), config(2)).await;
    let kinds: Vec<EventType> = events(&node.log).iter().map(|e| e.event_type).collect();
    assert_eq!(
        kinds,
        [
            EventType::MessageSent,
            EventType::MessageUpdated,
            EventType::MessageDeleted
        ]
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_continues_seq_and_relays_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config(4)).await;
    create_conversations(&node).await;
    send_concurrently(&node, 10).await;
    node.stop().await;
    for _ in 0..2 {
        let node = start(dir.path(), config(4)).await;
        let landed = send_concurrently(&node, 10).await;
        for appended in landed {
            node.applied(appended).await;
        }
        node.stop().await;
    }
    let node = start(dir.path(), config(4)).await;
    check_consistent(&node);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_applies_everything_accepted_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config(2)).await;
    create_conversations(&node).await;
    let landed = send_concurrently(&node, 50).await;
    node.stop().await;
    let log = super::node::open_log(dir.path());
    let store = Store::open(dir.path()).unwrap();
    let total: usize = CONVERSATIONS
        .iter()
        .map(|c| all_messages(&store, c).len())
        .sum();
    let retries = USERS.len() * 10;
    assert_eq!(
        total,
        landed.len() - retries,
        "every accepted send is stored"
    );
    for p in 0..2 {
        let (_, high) = log.watermarks("messages", p).unwrap();
        assert_eq!(
            log.committed_offset("store", "messages", p).unwrap(),
            Some(high)
        );
    }
}

/// A node that stores sends but neither relays nor commits (as if it crashed after the
/// writes), with sends from every user applied.
async fn stored_not_relayed(dir: &std::path::Path) -> (super::node::Node, Vec<Appended>) {
    let crashing = PipelineConfig {
        relay: false,
        ..config(2)
    };
    let node = start(dir, crashing).await;
    create_conversations(&node).await;
    let landed = send_concurrently(&node, 5).await;
    for appended in &landed {
        node.applied(*appended).await;
    }
    (node, landed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_writes_and_relay_relays_each_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (node, landed) = stored_not_relayed(dir.path()).await;
    assert!(events(&node.log).is_empty(), "stored, not relayed");
    for p in 0..2 {
        assert_eq!(
            node.log.committed_offset("store", "messages", p).unwrap(),
            None,
            "nothing is committed before its events are relayed"
        );
    }
    let stored: usize = CONVERSATIONS
        .iter()
        .map(|c| all_messages(&node.store, c).len())
        .sum();
    assert!(stored > 0 && stored < landed.len(), "retries stored once");
    node.stop().await;

    let node = start(dir.path(), config(2)).await; // the replay makes and relays the events
    node.stop().await;
    let node = start(dir.path(), config(2)).await;
    assert_eq!(events(&node.log).len(), stored);
    check_consistent(&node);

    // Relayed but not yet deleted from the outbox when the process died: not relayed again.
    let records = super::node::read_all(&node.log, "messages.sent");
    let last = records.last().expect("relayed events");
    let header = last
        .headers
        .iter()
        .find(|h| h.key == "tidings-source-offset")
        .expect("source offset header");
    let partition = last.partition;
    let source_offset: u64 = String::from_utf8(header.value.clone())
        .unwrap()
        .parse()
        .unwrap();
    let event: crate::store::MessageEvent = serde_json::from_slice(&last.value).unwrap();
    node.store
        .insert_pending_event_for_test(&OutboxEntry {
            partition,
            source_offset,
            index: 0,
            conversation_id: event.message.conversation_id.clone(),
            payload: last.value.clone(),
        })
        .unwrap();
    node.stop().await;
    let node = start(dir.path(), config(2)).await;
    node.stop().await;
    let node = start(dir.path(), config(2)).await;
    assert_eq!(events(&node.log).len(), stored, "nothing relayed twice");
    assert!(node.store.pending_events(partition, 10).unwrap().is_empty());
    let per_id: HashMap<String, usize> =
        events(&node.log)
            .into_iter()
            .fold(HashMap::new(), |mut counts, e| {
                *counts.entry(e.message.id).or_default() += 1;
                counts
            });
    assert!(per_id.values().all(|n| *n == 1));
    node.stop().await;
}

/// A crash after a batch's events were relayed but before its offset commit: the replay makes
/// every event again and must relay none of them twice, nor store anything twice. Simulated
/// by erasing the store's applied position (tree `applied` of its database) and restarting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_applied_records_stores_and_relays_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config(2)).await;
    create_conversations(&node).await;
    let landed = send_concurrently(&node, 10).await;
    for appended in landed {
        node.applied(appended).await;
    }
    node.stop().await;
    // No flusher thread, so that dropping it closes the files at once (like the store does).
    let store_db = sled::Config::new()
        .path(dir.path().join("store"))
        .flush_every_ms(None)
        .open()
        .unwrap();
    assert!(store_db.drop_tree("applied").unwrap());
    store_db.flush().unwrap();
    drop(store_db);

    let node = start(dir.path(), config(2)).await;
    for c in CONVERSATIONS {
        let send = SendMessage::new(c, "bob", "bob", "after the replay");
        let appended = node.submit(&ChatCommand::Send(send)).await;
        node.applied(appended).await;
    }
    node.stop().await;
    let node = start(dir.path(), config(2)).await;
    check_consistent(&node);
    let stored = USERS.len() * 10 + CONVERSATIONS.len();
    assert_eq!(events(&node.log).len(), stored, "one event per message");
    for p in 0..2 {
        assert!(node.store.pending_events(p, 10).unwrap().is_empty());
    }
    node.stop().await;
}
