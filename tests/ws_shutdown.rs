//! SIGTERM with live WebSocket sessions: every message answered 202 before the signal is
//! stored and delivered to the sessions, then each session is closed with 1001, and the
//! process exits 0.

mod common;

use std::time::Duration;

use common::chat::chat_server;
use common::server::{sigterm, wait_exit};
use common::ws::{connect, message_seqs};
use serde_json::json;

#[tokio::test]
async fn shutdown_delivers_what_was_stored_then_closes_sessions_with_1001() {
    const SENT: u64 = 50;
    let mut chat = chat_server(&["--rate-limit", "0"]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let mut bob = connect(&chat, "bob").await;
    let mut ann = connect(&chat, "ann").await;
    bob.send(json!({"type": "ping"})).await;
    ann.send(json!({"type": "ping"})).await;
    for n in 1..=SENT {
        chat.send("ann", "c", &format!("m{n}")).await;
    }
    sigterm(&chat.server);
    for session in [&mut bob, &mut ann] {
        let (code, frames) = session.until_closed().await;
        assert_eq!(code, 1001);
        assert_eq!(
            message_seqs(&frames),
            (1..=SENT).collect::<Vec<_>>(),
            "every accepted message before the close"
        );
    }
    let status = wait_exit(&mut chat.server, Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
}
