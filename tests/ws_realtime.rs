//! The ephemeral frames over `/ws` against the real binary: typing (to the other participants,
//! expiring by itself), read receipts (after the store applied the mark, over HTTP and over the
//! socket, to every participant's sessions) and presence (online at once, offline with
//! `lastSeen` after the grace period, no flap on a quick reconnect).
//!
//! Short timings come from the `[ws]` section; frames that must come are awaited with a
//! generous deadline, frames that must not come are checked against a barrier.

mod common;

use std::time::Duration;

use common::ws::{connect, ws_server};
use serde_json::{json, Value};

const FAST_TIMERS: &str = "[ws]\npresenceGraceMs = 300\ntypingTtlMs = 300\n";

#[tokio::test]
async fn typing_reaches_the_other_participants_and_expires_by_itself() {
    let chat = ws_server(FAST_TIMERS).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let mut ann = connect(&chat, "ann").await;
    let mut bob = connect(&chat, "bob").await;

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
    let mut ann = connect(&chat, "ann").await;
    let mut bob_phone = connect(&chat, "bob").await;
    let mut bob_laptop = connect(&chat, "bob").await;
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
    let mut bob = connect(&chat, "bob").await;
    let mut ann = connect(&chat, "ann").await;
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

#[tokio::test]
async fn a_quick_reconnect_shows_no_flap() {
    let chat = ws_server("[ws]\npresenceGraceMs = 1500\n").await;
    chat.conversation("ann", "c", &["bob"]).await;
    let mut bob = connect(&chat, "bob").await;
    let ann = connect(&chat, "ann").await;
    assert_eq!(bob.next_of("presence").await["status"], "online");
    ann.close().await;
    let _ann_again = connect(&chat, "ann").await;
    // Past the grace period of the first session's close, then a barrier.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    chat.send("ann", "c", "barrier").await;
    let frames = bob.until(|f| f["type"] == "message").await;
    assert!(
        presence_of(&frames, "ann").is_empty(),
        "ann flapped: {frames:?}"
    );
}
