//! A server whose open-file limit is low refuses new WebSocket sessions cleanly once the
//! sessions it allows (the limit minus the descriptors kept for everything else) are open: 503
//! problem+json, while HTTP keeps answering.

use crate::common;

use common::chat::chat_server_from;
use common::server::{command, with_open_file_limit};
use common::ws::{connect, refused};

/// Descriptors kept for everything but sessions (`hub::fd_limit::RESERVED_DESCRIPTORS`).
const RESERVED: u64 = 256;

#[tokio::test]
async fn sessions_beyond_the_open_file_limit_are_refused_with_503() {
    const LIMIT: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let serve = command(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--durability", "never"],
    );
    let chat = chat_server_from(dir, with_open_file_limit(&serve, LIMIT)).await;
    let allowed = LIMIT - RESERVED;
    let mut sessions = Vec::new();
    for n in 0..allowed {
        sessions.push(connect(&chat, &format!("user{n}")).await);
    }
    let (status, problem) = refused(&chat, &format!("?token={}", chat.token("one-more"))).await;
    assert_eq!(status, 503, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&allowed.to_string()),
        "{problem}"
    );
    let health = reqwest::get(format!("{}/healthz", chat.server.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "HTTP still answers");
    drop(sessions.pop());
    // A freed slot is usable again (the server unregisters the closed session first).
    let mut reopened = None;
    for _ in 0..100 {
        if chat
            .metrics()
            .await
            .contains(&format!("tidings_ws_sessions {}", allowed - 1))
        {
            reopened = Some(connect(&chat, "one-more").await);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reopened.is_some(), "the slot was never freed");
}
