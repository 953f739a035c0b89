//! The web console (`GET /`) in a real browser (Debian's chromium through playwright-core)
//! against the real server: two users chat (new conversation, send, live receive, typing, read
//! receipt, edit, delete, reload), an offline period heals with no gap and no duplicate, and an
//! admin sees a topic's offsets move, a group's lag fall to 0 and a live tail. The scenarios are
//! in `tests/clients/console_browser.mjs`, found by the accessible names of docs/console.md.
//! Plus the page's own headers (CSP, types, caching) over plain HTTP.
//!
//! `TIDINGS_CONSOLE_SCREENSHOTS=DIR` makes the chat and admin scenarios save their screenshots
//! there (docs/img/ holds the ones the docs show).

use crate::common;

use std::time::Duration;

use common::browser::ensure_chromium;
use common::chat::{authenticator, chat_server, Chat};
use common::clients;
use serde_json::{json, Value};

/// The browser script's configuration for `scenario` with tokens of alice, bob and an admin.
fn config(chat: &Chat, scenario: &str) -> Value {
    let admin = authenticator(chat.dir.path()).issue(
        "ops",
        Some("Operator"),
        &["admin".to_owned()],
        Duration::from_secs(3600),
    );
    json!({
        "scenario": scenario,
        "base": chat.server.base,
        "chromium": ensure_chromium(),
        "conversation": "c-offline",
        "screenshots": screenshots_dir(),
        "tokens": {"alice": chat.token("alice"), "bob": chat.token("bob"), "ops": admin},
    })
}

/// `TIDINGS_CONSOLE_SCREENSHOTS`, relative to the crate's root (the script runs elsewhere).
fn screenshots_dir() -> Option<String> {
    let dir = std::env::var_os("TIDINGS_CONSOLE_SCREENSHOTS")?;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    Some(
        dir.to_str()
            .expect("a UTF-8 screenshot directory")
            .to_owned(),
    )
}

async fn run(chat: &Chat, scenario: &str) -> Value {
    let result = clients::run("console_browser.mjs", &config(chat, scenario)).await;
    assert!(result.get("error").is_none(), "{scenario}: {result:#}");
    result
}

fn texts(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Two users in two browser contexts: alice starts a conversation from the form, bob's list
/// shows it with one unread message, both see each other's messages live, bob's typing and read
/// mark reach alice, alice's edit and delete reach bob, and a reload reopens the conversation
/// with the same history.
#[tokio::test]
async fn two_users_chat_in_the_console() {
    let chat = chat_server(&[]).await;
    let result = run(&chat, "chat").await;

    assert_eq!(
        result["fragmentRemoved"], true,
        "the token left the address bar"
    );
    let entry = result["bobEntry"].as_str().unwrap_or_default();
    assert!(
        entry.contains("Team") && entry.contains("1 unread"),
        "{entry}"
    );
    assert_eq!(
        result["renderedAsText"], true,
        "markup in a message stays text"
    );
    assert_eq!(result["seenBy"], "Seen by bob");
    assert_eq!(result["typing"], "bob is typing…");
    assert_eq!(result["editedMarked"], 1);
    let expected = [
        "hello bob, edited",
        "hi alice",
        "This message was deleted",
        "see you at 3",
    ];
    assert_eq!(texts(&result["bobMessages"]), expected, "{result:#}");
    assert_eq!(texts(&result["aliceMessages"]), expected);
    assert_eq!(texts(&result["afterReload"]), expected);

    // What the browsers showed is what the server stored.
    let history = chat
        .history("bob", &conversation_id(&chat, "bob").await, "")
        .await;
    let stored: Vec<&str> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        stored,
        ["hello bob, edited", "hi alice", "", "see you at 3"]
    );
}

async fn conversation_id(chat: &Chat, user: &str) -> String {
    let list = chat.get_json(user, "/api/conversations").await;
    list["items"][0]["id"]
        .as_str()
        .expect("a conversation")
        .to_owned()
}

/// Bob's browser goes offline while alice sends five messages and comes back: the console
/// shows it was offline, resumes, and then holds every message once, in order.
#[tokio::test]
async fn an_offline_period_heals_with_no_gap_and_no_duplicate() {
    let chat = chat_server(&[]).await;
    let created = chat
        .post_json(
            "alice",
            "/api/conversations",
            json!({"id": "c-offline", "title": "Offline test", "participants": ["bob"]}),
        )
        .await;
    assert_eq!(created["id"], "c-offline");
    let result = run(&chat, "offline").await;

    assert_eq!(texts(&result["whileOffline"]), ["m1", "m2", "m3"]);
    let all: Vec<String> = (1..=9).map(|n| format!("m{n}")).collect();
    assert_eq!(texts(&result["messages"]), all, "{result:#}");
}

/// A conversation of 130 messages opens on its newest page (not all of it), and scrolling up
/// loads the older pages until the first message, each message once and in order.
#[tokio::test]
async fn history_pages_back_on_scroll() {
    let chat = chat_server(&["--rate-limit", "0"]).await;
    chat.post_json(
        "alice",
        "/api/conversations",
        json!({"id": "c-offline", "title": "Offline test", "participants": ["bob"]}),
    )
    .await;
    for n in 1..=130 {
        chat.send("alice", "c-offline", &format!("m{n}")).await;
    }
    chat.wait_messages("bob", "c-offline", 130, Duration::from_secs(10))
        .await;
    let mut config = config(&chat, "paging");
    config["count"] = json!(130);
    let result = clients::run("console_browser.mjs", &config).await;
    assert!(result.get("error").is_none(), "{result:#}");

    let first_page = result["firstPage"].as_u64().unwrap_or_default();
    assert!((1..130).contains(&first_page), "{result:#}");
    let all: Vec<String> = (1..=130).map(|n| format!("m{n}")).collect();
    assert_eq!(texts(&result["messages"]), all);
}

/// An admin token's console: a topic's high watermark moves as records are published, a
/// group's lag falls to 0 once it commits, the tail shows a record published while it runs,
/// and the rates read /metrics.
#[tokio::test]
async fn an_admin_sees_offsets_move_and_lag_fall_to_zero() {
    let chat = chat_server(&[]).await;
    let result = run(&chat, "admin").await;

    assert_eq!(result["topicBefore"], json!(["orders", "0", "0", "3"]));
    assert_eq!(result["topicAfter"], json!(["orders", "0", "0", "5"]));
    assert_eq!(
        result["lagBefore"],
        json!(["billing", "orders", "0", "2", "5", "3"])
    );
    assert_eq!(
        result["lagAfter"],
        json!(["billing", "orders", "0", "5", "5", "0"])
    );
    let tail = texts(&result["tail"]);
    assert_eq!(tail.last().copied(), Some(r#"#5  {"n":6,"live":true}"#));
    assert!(result["rates"]
        .as_str()
        .unwrap_or_default()
        .contains("sessions1"));
}

/// The page and its files come from the binary with their types, a strict CSP (no inline
/// script, sockets to this host only), nosniff and revalidation; no token is needed to load
/// them, an unknown file is a 404 problem.
#[tokio::test]
async fn the_console_is_served_with_a_strict_policy() {
    let chat = chat_server(&[]).await;
    let http = reqwest::Client::new();
    let base = &chat.server.base;
    let page = http.get(format!("{base}/")).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-cache");
    let host = base.trim_start_matches("http://");
    let policy = headers["content-security-policy"].to_str().expect("ASCII");
    assert!(policy.contains("default-src 'self';"), "{policy}");
    assert!(policy.contains("script-src 'self';"), "{policy}");
    assert!(
        policy.contains(&format!("connect-src 'self' ws://{host} wss://{host};")),
        "{policy}"
    );
    assert!(!policy.contains("unsafe"), "{policy}");
    let html = page.text().await.expect("page");
    assert!(html.contains(r#"<script type="module" src="/console/app.js">"#));

    let etag = headers["etag"].clone();
    let again = http
        .get(format!("{base}/"))
        .header("If-None-Match", etag)
        .send()
        .await
        .expect("revalidate");
    assert_eq!(again.status(), 304);

    for (file, kind) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let answer = http
            .get(format!("{base}/console/{file}"))
            .send()
            .await
            .expect("asset");
        assert_eq!(answer.status(), 200, "{file}");
        assert_eq!(answer.headers()["content-type"], kind, "{file}");
    }
    let missing = http
        .get(format!("{base}/console/secret.key"))
        .send()
        .await
        .expect("missing asset");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
}
