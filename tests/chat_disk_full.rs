//! A full disk: sends are answered 202 while the log can make them durable, then 503 problem+json
//! with `Retry-After` — never a 202 for a message that is not on disk — and `/readyz` turns 503.
//! Moved to a disk with room, the data directory restarts with every 202'd message in history
//! exactly once.
//!
//! The disk is a small tmpfs mounted for the test, which needs root (as in CI); elsewhere the
//! test says it was skipped.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::chat::{chat_server_in, problem};
use serde_json::json;

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> bool {
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn a_full_disk_answers_503_and_keeps_every_accepted_message() {
    let mount_point = tempfile::tempdir().unwrap();
    if !mount_tmpfs(mount_point.path(), "24m") {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let _mounted = Mounted(mount_point.path());
    let data = tempfile::tempdir_in(mount_point.path()).unwrap();
    let chat = chat_server_in(data, &["--listen", "127.0.0.1:0", "--rate-limit", "0"]).await;
    chat.conversation("alice", "full", &["bob"]).await;

    let content = "x".repeat(16_000);
    let path = "/api/conversations/full/messages";
    let mut accepted = Vec::new();
    let refusal = loop {
        let response = chat
            .post("alice", path, json!({ "content": content }))
            .await;
        if response.status() != 202 {
            break response;
        }
        let ack: serde_json::Value = response.json().await.unwrap();
        accepted.push(ack["id"].as_str().unwrap().to_owned());
        assert!(accepted.len() < 5_000, "the 24 MB disk never filled up");
    };
    assert!(!accepted.is_empty(), "some sends fit on the disk");
    assert_eq!(refusal.headers()["retry-after"], "5");
    problem(refusal, 503).await;
    for _ in 0..5 {
        let again = chat
            .post("alice", path, json!({ "content": "short" }))
            .await;
        assert_eq!(
            again.status(),
            503,
            "no 202 once the log could not make data durable"
        );
    }
    let ready = reqwest::get(format!("{}/readyz", chat.server.base))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    // Move the directory to a disk with room and restart there.
    let roomy = tempfile::tempdir().unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", chat.dir.path().display()))
        .arg(roomy.path())
        .status()
        .unwrap();
    assert!(copied.success());
    drop(chat);
    let chat = chat_server_in(roomy, &["--listen", "127.0.0.1:0", "--rate-limit", "0"]).await;
    let stored = chat
        .wait_messages("alice", "full", accepted.len(), Duration::from_secs(10))
        .await;
    let ids: Vec<&str> = stored.iter().map(|m| m["id"].as_str().unwrap()).collect();
    let seqs: Vec<u64> = stored.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "seq dense from 1"
    );
    for id in &accepted {
        assert_eq!(
            ids.iter().filter(|s| *s == id).count(),
            1,
            "202'd message {id} stored once"
        );
    }
    // At most the sends that were refused could have reached the disk as well; none was 202'd.
    assert!(
        stored.len() <= accepted.len() + 1,
        "{} stored, {} accepted",
        stored.len(),
        accepted.len()
    );
}
