//! The ephemeral frames over `/ws` against the real binary: typing (to the other participants,
//! expiring by itself), read receipts (after the store applied the mark, over HTTP and over the
//! socket, to every participant's sessions) and presence (online at once, offline with
//! `lastSeen` after the grace period, no flap on a quick reconnect).
//!
//! Short timings come from the `[ws]` section and every session speaks first (so its queue is
//! not held back for a `resume`); frames that must come are awaited with a generous deadline,
//! frames that must not come are checked against a barrier. No test sleeps for a timer: the
//! timers' own timing is proven on a paused clock in `hub::tests`.

use crate::common;

use std::time::{Duration, Instant};

use common::chat::Chat;
use common::ws::{connect, ws_server, WsClient};
use serde_json::{json, Value};

const FAST_TIMERS: &str = "[ws]\npresenceGraceMs = 300\ntypingTtlMs = 300\n";

/// Connects as `user` and speaks first (a `ping`): the server then lets the session's queue
/// flow at once instead of holding it for the resume window (a second) in case a `resume`
/// comes.
async fn connect_live(chat: &Chat, user: &str) -> WsClient {
    let mut client = connect(chat, user).await;
    client.send(json!({"type": "ping"})).await;
    client
}

#[tokio::test]
async fn typing_reaches_the_other_participants_and_expires_by_itself() {
    let chat = ws_server(FAST_TIMERS).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let mut ann = connect_live(&chat, "ann").await;
    let mut bob = connect_live(&chat, "bob").await;

    ann.send(json!({"type": "typing", "conversationId": "c", "typing": true}))
        .await;
    let typing = bob.next_of("typing").await;
    assert_eq!(
        typing,
        json!({"type": "typing", "conversationId": "c", "userId": "ann", "typing": true})
    );
    // No refresh: the server ends it.
    let expired = bob.next_of("typing").await;
    assert_eq!(expired["userId"], "ann");
    assert_eq!(expired["typing"], false);

    // An explicit stop is forwarded too; the typist's own sessions get neither.
    ann.send(json!({"type": "typing", "conversationId": "c", "typing": true}))
        .await;
    ann.send(json!({"type": "typing", "conversationId": "c", "typing": false}))
        .await;
    assert_eq!(bob.next_of("typing").await["typing"], true);
    assert_eq!(bob.next_of("typing").await["typing"], false);
    chat.send("bob", "c", "barrier").await;
    let frames = ann.until(|f| f["type"] == "message").await;
    assert!(
        frames.iter().all(|f| f["type"] != "typing"),
        "the typist hears its own typing: {frames:?}"
    );

    ann.send(json!({"type": "typing", "ref": "t", "conversationId": "elsewhere", "typing": true}))
        .await;
    let error = ann.next_of("error").await;
    assert_eq!(
        (error["ref"].clone(), error["status"].clone()),
        (json!("t"), json!(404))
    );
}

fn is_read_by(frame: &Value, user: &str) -> bool {
    frame["type"] == "read" && frame["userId"] == user
}

#[tokio::test]
async fn read_receipts_reach_every_participant_over_http_and_over_the_socket() {
    let chat = ws_server(FAST_TIMERS).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let mut ann = connect_live(&chat, "ann").await;
    let mut bob_phone = connect_live(&chat, "bob").await;
    let mut bob_laptop = connect_live(&chat, "bob").await;
    for n in 1..=3 {
        chat.send("ann", "c", &format!("m{n}")).await;
    }
    for session in [&mut ann, &mut bob_phone, &mut bob_laptop] {
        let seqs = common::ws::message_seqs(&session.until(|f| f["message"]["seq"] == 3).await);
        assert_eq!(seqs, [1, 2, 3]);
    }

    let read = chat
        .post("bob", "/api/conversations/c/read", json!({"seq": 2}))
        .await;
    assert_eq!(read.status(), 204);
    for session in [&mut ann, &mut bob_phone, &mut bob_laptop] {
        let receipt = session.next_of("read").await;
        assert_eq!(
            receipt,
            json!({"type": "read", "conversationId": "c", "userId": "bob", "seq": 2})
        );
    }
    let view = chat.get_json("bob", "/api/conversations/c").await;
    assert_eq!(
        view["lastReadSeq"], 2,
        "the receipt came after the store applied it"
    );

    bob_phone
        .send(json!({"type": "read", "ref": "r", "conversationId": "c", "seq": 3}))
        .await;
    // The ack and the reader's own receipt come in either order.
    let mut frames = bob_phone
        .until(|f| f["type"] == "ack" && f["ref"] == "r")
        .await;
    if !frames.iter().any(|f| is_read_by(f, "bob")) {
        frames.push(bob_phone.next_of("read").await);
    }
    assert!(
        frames.iter().any(|f| is_read_by(f, "bob") && f["seq"] == 3),
        "{frames:?}"
    );
    for session in [&mut ann, &mut bob_laptop] {
        let receipt = session.next_of("read").await;
        assert_eq!(
            (receipt["userId"].clone(), receipt["seq"].clone()),
            (json!("bob"), json!(3))
        );
    }
}

fn presence_of<'a>(frames: &'a [Value], user: &str) -> Vec<&'a Value> {
    frames
        .iter()
        .filter(|f| f["type"] == "presence" && f["userId"] == user)
        .collect()
}

#[tokio::test]
async fn presence_goes_online_at_once_and_offline_after_the_grace_period() {
    let chat = ws_server(FAST_TIMERS).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let mut bob = connect_live(&chat, "bob").await;
    let mut ann = connect_live(&chat, "ann").await;
    let online = bob.next_of("presence").await;
    assert_eq!(
        online,
        json!({"type": "presence", "userId": "ann", "status": "online"})
    );
    let told = ann.next_of("presence").await;
    assert_eq!(
        (told["userId"].clone(), told["status"].clone()),
        (json!("bob"), json!("online")),
        "a new session hears which contacts are online"
    );
    ann.close().await;
    let offline = bob.next_of("presence").await;
    assert_eq!(offline["userId"], "ann");
    assert_eq!(offline["status"], "offline");
    assert!(offline["lastSeen"].as_str().unwrap().ends_with('Z'));
}

fn is_offline(frame: &Value, user: &str) -> bool {
    frame["type"] == "presence" && frame["userId"] == user && frame["status"] == "offline"
}

/// Waits (polling `/metrics`) until the server holds `n` sessions.
async fn until_sessions(chat: &Chat, n: u64) {
    let deadline = Instant::now() + common::ws::DEADLINE;
    loop {
        let text = chat.metrics().await;
        let open = text
            .lines()
            .find_map(|line| line.strip_prefix("tidings_ws_sessions "))
            .and_then(|value| value.parse::<u64>().ok());
        if open == Some(n) {
            return;
        }
        assert!(Instant::now() < deadline, "{open:?} sessions, not {n}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A reconnect within the grace period shows neither `offline` nor a second `online`. No fixed
/// wait: carl, another contact of bob, leaves just after ann's first session; his `offline`
/// comes from the timer tick that finds him past the grace period, and that tick finds ann's
/// earlier departure past it too, so an `offline` for ann would be queued to bob no later than
/// carl's, and before the barrier. (That the grace period holds for its full length is proven
/// on a paused clock in `hub::tests`.)
#[tokio::test]
async fn a_quick_reconnect_shows_no_flap() {
    let chat = ws_server("[ws]\npresenceGraceMs = 1000\n").await;
    chat.conversation("ann", "c", &["bob"]).await;
    chat.conversation("carl", "d", &["bob"]).await;
    let mut bob = connect_live(&chat, "bob").await;
    let ann = connect_live(&chat, "ann").await;
    let carl = connect_live(&chat, "carl").await;
    bob.until(|f| f["type"] == "presence" && f["userId"] == "carl")
        .await;
    // Each departure is recorded (its session gone) before the next step.
    ann.close().await;
    until_sessions(&chat, 2).await;
    carl.close().await;
    until_sessions(&chat, 1).await;
    let _ann_again = connect_live(&chat, "ann").await;
    let mut frames = bob.until(|f| is_offline(f, "carl")).await;
    chat.send("ann", "c", "barrier").await;
    frames.extend(bob.until(|f| f["type"] == "message").await);
    assert!(
        presence_of(&frames, "ann").is_empty(),
        "ann flapped: {frames:?}"
    );
}
