//! Model test of the store writer: random sends (with and without retried clientMessageIds),
//! read marks and restarts, checked against a plain model after every step and at the end:
//! seq dense and in log order per conversation, lastMessage.seq == max seq, read state
//! monotonic and equal to the model's, unread = lastSeq − lastReadSeq, nothing stored or
//! relayed twice.

use std::collections::{HashMap, HashSet};

use crate::store::{ChatCommand, EventType, MarkRead, SendMessage};
use proptest::prelude::*;

const CONVERSATIONS: [&str; 3] = ["a", "b", "c"];
const USERS: [&str; 3] = ["u0", "u1", "u2"];

#[derive(Debug, Clone)]
enum Op {
    Send {
        conv: usize,
        user: usize,
        client_id: Option<u8>,
    },
    Read {
        conv: usize,
        user: usize,
        seq: u64,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, 0..3usize, proptest::option::of(0..4u8))
            .prop_map(|(conv, user, client_id)| Op::Send { conv, user, client_id }),
        2 => (0..3usize, 0..3usize, 0..12u64).prop_map(|(conv, user, seq)| Op::Read { conv, user, seq }),
        1 => Just(Op::Restart),
    ]
}

#[derive(Default)]
struct Model {
    /// Stored message ids per conversation, in seq order.
    stored: HashMap<&'static str, Vec<String>>,
    client_ids: HashSet<(&'static str, &'static str, u8)>,
    read: HashMap<(&'static str, &'static str), u64>,
}

impl Model {
    fn send(&mut self, conv: &'static str, user: &'static str, client_id: Option<u8>, id: String) {
        if let Some(k) = client_id {
            if !self.client_ids.insert((user, conv, k)) {
                return;
            }
        }
        let messages = self.stored.entry(conv).or_default();
        messages.push(id);
        let seq = messages.len() as u64;
        let read = self.read.entry((user, conv)).or_default();
        *read = (*read).max(seq);
    }

    fn mark_read(&mut self, conv: &'static str, user: &'static str, seq: u64) {
        let last = self.stored.get(conv).map_or(0, Vec::len) as u64;
        let read = self.read.entry((user, conv)).or_default();
        *read = (*read).max(seq.min(last));
    }
}

fn check(
    node: &super::node::Node,
    model: &Model,
    previous_reads: &mut HashMap<(usize, usize), u64>,
) {
    for (c, conv) in CONVERSATIONS.iter().enumerate() {
        let page = node
            .store
            .history(conv, None, Some(0), 1000)
            .expect("history");
        let ids: Vec<&str> = page.items.iter().map(|m| m.id.as_str()).collect();
        let expected: Vec<&str> = model
            .stored
            .get(conv)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        assert_eq!(ids, expected, "{conv}: messages in log order, each once");
        let seqs: Vec<u64> = page.items.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "dense seq"
        );
        let conversation = node.store.conversation(conv).expect("conversation");
        assert_eq!(
            conversation.last_message.map(|m| m.seq),
            seqs.last().copied()
        );
        for (u, user) in USERS.iter().enumerate() {
            let view = node.store.conversation_for(user, conv).expect("view");
            let expected_read = model.read.get(&(*user, *conv)).copied().unwrap_or(0);
            assert_eq!(view.last_read_seq, expected_read, "{user} in {conv}");
            assert_eq!(view.unread_count, view.last_seq - view.last_read_seq);
            let previous = previous_reads
                .insert((c, u), view.last_read_seq)
                .unwrap_or(0);
            assert!(
                view.last_read_seq >= previous,
                "read state never moves back"
            );
        }
    }
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = super::node::start(dir.path(), super::node::config(2)).await;
    for conv in CONVERSATIONS {
        let others = USERS[1..].iter().map(|u| u.to_string()).collect();
        node.create_conversation(USERS[0], conv, others).await;
    }
    let mut model = Model::default();
    let mut reads = HashMap::new();
    for op in ops {
        let appended = match op {
            Op::Send {
                conv,
                user,
                client_id,
            } => {
                let mut send = SendMessage::new(CONVERSATIONS[conv], USERS[user], USERS[user], "x");
                send.client_message_id = client_id.map(|k| format!("k{k}"));
                model.send(CONVERSATIONS[conv], USERS[user], client_id, send.id.clone());
                node.submit(&ChatCommand::Send(send)).await
            }
            Op::Read { conv, user, seq } => {
                model.mark_read(CONVERSATIONS[conv], USERS[user], seq);
                let read = MarkRead {
                    conversation_id: CONVERSATIONS[conv].into(),
                    user_id: USERS[user].into(),
                    seq,
                };
                node.submit(&ChatCommand::Read(read)).await
            }
            Op::Restart => {
                node.stop().await;
                node = super::node::start(dir.path(), super::node::config(2)).await;
                continue;
            }
        };
        node.applied(appended).await;
        check(&node, &model, &mut reads);
    }
    node.stop().await;
    let node = super::node::start(dir.path(), super::node::config(2)).await;
    check(&node, &model, &mut reads);
    let sent: Vec<String> = super::node::events(&node.log)
        .into_iter()
        .filter(|e| e.event_type == EventType::MessageSent)
        .map(|e| e.message.id)
        .collect();
    let unique: HashSet<&String> = sent.iter().collect();
    let stored: usize = model.stored.values().map(Vec::len).sum();
    assert_eq!(
        (sent.len(), unique.len()),
        (stored, stored),
        "one event per stored message"
    );
    node.stop().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_store_matches_the_model_across_random_restarts(ops in proptest::collection::vec(op(), 1..40)) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(run(ops));
    }
}
