//! The chat HTTP API end to end against the real binary: conversations (create, get, list by
//! recent activity with cursor paging, participants), messages (202 acks, dense seq, history
//! paging, idempotent retries, edit and delete) and read state.

use crate::common;

use std::time::Duration;

use common::chat::{chat_server, problem};
use reqwest::Method;
use serde_json::{json, Value};

fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn conversations_are_created_listed_by_activity_and_paged() {
    let chat = chat_server(&[]).await;
    let created = chat
        .conversation("ann", "team.chat:1", &["bob", "ann", "bob"])
        .await;
    assert_eq!(created["id"], "team.chat:1");
    assert_eq!(
        created["participants"],
        json!(["ann", "bob"]),
        "caller first, deduplicated"
    );
    assert_eq!(created["lastMessage"], Value::Null);
    assert_eq!(created["lastReadSeq"], 0);
    assert_eq!(created["unreadCount"], 0);
    assert!(created["updatedAt"].as_str().unwrap().ends_with('Z'));

    let assigned = chat
        .post("ann", "/api/conversations", json!({"participants": []}))
        .await;
    assert_eq!(assigned.status(), 201);
    let assigned: Value = assigned.json().await.unwrap();
    assert!(
        !assigned["id"].as_str().unwrap().is_empty(),
        "the server assigns an id"
    );

    let taken = chat
        .post(
            "bob",
            "/api/conversations",
            json!({"id": "team.chat:1", "participants": []}),
        )
        .await;
    problem(taken, 409).await;
    let invalid = chat
        .post(
            "ann",
            "/api/conversations",
            json!({"id": "a b", "participants": []}),
        )
        .await;
    let body = problem(invalid, 400).await;
    assert!(body["detail"].as_str().unwrap().contains("id"), "{body}");

    chat.conversation("ann", "c3", &[]).await;
    // The oldest conversation becomes the most recent with a message.
    chat.send("ann", "team.chat:1", "hello").await;
    chat.wait_messages("ann", "team.chat:1", 1, Duration::from_secs(1))
        .await;
    let page: Value = chat.get_json("ann", "/api/conversations?limit=2").await;
    assert_eq!(ids(&page["items"]), ["team.chat:1", "c3"]);
    let cursor = page["nextCursor"].as_str().expect("a next page").to_owned();
    let rest: Value = chat
        .get_json(
            "ann",
            &format!("/api/conversations?limit=2&cursor={cursor}"),
        )
        .await;
    assert_eq!(ids(&rest["items"]), [assigned["id"].as_str().unwrap()]);
    assert_eq!(rest["nextCursor"], Value::Null);
    let first = &page["items"][0];
    assert_eq!(first["lastMessage"]["content"], "hello");
    assert_eq!(first["lastMessage"]["seq"], 1);

    let one: Value = chat.get_json("bob", "/api/conversations/team.chat:1").await;
    assert_eq!(one["unreadCount"], 1, "ann's message is unread for bob");
    assert_eq!(one["lastReadSeq"], 0);

    problem(chat.get("ann", "/api/conversations?limit=0").await, 400).await;
    problem(chat.get("ann", "/api/conversations?limit=x").await, 400).await;
    problem(
        chat.get("ann", "/api/conversations?cursor=%25%25").await,
        400,
    )
    .await;
}

#[tokio::test]
async fn sends_are_acked_durable_stored_once_in_dense_seq_order() {
    let chat = chat_server(&["--rate-limit", "0"]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let path = "/api/conversations/c/messages";
    let response = chat
        .post(
            "ann",
            path,
            json!({"content": "one", "senderId": "mallory", "clientMessageId": "k1"}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(ack["status"], "accepted");
    assert_eq!(ack["conversationId"], "c");
    assert_eq!(ack["clientMessageId"], "k1");
    for field in ["id", "sentAt", "partition", "offset"] {
        assert!(!ack[field].is_null(), "{field} in {ack}");
    }
    let stored = chat
        .wait_messages("ann", "c", 1, Duration::from_secs(1))
        .await;
    assert_eq!(
        stored[0]["id"], ack["id"],
        "a 202'd message is readable within 1 s"
    );
    assert_eq!(
        stored[0]["senderId"], "ann",
        "the body's senderId is ignored"
    );
    assert_eq!(stored[0]["senderName"], "ann", "no name claim: the user id");
    assert_eq!(stored[0]["deleted"], false);
    assert_eq!(stored[0]["mentions"], json!([]));

    // A retry answers the first ack exactly; nothing is stored twice.
    let retry: Value = chat
        .post_json(
            "ann",
            path,
            json!({"content": "one", "clientMessageId": "k1"}),
        )
        .await;
    assert_eq!(retry, ack);
    // Concurrent duplicates of a fresh key all get one id.
    let acks = concurrent_sends(
        &chat,
        path,
        json!({"content": "two", "clientMessageId": "k2"}),
        8,
    )
    .await;
    assert!(acks.iter().all(|a| a["id"] == acks[0]["id"]), "{acks:?}");
    // The same key from another sender is another message.
    let bob: Value = chat
        .post_json(
            "bob",
            path,
            json!({"content": "three", "clientMessageId": "k2"}),
        )
        .await;
    assert_ne!(bob["id"], acks[0]["id"]);
    for n in 4..=10 {
        chat.send("bob", "c", &format!("m{n}")).await;
    }
    let all = chat
        .wait_messages("ann", "c", 10, Duration::from_secs(2))
        .await;
    let seqs: Vec<u64> = all.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=10).collect::<Vec<_>>(),
        "dense, ascending, nothing twice"
    );
    let retry_after_store: Value = chat
        .post_json(
            "ann",
            path,
            json!({"content": "one", "clientMessageId": "k1"}),
        )
        .await;
    assert_eq!(retry_after_store["id"], ack["id"]);
    assert_eq!(
        chat.history("ann", "c", "?limit=200").await["items"]
            .as_array()
            .unwrap()
            .len(),
        10
    );

    let one: Value = chat
        .get_json("bob", &format!("{path}/{}", ack["id"].as_str().unwrap()))
        .await;
    assert_eq!(one["seq"], 1);
    assert_eq!(one["content"], "one");
}

async fn concurrent_sends(
    chat: &common::chat::Chat,
    path: &str,
    body: Value,
    n: usize,
) -> Vec<Value> {
    let url = format!("{}{path}", chat.server.base);
    let token = chat.token("ann");
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (url, token, body) = (url.clone(), token.clone(), body.clone());
            tokio::spawn(async move {
                let response = reqwest::Client::new()
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 202);
                response.json::<Value>().await.unwrap()
            })
        })
        .collect();
    let mut acks = Vec::new();
    for task in tasks {
        acks.push(task.await.unwrap());
    }
    acks
}

#[tokio::test]
async fn history_pages_before_and_after_with_has_more() {
    let chat = chat_server(&["--rate-limit", "0"]).await;
    chat.conversation("ann", "c", &[]).await;
    for n in 1..=7 {
        chat.send("ann", "c", &format!("m{n}")).await;
    }
    chat.wait_messages("ann", "c", 7, Duration::from_secs(2))
        .await;
    let seqs = |page: &Value| -> Vec<u64> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    let newest = chat.history("ann", "c", "?limit=3").await;
    assert_eq!(seqs(&newest), [5, 6, 7]);
    assert_eq!(newest["hasMore"], true);
    let older = chat.history("ann", "c", "?limit=3&before=5").await;
    assert_eq!(seqs(&older), [2, 3, 4]);
    assert_eq!(older["hasMore"], true);
    let oldest = chat.history("ann", "c", "?limit=3&before=2").await;
    assert_eq!(seqs(&oldest), [1]);
    assert_eq!(oldest["hasMore"], false);
    let first = chat.history("ann", "c", "?limit=3&after=0").await;
    assert_eq!(seqs(&first), [1, 2, 3]);
    assert_eq!(first["hasMore"], true);
    let last = chat.history("ann", "c", "?limit=3&after=4").await;
    assert_eq!(seqs(&last), [5, 6, 7]);
    assert_eq!(last["hasMore"], false);

    let both = chat
        .get("ann", "/api/conversations/c/messages?before=3&after=1")
        .await;
    assert!(problem(both, 400).await["detail"]
        .as_str()
        .unwrap()
        .contains("before"));
    let too_big = chat
        .get("ann", "/api/conversations/c/messages?limit=201")
        .await;
    assert!(problem(too_big, 400).await["detail"]
        .as_str()
        .unwrap()
        .contains("limit"));
    problem(
        chat.get("ann", "/api/conversations/c/messages?after=-1")
            .await,
        400,
    )
    .await;
}

#[tokio::test]
async fn edits_and_deletes_go_through_the_log_and_only_by_the_sender() {
    let chat = chat_server(&["--rate-limit", "0"]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let first = chat.send("ann", "c", "first").await;
    chat.send("ann", "c", "second").await;
    chat.wait_messages("ann", "c", 2, Duration::from_secs(1))
        .await;
    let path = format!(
        "/api/conversations/c/messages/{}",
        first["id"].as_str().unwrap()
    );

    let edit = chat
        .call(
            Some("ann"),
            Method::PATCH,
            &path,
            Some(json!({"content": "edited"})),
        )
        .await;
    assert_eq!(edit.status(), 202);
    let ack: Value = edit.json().await.unwrap();
    assert_eq!(ack["id"], first["id"]);
    assert_eq!(ack["status"], "accepted");
    assert!(ack["partition"].is_u64() && ack["offset"].is_u64(), "{ack}");
    let forbidden = chat
        .call(
            Some("bob"),
            Method::PATCH,
            &path,
            Some(json!({"content": "x"})),
        )
        .await;
    problem(forbidden, 403).await;
    problem(
        chat.call(Some("bob"), Method::DELETE, &path, None).await,
        403,
    )
    .await;
    problem(
        chat.call(
            Some("ann"),
            Method::PATCH,
            &path,
            Some(json!({"content": ""})),
        )
        .await,
        400,
    )
    .await;
    let unknown = "/api/conversations/c/messages/no-such-message";
    problem(
        chat.call(
            Some("ann"),
            Method::PATCH,
            unknown,
            Some(json!({"content": "x"})),
        )
        .await,
        404,
    )
    .await;

    let edited = chat
        .wait_until("bob", &path, |m| m["content"] == "edited")
        .await;
    assert_eq!(edited["content"], "edited");
    assert!(edited["editedAt"].is_string());

    let delete = chat.call(Some("ann"), Method::DELETE, &path, None).await;
    assert_eq!(delete.status(), 202);
    let deleted = chat
        .wait_until("bob", &path, |m| m["deleted"] == true)
        .await;
    assert_eq!(deleted["deleted"], true);
    assert_eq!(deleted["content"], "");
    assert_eq!(deleted["seq"], 1, "a deleted message keeps its seq");
    problem(
        chat.call(Some("ann"), Method::DELETE, &path, None).await,
        409,
    )
    .await;
    let history = chat.history("bob", "c", "").await;
    assert_eq!(history["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn read_marks_move_forward_and_drive_unread_counts() {
    let chat = chat_server(&["--rate-limit", "0"]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    for n in 1..=3 {
        chat.send("ann", "c", &format!("m{n}")).await;
    }
    chat.wait_messages("bob", "c", 3, Duration::from_secs(1))
        .await;
    let view = |user: &'static str| {
        let chat = &chat;
        async move {
            let page: Value = chat.get_json(user, "/api/conversations").await;
            page["items"][0].clone()
        }
    };
    assert_eq!(view("bob").await["unreadCount"], 3);
    assert_eq!(
        view("ann").await["unreadCount"],
        0,
        "a sender has read its own messages"
    );
    assert_eq!(view("ann").await["lastReadSeq"], 3);

    let read = chat
        .post("bob", "/api/conversations/c/read", json!({"seq": 2}))
        .await;
    assert_eq!(read.status(), 204);
    let bob = view("bob").await;
    assert_eq!(bob["lastReadSeq"], 2);
    assert_eq!(bob["unreadCount"], 1);
    assert_eq!(
        chat.post("bob", "/api/conversations/c/read", json!({"seq": 1}))
            .await
            .status(),
        204
    );
    assert_eq!(
        view("bob").await["lastReadSeq"],
        2,
        "read state only moves forward"
    );
    assert_eq!(
        chat.post("bob", "/api/conversations/c/read", json!({"seq": 99}))
            .await
            .status(),
        204
    );
    let bob = view("bob").await;
    assert_eq!(bob["lastReadSeq"], 3, "clamped to lastSeq");
    assert_eq!(bob["unreadCount"], 0);
    let negative = chat
        .post("bob", "/api/conversations/c/read", json!({"seq": -1}))
        .await;
    assert!(problem(negative, 400).await["detail"]
        .as_str()
        .unwrap()
        .contains("seq"));
}

#[tokio::test]
async fn participants_are_added_and_removed_and_a_removed_user_loses_access() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "c", &[]).await;
    problem(chat.get("bob", "/api/conversations/c").await, 404).await;
    let added = chat
        .post(
            "ann",
            "/api/conversations/c/participants",
            json!({"userId": "bob"}),
        )
        .await;
    assert_eq!(added.status(), 204);
    let bob: Value = chat.get_json("bob", "/api/conversations/c").await;
    assert_eq!(bob["participants"], json!(["ann", "bob"]));
    let bad = chat
        .post(
            "ann",
            "/api/conversations/c/participants",
            json!({"userId": ""}),
        )
        .await;
    assert!(problem(bad, 400).await["detail"]
        .as_str()
        .unwrap()
        .contains("userId"));

    let removed = chat
        .call(
            Some("ann"),
            Method::DELETE,
            "/api/conversations/c/participants/bob",
            None,
        )
        .await;
    assert_eq!(removed.status(), 204);
    problem(chat.get("bob", "/api/conversations/c").await, 404).await;
    problem(chat.get("bob", "/api/conversations/c/messages").await, 404).await;
    let send = chat
        .post(
            "bob",
            "/api/conversations/c/messages",
            json!({"content": "hi"}),
        )
        .await;
    problem(send, 404).await;
    let again = chat
        .call(
            Some("ann"),
            Method::DELETE,
            "/api/conversations/c/participants/bob",
            None,
        )
        .await;
    problem(again, 404).await;
    let myself = chat
        .call(
            Some("ann"),
            Method::DELETE,
            "/api/conversations/c/participants/ann",
            None,
        )
        .await;
    assert_eq!(myself.status(), 204, "a user may always remove itself");
    problem(chat.get("ann", "/api/conversations/c").await, 404).await;
}

#[tokio::test]
async fn the_sender_name_comes_from_the_token() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "c", &[]).await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/conversations/c/messages", chat.server.base))
        .bearer_auth(chat.named_token("ann", "Ann A."))
        .json(&json!({"content": "hi", "senderName": "Mallory"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let stored = chat
        .wait_messages("ann", "c", 1, Duration::from_secs(1))
        .await;
    assert_eq!(stored[0]["senderName"], "Ann A.");
}

/// Conversation commands go through the log and the store writer decides them in log order:
/// of many requests racing to create one id (several may pass the edge's check before the
/// first is applied), exactly one gets 201 and the conversation is that one's; the others 409.
#[tokio::test]
async fn racing_creates_of_one_id_give_one_conversation_and_conflicts() {
    let chat = chat_server(&[]).await;
    let creators = ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"];
    let answers = futures_util::future::join_all(creators.iter().map(|user| {
        chat.post(
            user,
            "/api/conversations",
            json!({"id": "contested", "participants": []}),
        )
    }))
    .await;
    let mut winners = Vec::new();
    for (user, answer) in creators.iter().zip(answers) {
        match answer.status().as_u16() {
            201 => winners.push(*user),
            409 => {}
            other => panic!("{user}: unexpected status {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one creator wins: {winners:?}");
    let view = chat
        .get_json(winners[0], "/api/conversations/contested")
        .await;
    assert_eq!(view["participants"], json!([winners[0]]));
}

/// Read your writes: a message id from a 202 can be read, edited and deleted at once, before
/// the store has written the message (the request waits for the store instead of answering
/// 404).
#[tokio::test]
async fn a_message_is_readable_and_changeable_right_after_its_202() {
    let chat = chat_server(&["--rate-limit", "0"]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    for round in 0..30 {
        let id = chat.send("ann", "c", &format!("m{round}")).await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let path = format!("/api/conversations/c/messages/{id}");
        let read = chat.get("bob", &path).await;
        assert_eq!(read.status(), 200, "round {round}: GET right after the 202");
        let edited = chat
            .call(
                Some("ann"),
                Method::PATCH,
                &path,
                Some(json!({"content": "edited"})),
            )
            .await;
        assert_eq!(
            edited.status(),
            202,
            "round {round}: PATCH right after the 202"
        );
        let deleted = chat.call(Some("ann"), Method::DELETE, &path, None).await;
        assert_eq!(
            deleted.status(),
            202,
            "round {round}: DELETE right after the 202"
        );
    }
    let unknown = chat.get("bob", "/api/conversations/c/messages/nope").await;
    problem(unknown, 404).await;
}

/// Unknown fields in a chat body are a 400 naming the field, and change nothing, as topic
/// bodies are: a misspelt `participants` does not create a room of one, a misspelt
/// `clientMessageId` does not lose the client's idempotency. The sender fields of a message
/// body stay ignored, as API.md says.
#[tokio::test]
async fn unknown_fields_in_chat_bodies_are_refused_and_change_nothing() {
    let chat = chat_server(&[]).await;
    let typo = chat
        .post(
            "ann",
            "/api/conversations",
            json!({"id": "t", "participant": ["bob"]}),
        )
        .await;
    let body = problem(typo, 400).await;
    assert!(
        body["detail"].as_str().unwrap().contains("participant"),
        "{body}"
    );
    let missing = chat.get("ann", "/api/conversations/t").await;
    problem(missing, 404).await;

    chat.conversation("ann", "c", &["bob"]).await;
    let refused = [
        (
            "/api/conversations/c/messages",
            json!({"content": "x", "clientMsgId": "k"}),
        ),
        (
            "/api/conversations/c/participants",
            json!({"userId": "cat", "role": "owner"}),
        ),
        ("/api/conversations/c/read", json!({"seq": 0, "upTo": 3})),
    ];
    for (path, body) in refused {
        let response = chat.post("ann", path, body).await;
        let problem = problem(response, 400).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("unknown field"),
            "{path}: {problem}"
        );
    }
    let sent = chat
        .post_json(
            "ann",
            "/api/conversations/c/messages",
            json!({"content": "hi", "senderId": "mallory", "senderName": "M"}),
        )
        .await;
    assert_eq!(sent["status"], "accepted");
    let edit = chat
        .call(
            Some("ann"),
            Method::PATCH,
            &format!(
                "/api/conversations/c/messages/{}",
                sent["id"].as_str().unwrap()
            ),
            Some(json!({"content": "edited", "contnet": "x"})),
        )
        .await;
    problem(edit, 400).await;

    let stored = chat
        .wait_messages("ann", "c", 1, Duration::from_secs(5))
        .await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0]["senderId"].clone(), stored[0]["content"].clone()),
        (json!("ann"), json!("hi"))
    );
    let conversation = chat.get_json("ann", "/api/conversations/c").await;
    assert_eq!(conversation["participants"], json!(["ann", "bob"]));
}
