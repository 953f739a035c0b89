//! Unit tests of the peers' bookkeeping: balanced online/offline calls, gaps asking for a
//! snapshot, snapshots replacing a node's users, silent and restarted nodes dropped.

use std::cell::RefCell;

use super::*;

/// Records the calls as "+user", "-user".
#[derive(Default)]
struct Calls(RefCell<Vec<String>>);

impl Calls {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

impl PresenceSink for Calls {
    fn online(&self, user: &str) {
        self.0.borrow_mut().push(format!("+{user}"));
    }

    fn offline(&self, user: &str, _last_seen: String) {
        self.0.borrow_mut().push(format!("-{user}"));
    }

    fn typing(&self, user: &str, _conversation: &str, typing: bool, _recipients: Vec<String>) {
        self.0.borrow_mut().push(format!("{user} typing {typing}"));
    }
}

fn origin(node: &str, incarnation: u64, seq: u64) -> Origin {
    Origin {
        node: node.into(),
        incarnation,
        seq,
    }
}

fn online(seq: u64, user: &str) -> Event {
    Event::Online {
        origin: origin("b", 1, seq),
        user: user.into(),
    }
}

fn offline(seq: u64, user: &str) -> Event {
    Event::Offline {
        origin: origin("b", 1, seq),
        user: user.into(),
        last_seen: "t".into(),
    }
}

fn heartbeat(incarnation: u64, seq: u64) -> Event {
    Event::Heartbeat {
        origin: origin("b", incarnation, seq),
    }
}

#[test]
fn changes_in_order_apply_and_a_gap_or_a_late_heartbeat_asks_for_a_snapshot() {
    let (mut peers, calls, now) = (
        Peers::new("a", Duration::from_secs(5)),
        Calls::default(),
        Instant::now(),
    );
    assert_eq!(peers.on_event(online(1, "ann"), now, &calls), None);
    assert_eq!(peers.on_event(heartbeat(1, 1), now, &calls), None);
    assert_eq!(peers.on_event(offline(2, "ann"), now, &calls), None);
    assert_eq!(calls.take(), ["+ann", "-ann"]);
    assert_eq!(
        peers.on_event(offline(2, "ann"), now, &calls),
        None,
        "a duplicate is ignored"
    );
    assert_eq!(
        peers.on_event(online(4, "bob"), now, &calls),
        Some("b".into()),
        "3 was lost"
    );
    assert_eq!(calls.take(), ["+bob"]);
    assert_eq!(
        peers.on_event(heartbeat(1, 4), now, &calls),
        Some("b".into()),
        "stale until a snapshot"
    );
    let snapshot = Snapshot {
        origin: origin("b", 1, 4),
        users: vec!["bob".into(), "cat".into()],
    };
    peers.on_snapshot(snapshot, now, &calls);
    assert_eq!(calls.take(), ["+cat"]);
    assert_eq!(peers.on_event(heartbeat(1, 4), now, &calls), None);
    assert_eq!(
        peers.on_event(heartbeat(1, 5), now, &calls),
        Some("b".into()),
        "5 was lost"
    );
}

#[test]
fn a_snapshot_older_than_the_changes_applied_is_ignored() {
    let (mut peers, calls, now) = (
        Peers::new("a", Duration::from_secs(5)),
        Calls::default(),
        Instant::now(),
    );
    peers.on_event(online(1, "ann"), now, &calls);
    peers.on_event(online(2, "bob"), now, &calls);
    calls.take();
    let old = Snapshot {
        origin: origin("b", 1, 1),
        users: vec!["ann".into()],
    };
    peers.on_snapshot(old, now, &calls);
    assert!(calls.take().is_empty());
    assert_eq!(
        peers.view(),
        [("b".to_owned(), vec!["ann".to_owned(), "bob".to_owned()])]
    );
}

#[test]
fn a_silent_node_a_node_saying_bye_and_a_restarted_node_lose_their_users() {
    let (mut peers, calls, start) = (
        Peers::new("a", Duration::from_secs(5)),
        Calls::default(),
        Instant::now(),
    );
    peers.on_event(online(1, "ann"), start, &calls);
    peers.on_event(heartbeat(1, 1), start + Duration::from_secs(1), &calls);
    calls.take();
    assert!(peers
        .expire(start + Duration::from_secs(5), &calls)
        .is_empty());
    assert_eq!(peers.expire(start + Duration::from_secs(6), &calls), ["b"]);
    assert_eq!(calls.take(), ["-ann"]);
    assert!(peers.view().is_empty());

    peers.on_event(online(1, "ann"), start, &calls);
    peers.on_event(
        Event::Bye {
            origin: origin("b", 1, 1),
        },
        start,
        &calls,
    );
    assert_eq!(calls.take(), ["+ann", "-ann"]);

    peers.on_event(online(1, "ann"), start, &calls);
    assert_eq!(
        peers.on_event(heartbeat(2, 0), start, &calls),
        None,
        "a fresh start has no change yet"
    );
    assert_eq!(calls.take(), ["+ann", "-ann"]);
}

#[test]
fn own_messages_are_ignored_and_typing_passes_through() {
    let (mut peers, calls, now) = (
        Peers::new("b", Duration::from_secs(5)),
        Calls::default(),
        Instant::now(),
    );
    peers.on_event(online(1, "ann"), now, &calls);
    let typing = Event::Typing {
        node: "c".into(),
        user: "cat".into(),
        conversation: "x".into(),
        typing: true,
        recipients: vec!["ann".into()],
    };
    peers.on_event(typing, now, &calls);
    assert_eq!(calls.take(), ["cat typing true"]);
}
