//! Real-time delivery over `/ws` against the real binary: a stored message reaches every
//! session of every participant (several devices, the sender's other session) and nobody else;
//! `send` over the socket is acknowledged like the HTTP send (idempotent with a
//! clientMessageId); participant changes reach the sessions as `conversation.updated`, and a
//! removed participant receives nothing more.
//!
//! With `ws.writeDelayMs` a quiet session's frame goes at once, the rest of a burst waits for
//! the delay, and all arrive in order.
//!
//! "Nobody else" is checked with a barrier, not a timer: a later message the same user does
//! receive, queued after the one it must not get.

use crate::common;

use common::chat::{chat_server, chat_server_from, Chat};
use common::server::command;
use common::ws::{connect, connect_with_header, message_seqs, ws_server, WsClient};
use serde_json::{json, Value};

/// Sends a "barrier" message as ann into `conversation`, which `session`'s user shares with
/// her, and returns the contents of the other messages `session` received before it: anything
/// queued to it earlier.
async fn messages_before_barrier(
    chat: &Chat,
    session: &mut WsClient,
    conversation: &str,
) -> Vec<Value> {
    chat.send("ann", conversation, "barrier").await;
    let frames = session
        .until(|f| f["type"] == "message" && f["message"]["content"] == "barrier")
        .await;
    frames
        .into_iter()
        .filter(|f| f["type"] == "message" && f["message"]["content"] != "barrier")
        .collect()
}

#[tokio::test]
async fn a_message_reaches_every_session_of_every_participant_and_nobody_else() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "team", &["bob"]).await;
    chat.conversation("eve", "eve-ann", &["ann"]).await;
    let mut ann_phone = connect(&chat, "ann").await;
    let mut ann_laptop = connect_with_header(&chat, &chat.token("ann")).await;
    let mut bob = connect(&chat, "bob").await;
    let mut eve = connect(&chat, "eve").await;
    assert_eq!(ann_phone.user_id, "ann");
    assert_ne!(ann_phone.session_id, ann_laptop.session_id);

    ann_phone.send_message("team", "hello team", "r1").await;
    let ack = ann_phone.next_of("ack").await;
    assert_eq!(ack["ref"], "r1");
    assert_eq!(ack["status"], "accepted");
    let id = ack["id"].as_str().unwrap().to_owned();

    for session in [&mut ann_phone, &mut ann_laptop, &mut bob] {
        let message = session.next_message().await;
        assert_eq!(message["id"], id.as_str());
        assert_eq!(message["seq"], 1);
        assert_eq!(message["senderId"], "ann");
        assert_eq!(message["content"], "hello team");
    }
    // Barrier: eve's own conversation with ann; the team message was queued before it.
    let leaked = messages_before_barrier(&chat, &mut eve, "eve-ann").await;
    assert!(
        leaked.is_empty(),
        "eve got another conversation's message: {leaked:?}"
    );
}

#[tokio::test]
async fn send_over_the_socket_is_acknowledged_and_idempotent_with_a_client_message_id() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let mut ann = connect(&chat, "ann").await;
    let send = |reference: &str| {
        json!({"type": "send", "ref": reference, "conversationId": "c",
               "content": "once", "clientMessageId": "k-1"})
    };
    ann.send(send("first")).await;
    let first = ann.next_of("ack").await;
    ann.send(send("retry")).await;
    let retry = ann.next_of("ack").await;
    assert_eq!(first["ref"], "first");
    assert_eq!(retry["ref"], "retry");
    assert_eq!(first["id"], retry["id"], "a retry answers the same id");
    assert_eq!(first["clientMessageId"], "k-1");
    for field in ["conversationId", "sentAt", "partition", "offset"] {
        assert_eq!(first[field], retry[field], "{field}");
    }
    let stored = chat
        .wait_messages("ann", "c", 1, std::time::Duration::from_secs(5))
        .await;
    chat.send("ann", "c", "after").await;
    let history = chat
        .wait_messages("ann", "c", 2, std::time::Duration::from_secs(5))
        .await;
    assert_eq!(stored[0]["id"], first["id"]);
    assert_eq!(history.len(), 2, "the retry stored nothing twice");
    // A refused send answers an error frame with the HTTP status, and the session stays.
    ann.send(json!({"type": "send", "ref": 7, "conversationId": "nope", "content": "x"}))
        .await;
    let error = ann.next_of("error").await;
    assert_eq!(error["ref"], 7);
    assert_eq!(error["status"], 404);
    ann.send(json!({"type": "send", "ref": 8, "conversationId": "c", "content": "  "}))
        .await;
    assert_eq!(ann.next_of("error").await["status"], 400);
}

/// The ack of a `send` may wait for the sender's own copy of the message so that both go out
/// in one write; the answers still come in the order of the frames they answer.
#[tokio::test]
async fn answers_keep_the_order_of_the_frames_with_acks_held_for_the_copies() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let mut ann = connect(&chat, "ann").await;
    for round in 0..20 {
        let (send_ref, ping_ref) = (format!("s{round}"), format!("p{round}"));
        ann.send(
            json!({"type": "send", "ref": send_ref, "conversationId": "c",
                        "content": format!("m{round}")}),
        )
        .await;
        ann.send(json!({"type": "ping", "ref": ping_ref})).await;
        let mut frames = Vec::new();
        let is_copy =
            |f: &Value| f["type"] == "message" && f["message"]["content"] == format!("m{round}");
        while !(frames.iter().any(is_copy) && frames.iter().any(|f| f["type"] == "pong")) {
            frames.push(ann.next().await);
        }
        let answers: Vec<&Value> = frames.iter().filter(|f| f["type"] != "message").collect();
        assert_eq!(answers.len(), 2, "{frames:?}");
        assert_eq!(
            (&answers[0]["type"], &answers[0]["ref"]),
            (&json!("ack"), &json!(send_ref))
        );
        assert_eq!(
            (&answers[1]["type"], &answers[1]["ref"]),
            (&json!("pong"), &json!(ping_ref))
        );
        let copy = frames.iter().find(|f| is_copy(f)).unwrap();
        assert_eq!(copy["message"]["id"], answers[0]["id"]);
    }
}

/// With a store slow to apply (a failpoint sleeps in each of its writes), a send's ack waits
/// for the sender's copy of the message only so long (it comes while the message is not stored
/// yet), and an answer to a later frame does not overtake it.
#[tokio::test]
async fn a_held_ack_goes_out_alone_when_the_store_lags_and_before_later_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = command(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--rate-limit", "0"],
    );
    cmd.env("FAILPOINTS", "store::apply=sleep(1500)");
    let chat = chat_server_from(dir, cmd).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let mut ann = connect(&chat, "ann").await;
    // The session's queue opens once its first frame is handled.
    ann.send(json!({"type": "ping", "ref": "p0"})).await;
    assert_eq!(ann.next_of("pong").await["ref"], "p0");

    ann.send(json!({"type": "send", "ref": "s1", "conversationId": "c", "content": "one"}))
        .await;
    ann.send(json!({"type": "ping", "ref": "p1"})).await;
    let (first, second) = (ann.next().await, ann.next().await);
    assert_eq!(
        (&first["type"], &first["ref"]),
        (&json!("ack"), &json!("s1"))
    );
    assert_eq!(
        (&second["type"], &second["ref"]),
        (&json!("pong"), &json!("p1"))
    );

    ann.send(json!({"type": "send", "ref": "s2", "conversationId": "c", "content": "two"}))
        .await;
    let ack = ann.next_of("ack").await;
    assert_eq!(ack["ref"], "s2");
    let stored = chat.all_messages("ann", "c").await;
    assert!(
        stored.iter().all(|m| m["id"] != ack["id"]),
        "the ack waited for the store: {stored:?}"
    );
    let copy = ann
        .until(|f| f["type"] == "message" && f["message"]["content"] == "two")
        .await;
    assert_eq!(copy.last().unwrap()["message"]["id"], ack["id"]);
}

#[tokio::test]
async fn participant_changes_are_announced_and_a_removed_participant_receives_nothing_more() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    chat.conversation("bob", "bob-ann", &["ann"]).await;
    let mut ann = connect(&chat, "ann").await;
    let mut bob = connect(&chat, "bob").await;
    let mut cat = connect(&chat, "cat").await;

    let added = chat
        .post(
            "ann",
            "/api/conversations/c/participants",
            json!({"userId": "cat"}),
        )
        .await;
    assert_eq!(added.status(), 204);
    for session in [&mut ann, &mut bob, &mut cat] {
        let updated = session.next_of("conversation.updated").await;
        assert_eq!(updated["conversation"]["id"], "c");
        assert_eq!(
            updated["conversation"]["participants"],
            json!(["ann", "bob", "cat"])
        );
    }

    let removed = chat
        .call(
            Some("ann"),
            reqwest::Method::DELETE,
            "/api/conversations/c/participants/bob",
            None,
        )
        .await;
    assert_eq!(removed.status(), 204);
    let updated = bob.next_of("conversation.updated").await;
    assert_eq!(
        updated["conversation"]["participants"],
        json!(["ann", "cat"]),
        "the removed user learns it"
    );

    chat.send("ann", "c", "after the removal").await;
    assert_eq!(cat.next_message().await["content"], "after the removal");
    assert_eq!(ann.next_message().await["content"], "after the removal");
    let leaked = messages_before_barrier(&chat, &mut bob, "bob-ann").await;
    assert!(
        leaked.is_empty(),
        "a removed participant got a message: {leaked:?}"
    );
}

#[tokio::test]
async fn a_write_delay_spaces_writes_and_loses_or_reorders_nothing() {
    let delay = std::time::Duration::from_millis(300);
    let chat = ws_server("[ws]\nwriteDelayMs = 300\n").await;
    chat.conversation("ann", "c", &["bob"]).await;
    let mut bob = connect(&chat, "bob").await;
    bob.send(json!({"type": "ping"})).await;
    bob.next_of("pong").await;

    // A quiet session gets its first frame at once; the rest of the burst waits for the delay.
    chat.send("ann", "c", "burst 0").await;
    let first = bob.next_message().await;
    let first_at = std::time::Instant::now();
    for i in 1..20 {
        chat.send("ann", "c", &format!("burst {i}")).await;
    }
    let second = bob.next_message().await;
    let gap = first_at.elapsed();
    assert!(
        gap >= delay / 2,
        "the second frame came {gap:?} after the first, inside the {delay:?} write delay"
    );
    let mut frames = vec![
        json!({"type": "message", "message": first}),
        json!({"type": "message", "message": second}),
    ];
    frames.extend(
        bob.until(|f| f["type"] == "message" && f["message"]["seq"] == 20)
            .await,
    );
    assert_eq!(message_seqs(&frames), (1..=20).collect::<Vec<u64>>());
}
