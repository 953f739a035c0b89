//! The docs stay true: docs/quickstart.md works as written (its `sh` blocks, run in order in one
//! bash shell in an empty directory, with the server on a free port instead of 8787 and the
//! binary under test on the `PATH` instead of the build step, end with Bob's socket holding
//! Alice's message and Alice reading both messages in order).

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

const PAGE: &str = include_str!("../../docs/quickstart.md");

/// The fenced blocks of `page` whose info string is `info`, in order.
fn blocks<'a>(page: &'a str, info: &str) -> Vec<&'a str> {
    let fence = format!("```{info}\n");
    let mut found = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let end = body.find("\n```").expect("a closed fence");
        found.push(&body[..end]);
        rest = &body[end + 4..];
    }
    found
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

/// Makes sure `python3 -m venv` works (Debian splits it into `python3-venv`).
fn ensure_python_venv() {
    let works = || {
        Command::new("python3")
            .args(["-c", "import venv, ensurepip"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if !works() {
        common::clients::apt_install(&["python3-venv"]);
    }
    assert!(
        works(),
        "the quick start needs python3 with venv: install python3-venv"
    );
}

#[test]
fn the_quick_start_runs_as_written() {
    let skipped = blocks(PAGE, "sh skip-test");
    assert_eq!(
        skipped,
        ["cargo build --release\nexport PATH=\"$PWD/target/release:$PATH\""],
        "only the build step is left to the test harness"
    );
    let steps = blocks(PAGE, "sh");
    assert!(steps.len() >= 6, "the page's steps: {steps:?}");
    ensure_python_venv();

    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let script = format!(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{}\n",
        steps.join("\n").replace("127.0.0.1:8787", &address)
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = Path::new(env!("CARGO_BIN_EXE_tidings"));
    let path = format!(
        "{}:{}",
        binary.parent().expect("the binary's directory").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("timeout")
        .args(["180", "bash", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("TIDINGS_LISTEN", &address)
        .env_remove("TIDINGS_CONFIG")
        .env_remove("TIDINGS_DATA_DIR")
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let server_log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "the quick start failed ({}):\n{stdout}\nstderr:\n{}\nserver.log:\n{server_log}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    let bob_log = std::fs::read_to_string(dir.path().join("bob.log")).expect("bob.log");
    let frames: Vec<Value> = bob_log
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON frame per line"))
        .collect();
    assert_eq!(frames[0]["type"], "ready", "{bob_log}");
    let hi = frames
        .iter()
        .find(|f| f["type"] == "message" && f["message"]["content"] == "Hi Bob!")
        .unwrap_or_else(|| panic!("Alice's message reached Bob live: {bob_log}"));
    assert_eq!(hi["message"]["senderName"], "Alice");

    let history: Value = stdout
        .lines()
        .rev()
        .find_map(|line| {
            serde_json::from_str::<Value>(line)
                .ok()
                .filter(|v| v["items"].is_array())
        })
        .unwrap_or_else(|| panic!("Alice's read of the history: {stdout}"));
    let items = history["items"].as_array().expect("items");
    let read: Vec<(u64, &str)> = items
        .iter()
        .map(|m| (m["seq"].as_u64().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(read, [(1, "Hi Bob!"), (2, "Hi Alice, got it.")]);
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(title: &str) -> String {
    title
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The `## ` headings of a page, outside code blocks.
fn sections(page: &str) -> Vec<&str> {
    let mut in_code = false;
    let mut found = Vec::new();
    for line in page.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code {
            if let Some(title) = line.strip_prefix("## ") {
                found.push(title.trim());
            }
        }
    }
    found
}

/// The entries of a page's `Contents:` list: (text, anchor).
fn contents(page: &str) -> Option<Vec<(String, String)>> {
    let mut lines = page.lines().skip_while(|line| *line != "Contents:");
    lines.next()?;
    let entries = lines
        .map_while(|line| line.strip_prefix("- ["))
        .map(|entry| {
            let (text, rest) = entry.split_once("](#").expect("an entry links to #anchor");
            let (link, _) = rest.split_once(')').expect("a closed link");
            (text.to_owned(), link.to_owned())
        })
        .collect();
    Some(entries)
}

#[test]
fn every_long_page_has_a_contents_list_of_all_its_sections() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&docs).expect("docs/") {
        let path = entry.expect("a docs entry").path();
        if path.extension().is_none_or(|ext| ext != "md") {
            continue;
        }
        let page = std::fs::read_to_string(&path).expect("a readable page");
        let name = path.display();
        let Some(listed) = contents(&page) else {
            assert!(
                page.lines().count() < 250,
                "{name} is long and has no `Contents:` list"
            );
            continue;
        };
        let expected: Vec<(String, String)> = sections(&page)
            .into_iter()
            .map(|title| (title.replace('`', ""), anchor(title)))
            .collect();
        assert_eq!(
            listed, expected,
            "{name}: the contents list and the sections differ"
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} pages have a contents list");
}
