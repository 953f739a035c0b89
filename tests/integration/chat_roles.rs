//! Conversation roles, rename and delete over real HTTP and WebSocket: the creator owns the
//! conversation; owners rename, delete, add and remove members and make others owners; a member
//! doing any of that gets 403 and changes nothing; anyone may leave; the last owner leaving hands
//! ownership to the longest-standing participant; sessions get `conversation.updated` and
//! `conversation.deleted`.

use crate::common;

use std::time::Duration;

use common::chat::{chat_server, problem, Chat};
use common::ws::connect;
use reqwest::Method;
use serde_json::{json, Value};

async fn call(
    chat: &Chat,
    user: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    chat.call(Some(user), method, path, body).await
}

async fn conversation(chat: &Chat, user: &str, id: &str) -> Value {
    chat.get_json(user, &format!("/api/conversations/{id}"))
        .await
}

#[tokio::test]
async fn owners_rename_and_change_roles_members_are_refused() {
    // Proves the creator is the owner, a member's rename, removal of another, role change and
    // delete are 403 problem+json and change nothing, an owner's rename answers the renamed
    // conversation and reaches sessions, and a promoted member may then act as an owner.
    let chat = chat_server(&[]).await;
    let created = chat.conversation("ann", "team", &["bob", "cy"]).await;
    assert_eq!(created["owners"], json!(["ann"]));
    let mut bob_ws = connect(&chat, "bob").await;

    let path = "/api/conversations/team";
    let refusals = [
        (
            Method::PATCH,
            path.to_owned(),
            Some(json!({"title": "bob's"})),
        ),
        (Method::DELETE, format!("{path}/participants/cy"), None),
        (
            Method::POST,
            format!("{path}/participants"),
            Some(json!({"userId": "dan"})),
        ),
        (
            Method::PATCH,
            format!("{path}/participants/bob"),
            Some(json!({"role": "owner"})),
        ),
        (Method::DELETE, path.to_owned(), None),
    ];
    for (method, route, body) in refusals {
        let answer = call(&chat, "bob", method.clone(), &route, body).await;
        let body = problem(answer, 403).await;
        assert!(
            body["detail"].as_str().unwrap().contains("owner"),
            "{method} {route}: {body}"
        );
    }
    let unchanged = conversation(&chat, "ann", "team").await;
    assert_eq!(unchanged["title"], Value::Null);
    assert_eq!(unchanged["participants"], json!(["ann", "bob", "cy"]));
    assert_eq!(unchanged["owners"], json!(["ann"]));

    let renamed = call(
        &chat,
        "ann",
        Method::PATCH,
        path,
        Some(json!({"title": "Team"})),
    )
    .await;
    assert_eq!(renamed.status(), 200);
    let renamed: Value = renamed.json().await.unwrap();
    assert_eq!(renamed["title"], "Team");
    assert_eq!(renamed["owners"], json!(["ann"]));
    let frame = bob_ws.next_of("conversation.updated").await;
    assert_eq!(frame["conversation"]["title"], "Team");
    assert_eq!(conversation(&chat, "cy", "team").await["title"], "Team");

    for body in [
        json!({}),
        json!({"title": "x", "name": "y"}),
        json!({"title": 3}),
    ] {
        let answer = call(&chat, "ann", Method::PATCH, path, Some(body.clone())).await;
        problem(answer, 400).await;
    }
    let role_path = format!("{path}/participants/bob");
    for body in [
        json!({"role": "admin"}),
        json!({"role": "owner", "x": 1}),
        json!({}),
    ] {
        let answer = call(&chat, "ann", Method::PATCH, &role_path, Some(body.clone())).await;
        problem(answer, 400).await;
    }
    let last = call(
        &chat,
        "ann",
        Method::PATCH,
        "/api/conversations/team/participants/ann",
        Some(json!({"role": "member"})),
    )
    .await;
    problem(last, 409).await;
    let stranger = call(
        &chat,
        "ann",
        Method::PATCH,
        "/api/conversations/team/participants/zed",
        Some(json!({"role": "owner"})),
    )
    .await;
    problem(stranger, 404).await;

    let promoted = call(
        &chat,
        "ann",
        Method::PATCH,
        &role_path,
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_eq!(promoted.status(), 204);
    let frame = bob_ws.next_of("conversation.updated").await;
    assert_eq!(frame["conversation"]["owners"], json!(["ann", "bob"]));
    let removed = call(
        &chat,
        "bob",
        Method::DELETE,
        "/api/conversations/team/participants/cy",
        None,
    )
    .await;
    assert_eq!(removed.status(), 204, "an owner now");
    let demoted = call(
        &chat,
        "bob",
        Method::PATCH,
        "/api/conversations/team/participants/ann",
        Some(json!({"role": "member"})),
    )
    .await;
    assert_eq!(demoted.status(), 204);
    let now = conversation(&chat, "ann", "team").await;
    assert_eq!(now["owners"], json!(["bob"]));
    assert_eq!(now["participants"], json!(["ann", "bob"]));
}

#[tokio::test]
async fn anyone_may_leave_and_the_last_owner_leaving_promotes_the_longest_standing() {
    // Proves a member may always leave, and when the last owner leaves the participant who
    // joined first among those left becomes owner (seen over HTTP and in the frame).
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "club", &["bob", "cy"]).await;
    let added = call(
        &chat,
        "ann",
        Method::POST,
        "/api/conversations/club/participants",
        Some(json!({"userId": "dan"})),
    )
    .await;
    assert_eq!(added.status(), 204);
    let left = call(
        &chat,
        "cy",
        Method::DELETE,
        "/api/conversations/club/participants/cy",
        None,
    )
    .await;
    assert_eq!(left.status(), 204, "a member may leave");
    let mut dan_ws = connect(&chat, "dan").await;
    let owner_left = call(
        &chat,
        "ann",
        Method::DELETE,
        "/api/conversations/club/participants/ann",
        None,
    )
    .await;
    assert_eq!(owner_left.status(), 204, "an owner may leave");
    let frame = dan_ws.next_of("conversation.updated").await;
    assert_eq!(frame["conversation"]["owners"], json!(["bob"]));
    let now = conversation(&chat, "dan", "club").await;
    assert_eq!(now["participants"], json!(["bob", "dan"]));
    assert_eq!(
        now["owners"],
        json!(["bob"]),
        "the longest-standing participant"
    );
    let gone = call(&chat, "ann", Method::GET, "/api/conversations/club", None).await;
    problem(gone, 404).await;
}

#[tokio::test]
async fn an_owner_deletes_a_conversation_and_its_messages_for_everyone() {
    // Proves DELETE by the owner answers 204, every participant's session gets
    // `conversation.deleted`, the conversation leaves every list, it and its messages read 404,
    // sends to it are 404, and its id can be used again for a new, empty conversation.
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "doomed", &["bob"]).await;
    chat.conversation("ann", "kept", &["bob"]).await;
    let sent = chat.send("bob", "doomed", "hello").await;
    chat.wait_messages("ann", "doomed", 1, Duration::from_secs(5))
        .await;
    let mut bob_ws = connect(&chat, "bob").await;

    let deleted = call(
        &chat,
        "ann",
        Method::DELETE,
        "/api/conversations/doomed",
        None,
    )
    .await;
    assert_eq!(deleted.status(), 204);
    let frame = bob_ws.next_of("conversation.deleted").await;
    assert_eq!(
        frame,
        json!({"type": "conversation.deleted", "conversationId": "doomed"})
    );
    for user in ["ann", "bob"] {
        let list = chat.get_json(user, "/api/conversations").await;
        let ids: Vec<&Value> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["id"])
            .collect();
        assert_eq!(ids, [&json!("kept")], "{user}: {list}");
        problem(chat.get(user, "/api/conversations/doomed").await, 404).await;
        problem(
            chat.get(user, "/api/conversations/doomed/messages").await,
            404,
        )
        .await;
        let message = format!(
            "/api/conversations/doomed/messages/{}",
            sent["id"].as_str().unwrap()
        );
        problem(chat.get(user, &message).await, 404).await;
    }
    let send = chat
        .post(
            "bob",
            "/api/conversations/doomed/messages",
            json!({"content": "hi?"}),
        )
        .await;
    problem(send, 404).await;
    let again = call(
        &chat,
        "ann",
        Method::DELETE,
        "/api/conversations/doomed",
        None,
    )
    .await;
    problem(again, 404).await;

    let reborn = chat.conversation("bob", "doomed", &["ann"]).await;
    assert_eq!(reborn["owners"], json!(["bob"]));
    assert_eq!(reborn["lastSeq"], 0);
    assert_eq!(chat.history("ann", "doomed", "").await["items"], json!([]));
    chat.send("bob", "doomed", "fresh start").await;
    let messages = chat
        .wait_messages("ann", "doomed", 1, Duration::from_secs(5))
        .await;
    assert_eq!(messages[0]["seq"], 1);
    assert_eq!(messages[0]["content"], "fresh start");
}
