//! Unit tests of presence and typing across hubs: two hubs joined by an in-memory link that
//! queues each one's changes until the test hands them to the other, so the order of events is
//! the test's. Time is passed explicitly to `tick`.

use parking_lot::Mutex;

use super::super::tests_support::{drain, hub_with, users};
use super::*;
use crate::hub::Session;

#[derive(Debug)]
enum Change {
    Presence(String, PresenceChange),
    Typing(String, String, bool, Vec<String>),
}

/// Queues a hub's changes for the other one.
#[derive(Default)]
struct QueueLink(Mutex<Vec<Change>>);

impl PeerLink for QueueLink {
    fn presence_changed(&self, user: &str, change: PresenceChange) {
        self.0
            .lock()
            .push(Change::Presence(user.to_owned(), change));
    }

    fn typing_changed(&self, user: &str, conversation: &str, typing: bool, recipients: &[String]) {
        let change = Change::Typing(
            user.to_owned(),
            conversation.to_owned(),
            typing,
            recipients.to_vec(),
        );
        self.0.lock().push(change);
    }
}

/// Two hubs where ann and bob share a conversation, each with the link it reports to.
fn two_nodes(config: HubConfig) -> [(Hub, Arc<QueueLink>); 2] {
    [0, 1].map(|_| {
        let hub = hub_with(config.clone(), &[("ann", "bob")]);
        let link = Arc::new(QueueLink::default());
        hub.attach_peers(link.clone());
        (hub, link)
    })
}

/// Hands every change `from` reported to `to`.
fn pump(from: &QueueLink, to: &Hub) {
    let changes: Vec<Change> = std::mem::take(&mut *from.0.lock());
    for change in changes {
        match change {
            Change::Presence(user, PresenceChange::Online) => to.remote_online(&user),
            Change::Presence(user, PresenceChange::Offline { last_seen }) => {
                to.remote_offline(&user, last_seen)
            }
            Change::Typing(user, conversation, typing, recipients) => {
                to.remote_typing(&user, &conversation, typing, recipients)
            }
        }
    }
}

fn statuses(session: &mut Session) -> Vec<String> {
    drain(session)
        .iter()
        .map(|f| format!("{}:{}", f["userId"].as_str().unwrap_or("?"), f["status"]))
        .collect()
}

#[test]
fn devices_on_two_nodes_keep_a_user_online_until_the_last_closes_and_the_grace_passes() {
    let grace = Duration::from_secs(5);
    let config = HubConfig {
        presence_grace: grace,
        ..HubConfig::default()
    };
    let [(a, a_link), (b, b_link)] = two_nodes(config);
    let mut bob = a.open("bob").unwrap();
    pump(&a_link, &b);
    let phone = b.open("ann").unwrap();
    pump(&b_link, &a);
    assert_eq!(statuses(&mut bob), ["ann:\"online\""]);
    let laptop = a.open("ann").unwrap();
    pump(&a_link, &b);
    assert!(statuses(&mut bob).is_empty(), "already online elsewhere");
    drop(laptop);
    pump(&a_link, &b);
    a.tick(Instant::now() + grace * 3);
    assert!(
        statuses(&mut bob).is_empty(),
        "the phone on the other node keeps ann online"
    );
    assert!(a.is_online_anywhere("ann") && !a.has_live_session("ann"));
    drop(phone);
    pump(&b_link, &a);
    let closed = Instant::now();
    a.tick(closed + grace - Duration::from_millis(100));
    assert!(statuses(&mut bob).is_empty(), "inside the grace period");
    a.tick(closed + grace + Duration::from_millis(100));
    let frames = drain(&mut bob);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["status"], "offline");
    assert!(frames[0]["lastSeen"].as_str().unwrap().ends_with('Z'));
    assert!(!a.is_online_anywhere("ann"));
}

#[test]
fn a_reconnect_on_another_node_within_the_grace_period_shows_no_flap() {
    let grace = Duration::from_secs(5);
    let config = HubConfig {
        presence_grace: grace,
        ..HubConfig::default()
    };
    let [(a, a_link), (b, b_link)] = two_nodes(config);
    let mut bob = a.open("bob").unwrap();
    let mut bob_b = b.open("bob").unwrap();
    drop(a.open("ann").unwrap());
    pump(&a_link, &b);
    drain(&mut bob);
    drain(&mut bob_b);
    let _back = b.open("ann").unwrap();
    pump(&b_link, &a);
    a.tick(Instant::now() + grace * 2);
    b.tick(Instant::now() + grace * 2);
    assert!(
        statuses(&mut bob).is_empty(),
        "no offline, no second online"
    );
    assert!(statuses(&mut bob_b).is_empty());
}

#[test]
fn a_new_session_hears_of_contacts_online_on_other_nodes() {
    let [(a, _), (b, b_link)] = two_nodes(HubConfig::default());
    let _ann = b.open("ann").unwrap();
    pump(&b_link, &a);
    let mut bob = a.open("bob").unwrap();
    assert_eq!(statuses(&mut bob), ["ann:\"online\""]);
}

#[test]
fn typing_reaches_other_nodes_rate_limited_and_expires_there_without_a_refresh() {
    let config = HubConfig {
        typing_ttl: Duration::from_secs(5),
        typing_interval: Duration::from_secs(1),
        ..HubConfig::default()
    };
    let [(a, a_link), (b, _)] = two_nodes(config);
    let mut bob = b.open("bob").unwrap();
    let start = Instant::now();
    a.typing_at("ann", "c", true, users(&["bob"]), start);
    a.typing_at("ann", "c", true, users(&["bob"]), start);
    pump(&a_link, &b);
    let flags: Vec<_> = drain(&mut bob)
        .iter()
        .map(|f| f["typing"].clone())
        .collect();
    assert_eq!(flags, [true], "the origin's rate limit holds");
    a.typing_at("ann", "c", false, users(&["bob"]), start);
    pump(&a_link, &b);
    let flags: Vec<_> = drain(&mut bob)
        .iter()
        .map(|f| f["typing"].clone())
        .collect();
    assert_eq!(flags, [false]);

    // An indicator whose node falls silent expires after ttl + interval.
    a.typing_at(
        "ann",
        "d",
        true,
        users(&["bob"]),
        start + Duration::from_secs(2),
    );
    pump(&a_link, &b);
    drain(&mut bob);
    b.tick(Instant::now() + Duration::from_millis(5_900));
    assert!(drain(&mut bob).is_empty(), "within ttl + interval");
    b.tick(Instant::now() + Duration::from_millis(6_100));
    let frames = drain(&mut bob);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["typing"], false);
    assert_eq!(frames[0]["conversationId"], "d");
}

#[test]
fn an_expiry_at_the_origin_reaches_the_other_nodes() {
    let [(a, a_link), (b, _)] = two_nodes(HubConfig::default());
    let mut bob = b.open("bob").unwrap();
    let start = Instant::now();
    a.typing_at("ann", "c", true, users(&["bob"]), start);
    a.tick(start + Duration::from_secs(60));
    pump(&a_link, &b);
    let flags: Vec<_> = drain(&mut bob)
        .iter()
        .map(|f| f["typing"].clone())
        .collect();
    assert_eq!(flags, [true, false]);
}
