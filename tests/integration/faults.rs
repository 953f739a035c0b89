//! Faults injected where the log and the store meet the disk (failpoints armed through the
//! `FAILPOINTS` variable of the real server; they exist only in test builds, so none of this
//! needs root): each failure ends in a refused write (503 problem+json with `Retry-After`,
//! never a 202 for data that is not durable), `/readyz` 503, and a restart without the fault
//! that has every 202'd message in history exactly once, with a dense seq.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::chat::{chat_server_from, problem, Chat};
use common::server::{command, sigterm, wait_exit, Process};
use reqwest::Response;
use serde_json::{json, Value};

const CONVERSATION: &str = "faults";
const PATH: &str = "/api/conversations/faults/messages";

/// `tidings serve` with durable acks (the default) and no rate limit, failpoints `failpoints`.
fn serve(dir: &Path, failpoints: &str) -> Command {
    let mut cmd = command(dir, &["--listen", "127.0.0.1:0", "--rate-limit", "0"]);
    cmd.env("FAILPOINTS", failpoints);
    cmd
}

/// Starts a server with `failpoints` armed on a fresh directory, with the test conversation.
async fn start_with(failpoints: &str) -> Chat<Process> {
    let dir = tempfile::tempdir().expect("temp dir");
    let cmd = serve(dir.path(), failpoints);
    let chat = chat_server_from(dir, cmd).await;
    chat.conversation("alice", CONVERSATION, &["bob"]).await;
    chat
}

async fn send(chat: &Chat<Process>, content: &str) -> Response {
    chat.post("alice", PATH, json!({ "content": content }))
        .await
}

/// Sends until the first answer that is not 202; returns the 202'd ids and that answer. Each
/// send has a client message id, as a chat client's has: the store writer records it, so its
/// batches write to disk even while the conversation is busy (a busy conversation's messages
/// wait in memory for the checkpoint).
async fn send_until_refused(chat: &Chat<Process>) -> (Vec<String>, Response) {
    let content = "x".repeat(2_000);
    let mut accepted = Vec::new();
    loop {
        let body = json!({ "content": content, "clientMessageId": format!("c{}", accepted.len()) });
        let response = chat.post("alice", PATH, body).await;
        if response.status() != 202 {
            return (accepted, response);
        }
        let ack: Value = response.json().await.expect("ack JSON");
        accepted.push(ack["id"].as_str().expect("id").to_owned());
        assert!(accepted.len() < 500, "the fault never struck");
    }
}

async fn readyz(chat: &Chat<Process>) -> Response {
    reqwest::get(format!("{}/readyz", chat.server.base))
        .await
        .expect("readyz")
}

/// Asserts a 503 problem+json with `Retry-After` and the problem slug `kind`.
async fn assert_unavailable(response: Response, kind: &str) {
    assert!(
        response.headers().contains_key("retry-after"),
        "Retry-After on {:?}",
        response.headers()
    );
    let body = problem(response, 503).await;
    assert_eq!(
        body["type"],
        format!("urn:tidings:problem:{kind}"),
        "{body}"
    );
}

/// The refusal is a clean 503, every later send is refused too, and `/readyz` says 503.
async fn assert_refusing(chat: &Chat<Process>, refusal: Response, kind: &str) {
    assert_unavailable(refusal, kind).await;
    for _ in 0..5 {
        let again = send(chat, "after the fault").await;
        assert_eq!(again.status(), 503, "no 202 once the log failed");
    }
    assert_unavailable(readyz(chat).await, kind).await;
}

/// Stops the server with SIGTERM (so the engine writes out what it holds, torn data included)
/// and returns what it printed on stderr.
fn stop(mut server: Process) -> String {
    sigterm(&server);
    wait_exit(&mut server, Duration::from_secs(30));
    server.log.to_end()
}

/// Restarts on the same directory without failpoints; returns the server and the stderr of
/// the stopped one.
async fn restart(chat: Chat<Process>) -> (Chat<Process>, String) {
    let Chat { server, dir, .. } = chat;
    let stderr = stop(server);
    let cmd = serve(dir.path(), "");
    (chat_server_from(dir, cmd).await, stderr)
}

/// Every 202'd message is in history exactly once, seq dense from 1, and nothing beyond the one
/// send whose group met the fault reached the store.
async fn assert_history_keeps(chat: &Chat<Process>, accepted: &[String]) {
    let stored = chat
        .wait_messages(
            "alice",
            CONVERSATION,
            accepted.len(),
            Duration::from_secs(20),
        )
        .await;
    let ids: Vec<&str> = stored
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    let seqs: Vec<u64> = stored
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "dense seq"
    );
    for id in accepted {
        assert_eq!(ids.iter().filter(|s| *s == id).count(), 1, "{id} once");
    }
    assert!(
        stored.len() <= accepted.len() + 1,
        "{} stored, {} accepted",
        stored.len(),
        accepted.len()
    );
}

/// The whole story for one failpoint: 202s, a clean refusal, a restart that keeps them all.
async fn refused_then_recovered(failpoints: &str, kind: &str) -> String {
    let chat = start_with(failpoints).await;
    let (accepted, refusal) = send_until_refused(&chat).await;
    assert!(!accepted.is_empty(), "sends before the fault are accepted");
    assert_refusing(&chat, refusal, kind).await;
    let (chat, stderr) = restart(chat).await;
    assert_eq!(readyz(&chat).await.status(), 200, "ready after the restart");
    assert_history_keeps(&chat, &accepted).await;
    let after = send(&chat, "after the restart").await;
    assert_eq!(after.status(), 202, "writes accepted again");
    stderr
}

/// A failing fdatasync after some groups: no 202 for the group it covered or any later one.
#[tokio::test]
async fn an_fsync_failure_refuses_writes_and_a_restart_keeps_every_accepted_message() {
    refused_then_recovered("log::sync=25*off->return", "storage-unavailable").await;
}

/// A failing write of a batch into the engine.
#[tokio::test]
async fn a_write_failure_refuses_writes_and_a_restart_keeps_every_accepted_message() {
    refused_then_recovered("log::append::write=25*off->return", "storage-unavailable").await;
}

/// "No space left on device" where a full disk really shows, in the engine's flush: refused,
/// and the data directory opens again (it used to say "corrupt data").
#[tokio::test]
async fn enospc_refuses_writes_and_leaves_the_directory_openable() {
    let stderr =
        refused_then_recovered("log::flush=25*off->return(enospc)", "storage-unavailable").await;
    assert!(stderr.contains("No space left on device"), "{stderr}");
}

/// ENOSPC while a batch is written into the engine, not at its flush.
#[tokio::test]
async fn enospc_on_a_batch_write_refuses_writes_and_loses_nothing_accepted() {
    refused_then_recovered(
        "log::append::write=25*off->return(enospc)",
        "storage-unavailable",
    )
    .await;
}

/// A torn batch (half of it reaches the engine, then the write fails): the restart drops the
/// torn tail instead of calling the directory corrupt, and keeps everything acknowledged.
#[tokio::test]
async fn a_torn_batch_is_dropped_on_restart_and_nothing_accepted_is_lost() {
    let chat = start_with("log::append::torn=25*off->return").await;
    let (accepted, refusal) = send_until_refused(&chat).await;
    assert!(!accepted.is_empty(), "sends before the fault are accepted");
    assert_refusing(&chat, refusal, "storage-unavailable").await;
    let (chat, _) = restart(chat).await;
    assert_history_keeps(&chat, &accepted).await;
    let Chat { server, .. } = chat;
    let stderr = stop(server);
    assert!(
        stderr.contains("dropping a corrupt batch at the tail"),
        "the torn batch reached the disk and recovery dropped it: {stderr}"
    );
}

/// A slow disk (every fdatasync takes 300 ms): nothing is refused, and no send is acknowledged
/// before the sync that makes it durable has finished.
#[tokio::test]
async fn a_slow_disk_delays_acks_until_the_sync_and_refuses_nothing() {
    const SYNC_MS: u64 = 300;
    let chat = start_with(&format!("log::sync=sleep({SYNC_MS})")).await;
    let sends = (0..6).map(|i| {
        let chat = &chat;
        async move {
            let started = Instant::now();
            let response = send(chat, &format!("slow {i}")).await;
            let elapsed = started.elapsed();
            assert_eq!(response.status(), 202, "a slow disk is no reason to refuse");
            let ack: Value = response.json().await.expect("ack JSON");
            (ack["id"].as_str().expect("id").to_owned(), elapsed)
        }
    });
    let acks = futures_util::future::join_all(sends).await;
    for (id, elapsed) in &acks {
        assert!(
            *elapsed >= Duration::from_millis(SYNC_MS),
            "{id} acknowledged after {elapsed:?}, before its {SYNC_MS} ms sync finished"
        );
    }
    assert_eq!(readyz(&chat).await.status(), 200);
    let accepted: Vec<String> = acks.into_iter().map(|(id, _)| id).collect();
    let (chat, _) = restart(chat).await;
    assert_history_keeps(&chat, &accepted).await;
}

/// The free-space guard: below `limits.minFreeDiskBytes` sends are refused with 503
/// `storage-full` and `/readyz` says 503, before the disk is really full; once space is freed
/// both recover by themselves, without a restart. The failpoint reads the "free bytes" from a
/// file the test writes.
#[tokio::test]
async fn a_nearly_full_disk_refuses_writes_and_recovers_by_itself() {
    let control = tempfile::tempdir().expect("temp dir");
    let free = control.path().join("free-bytes");
    std::fs::write(&free, "100000000000").expect("write free bytes");
    let chat = start_with(&format!("log::free_space=return({})", free.display())).await;
    let before = chat.send("alice", CONVERSATION, "plenty of room").await;

    std::fs::write(&free, "1000").expect("write free bytes");
    let refused = wait_readyz(&chat, 503).await;
    assert_unavailable(refused, "storage-full").await;
    assert_unavailable(send(&chat, "no room").await, "storage-full").await;

    std::fs::write(&free, "100000000000").expect("write free bytes");
    wait_readyz(&chat, 200).await;
    let after = chat.send("alice", CONVERSATION, "room again").await;
    let stored = chat
        .wait_messages("alice", CONVERSATION, 2, Duration::from_secs(10))
        .await;
    let ids: Vec<&Value> = stored.iter().map(|m| &m["id"]).collect();
    assert_eq!(
        ids,
        vec![&before["id"], &after["id"]],
        "the refused send left nothing"
    );
}

/// Polls `/readyz` until it answers `status` (the guard looks at the disk once a second).
async fn wait_readyz(chat: &Chat<Process>, status: u16) -> Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = readyz(chat).await;
        if response.status() == status {
            return response;
        }
        assert!(Instant::now() < deadline, "/readyz never answered {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The store cannot write (its sled inserts fail): the store writer stops, `/readyz` turns 503,
/// sends are refused; a restart applies every 202'd message exactly once. The writer's third
/// write fails: the conversation's record, its first message (written alone, the conversation
/// being quiet), then that message's client id.
#[tokio::test]
async fn a_store_write_failure_turns_readyz_503_and_a_restart_applies_everything() {
    let stderr = refused_then_recovered("store::apply=2*off->return", "storage-unavailable").await;
    assert!(stderr.contains("store writer stopped"), "{stderr}");
}

/// A failing write of the store's checkpoint, which alone writes a busy conversation's
/// messages: the store writers stop as on a write of their own, rather than hold in memory
/// what cannot reach the disk.
#[tokio::test]
async fn a_store_checkpoint_failure_turns_readyz_503_and_a_restart_applies_everything() {
    let stderr =
        refused_then_recovered("store::checkpoint=3*off->return", "storage-unavailable").await;
    assert!(stderr.contains("store writer stopped"), "{stderr}");
    assert!(
        stderr.contains("the store's last checkpoint failed"),
        "{stderr}"
    );
}
