//! SIGTERM with live WebSocket sessions: every message answered 202 before the signal is
//! stored and delivered to the sessions, then each session is closed with 1001, and the
//! process exits 0 — also when a client stopped reading with the server's writes to it stuck.

use crate::common;

use std::time::Duration;

use common::chat::chat_process;
use common::server::{sigterm, wait_exit};
use common::ws::{connect, message_seqs};
use serde_json::json;

#[tokio::test]
async fn shutdown_delivers_what_was_stored_then_closes_sessions_with_1001() {
    const SENT: u64 = 50;
    let mut chat = chat_process(&["--rate-limit", "0"]).await;
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

#[tokio::test]
async fn a_client_that_stopped_reading_does_not_hold_the_shutdown() {
    let mut chat = chat_process(&["--rate-limit", "0"]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let mut stalled = connect(&chat, "bob").await;
    stalled.send(json!({"type": "ping"})).await;
    // About 12 MB for bob, who reads nothing more: more than both sockets' buffers hold, fewer
    // frames than his queue holds, so his session's writer is stuck in a write, not closed 4008.
    let content = "x".repeat(16_000);
    for _ in 0..750 {
        chat.send("ann", "c", &content).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = std::time::Instant::now();
    sigterm(&chat.server);
    let status = wait_exit(&mut chat.server, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(20),
        "the shutdown took {:?}",
        signalled.elapsed()
    );
    drop(stalled);
}
