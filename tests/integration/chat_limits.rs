//! The chat API's limits and lifecycle: 413 for bodies and contents over the limits, 429 with
//! `Retry-After` over the per-user send rate, and a graceful stop that stores every accepted
//! message before exit, so history is complete as soon as the server is ready again.

use crate::common;

use std::time::Duration;

use common::chat::{chat_server, chat_server_in, problem, Chat};
use common::server::{sigterm, wait_exit};
use serde_json::json;

#[tokio::test]
async fn oversized_bodies_and_contents_are_413_and_store_nothing() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "c", &[]).await;
    let path = "/api/conversations/c/messages";
    let content = "x".repeat(16 * 1024 + 1);
    let too_long = problem(
        chat.post("ann", path, json!({ "content": content })).await,
        413,
    )
    .await;
    assert!(
        too_long["detail"].as_str().unwrap().contains("content"),
        "{too_long}"
    );
    let body = "y".repeat(1024 * 1024 + 10);
    problem(
        chat.post("ann", path, json!({ "content": body })).await,
        413,
    )
    .await;
    let exactly = "z".repeat(16 * 1024);
    assert_eq!(
        chat.post("ann", path, json!({ "content": exactly }))
            .await
            .status(),
        202
    );
    let stored = chat
        .wait_messages("ann", "c", 1, Duration::from_secs(1))
        .await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["seq"], 1);
}

/// Over the rate a send is 429 problem+json with the `Retry-After` (in whole seconds) after
/// which a token is back, and stores nothing; other users have buckets of their own. That a
/// send goes through again after that wait is proven on a paused clock in `api::rate_limit`.
#[tokio::test]
async fn sends_over_the_rate_limit_are_429_with_retry_after() {
    let chat = chat_server(&["--rate-limit", "1"]).await;
    // Created by another user: a new conversation takes from its creator's write budget too.
    chat.conversation("owner", "c", &["ann"]).await;
    chat.send("ann", "c", "one").await;
    chat.send("ann", "c", "two").await;
    let path = "/api/conversations/c/messages";
    let limited = chat.post("ann", path, json!({"content": "three"})).await;
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry_after, 1, "less than one token missing at 1/s");
    problem(limited, 429).await;
    chat.conversation("bob", "d", &[]).await;
    chat.send("bob", "d", "bob has his own bucket").await;
    // A barrier instead of a wait: the owner's send goes through the same partition after the
    // refusal was answered, so a stored "three" would come before it.
    chat.send("owner", "c", "barrier").await;
    let stored = chat
        .wait_messages("ann", "c", 3, Duration::from_secs(5))
        .await;
    let contents: Vec<_> = stored.iter().map(|m| m["content"].clone()).collect();
    assert_eq!(contents, [json!("one"), json!("two"), json!("barrier")]);
}

/// Stops the server with SIGTERM (it must exit 0) and starts it again on the same directory.
async fn restart(chat: Chat) -> Chat {
    let Chat {
        mut server, dir, ..
    } = chat;
    sigterm(&server);
    assert!(wait_exit(&mut server, Duration::from_secs(20)).success());
    drop(server);
    chat_server_in(dir, &["--listen", "127.0.0.1:0", "--durability", "never"]).await
}

#[tokio::test]
async fn a_graceful_stop_stores_everything_accepted() {
    let chat = chat_server(&["--rate-limit", "0"]).await;
    chat.conversation("ann", "c", &[]).await;
    let mut acks = Vec::new();
    for n in 0..200 {
        acks.push(chat.send("ann", "c", &format!("m{n}")).await["id"].clone());
    }
    let again = restart(chat).await;
    let page = again.history("ann", "c", "?limit=200").await;
    let ids: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(
        ids, acks,
        "every accepted message, in order, at once after restart"
    );
    // An idempotent retry after a restart answers from the store's index. No wait for the
    // store before the stop: the graceful stop stores it.
    let path = "/api/conversations/c/messages";
    let body = json!({"content": "k", "clientMessageId": "k"});
    let first = again.post_json("ann", path, body.clone()).await;
    let third = restart(again).await;
    let retry = third.post_json("ann", path, body).await;
    assert_eq!(retry, first, "same id, sentAt, partition and offset");
    assert_eq!(
        third.history("ann", "c", "?after=200").await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
