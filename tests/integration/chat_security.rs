//! The chat API's refusals: 401 without a valid token on every route, 404 with an identical
//! body for unknown conversations and for conversations the caller is not in (existence is not
//! leaked), 400 naming the field for malformed or invalid input, and that a refused request
//! changes nothing.

use crate::common;

use std::time::Duration;

use common::chat::{chat_server, problem};
use reqwest::Method;
use serde_json::{json, Value};

/// Every chat route, with a body where it takes one; `{c}` is the conversation.
fn routes(c: &str) -> Vec<(Method, String, Option<Value>)> {
    let m = format!("/api/conversations/{c}/messages");
    vec![
        (Method::GET, format!("/api/conversations/{c}"), None),
        (
            Method::POST,
            format!("/api/conversations/{c}/participants"),
            Some(json!({"userId": "eve"})),
        ),
        (
            Method::DELETE,
            format!("/api/conversations/{c}/participants/ann"),
            None,
        ),
        (
            Method::POST,
            format!("/api/conversations/{c}/read"),
            Some(json!({"seq": 1})),
        ),
        (Method::POST, m.clone(), Some(json!({"content": "hi"}))),
        (Method::GET, m.clone(), None),
        (Method::GET, format!("{m}/some-id"), None),
        (
            Method::PATCH,
            format!("{m}/some-id"),
            Some(json!({"content": "x"})),
        ),
        (Method::DELETE, format!("{m}/some-id"), None),
    ]
}

#[tokio::test]
async fn every_chat_route_needs_a_token() {
    let chat = chat_server(&[]).await;
    let mut all = routes("c");
    all.push((Method::GET, "/api/conversations".into(), None));
    all.push((
        Method::POST,
        "/api/conversations".into(),
        Some(json!({"participants": []})),
    ));
    for (method, path, body) in all {
        let response = chat.call(None, method.clone(), &path, body).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer",
            "{method} {path}"
        );
        problem(response, 401).await;
    }
}

#[tokio::test]
async fn outsiders_get_the_same_404_as_for_a_conversation_that_does_not_exist() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "secret", &["bob"]).await;
    let message = chat.send("ann", "secret", "psst").await;
    chat.wait_messages("ann", "secret", 1, Duration::from_secs(1))
        .await;
    let real = routes("secret");
    let missing = routes("nothing");
    for ((method, path, body), (_, missing_path, _)) in real.into_iter().zip(missing) {
        let outsider = problem(
            chat.call(Some("eve"), method.clone(), &path, body.clone())
                .await,
            404,
        )
        .await;
        let unknown = problem(
            chat.call(Some("eve"), method.clone(), &missing_path, body)
                .await,
            404,
        )
        .await;
        // Each answer names its own request; everything else must be the same.
        let normalized = without_request_id(outsider)
            .to_string()
            .replace("secret", "nothing");
        assert_eq!(
            normalized,
            without_request_id(unknown).to_string(),
            "{method} {path}"
        );
    }
    let by_id = format!(
        "/api/conversations/secret/messages/{}",
        message["id"].as_str().unwrap()
    );
    problem(chat.get("eve", &by_id).await, 404).await;
    let list: Value = chat.get_json("eve", "/api/conversations").await;
    assert_eq!(list["items"], json!([]));
    // Nothing the outsider tried changed the conversation.
    let view: Value = chat.get_json("ann", "/api/conversations/secret").await;
    assert_eq!(view["participants"], json!(["ann", "bob"]));
    assert_eq!(view["lastSeq"], 1);
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field_and_changes_nothing() {
    let chat = chat_server(&["--rate-limit", "0"]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    chat.conversation("ann", "other", &[]).await;
    let elsewhere = chat.send("ann", "other", "elsewhere").await;
    let first = chat.send("ann", "c", "first").await;
    chat.wait_messages("ann", "c", 1, Duration::from_secs(1))
        .await;
    let before = chat.history("ann", "c", "").await;
    let path = "/api/conversations/c/messages";
    let cases = [
        (json!({}), "content"),
        (json!({"content": 5}), "content"),
        (json!({"content": "   "}), "content"),
        (
            json!({"content": "x", "clientMessageId": ""}),
            "clientMessageId",
        ),
        (json!({"content": "x", "replyTo": "nope"}), "replyTo"),
        (
            json!({"content": "x", "replyTo": elsewhere["id"]}),
            "replyTo",
        ),
        (json!({"content": "x", "mentions": ["eve"]}), "mentions"),
        (json!({"content": "x", "mentions": "bob"}), "mentions"),
    ];
    for (body, field) in cases {
        let refused = problem(chat.post("ann", path, body.clone()).await, 400).await;
        assert!(
            refused["detail"].as_str().unwrap().contains(field),
            "{body} → {refused}"
        );
    }
    let malformed = reqwest::Client::new()
        .post(format!("{}{path}", chat.server.base))
        .bearer_auth(chat.token("ann"))
        .header("content-type", "application/json")
        .body("{\"content\": ")
        .send()
        .await
        .unwrap();
    problem(malformed, 400).await;
    let missing_participants = chat
        .post("ann", "/api/conversations", json!({"id": "x", "title": 5}))
        .await;
    assert!(problem(missing_participants, 400).await["detail"]
        .as_str()
        .unwrap()
        .contains("title"));
    problem(chat.get("ann", "/api/conversations/x").await, 404).await;

    // Valid replies and mentions are kept.
    let reply = chat
        .post(
            "ann",
            path,
            json!({"content": "re", "replyTo": first["id"], "mentions": ["bob", "bob"]}),
        )
        .await;
    assert_eq!(reply.status(), 202);
    let stored = chat
        .wait_messages("ann", "c", 2, Duration::from_secs(1))
        .await;
    assert_eq!(stored[1]["replyTo"], first["id"]);
    assert_eq!(stored[1]["mentions"], json!(["bob"]));
    let page = chat.history("ann", "c", "?limit=1&before=2").await;
    assert_eq!(
        page["items"], before["items"],
        "the refused sends stored nothing"
    );
}

/// A problem body without its `requestId`, which differs from request to request.
fn without_request_id(mut problem: Value) -> Value {
    let removed = problem
        .as_object_mut()
        .and_then(|fields| fields.remove("requestId"));
    assert!(
        removed.is_some(),
        "every problem names its request: {problem}"
    );
    problem
}
