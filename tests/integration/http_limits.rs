//! The HTTP layer under idle and slow clients, against the real server (the binary where an
//! open-file limit is set on its process, else in process): idle sockets beyond the
//! open-file limit are evicted while `/healthz`, the API and `/ws` keep answering; a client
//! that does not finish its request head is disconnected after `http.headerReadTimeoutMs`; a
//! body that stalls gets 408 problem+json; a head or target over the limits gets 431/414
//! problem+json, and so does a text rejection of axum's.

use crate::common;

use std::time::{Duration, Instant};

use common::chat::{chat_server_from, problem, Chat};
use common::server::{with_open_file_limit, Process, TestServer};
use common::ws::{command_with_config, connect, ws_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for something that must happen.
const DEADLINE: Duration = Duration::from_secs(10);

/// Starts the server in process with a configuration file holding `toml`.
async fn server(toml: &str) -> Chat {
    ws_server(toml).await
}

/// Starts the binary with a configuration file holding `toml`, under `open_files` descriptors
/// (a limit of its process). The file sits beside the data directory and is removed once the
/// server read it.
async fn limited_server(toml: &str, open_files: u64) -> Chat<Process> {
    let dir = tempfile::tempdir().expect("temp dir");
    let (serve, path) = command_with_config(&dir, toml);
    let chat = chat_server_from(dir, with_open_file_limit(&serve, open_files)).await;
    let _ = std::fs::remove_file(&path);
    chat
}

fn address<S: TestServer>(chat: &Chat<S>) -> String {
    chat.server.base().trim_start_matches("http://").to_owned()
}

/// Reads until the server closes `stream`; what it sent, or `None` if it stayed open past
/// `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(received),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// A raw HTTP answer split into its head and its body.
fn split_answer(bytes: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(bytes).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) => (head.to_owned(), body.to_owned()),
        None => (text, String::new()),
    }
}

#[tokio::test]
async fn idle_sockets_beyond_the_descriptor_limit_are_evicted_while_everything_answers() {
    const OPEN_FILES: u64 = 256;
    const IDLE: usize = 1100;
    // The test itself holds the idle sockets: it needs more than the server may have.
    rlimit::increase_nofile_limit(4 * IDLE as u64).expect("raise the test's open-file limit");
    // A header timeout far beyond the test: only eviction closes the idle sockets.
    let chat = limited_server("[http]\nheaderReadTimeoutMs = 600000\n", OPEN_FILES).await;
    let addr = address(&chat);
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    // While every idle socket is still held by the test:
    let health = tokio::time::timeout(
        DEADLINE,
        reqwest::get(format!("{}/healthz", chat.server.base)),
    )
    .await
    .expect("/healthz answers in time")
    .expect("/healthz");
    assert_eq!(health.status(), 200);
    let me = tokio::time::timeout(DEADLINE, chat.get("ann", "/api/me"))
        .await
        .expect("the API answers in time");
    assert_eq!(me.status(), 200);
    let session = tokio::time::timeout(DEADLINE, connect(&chat, "ann"))
        .await
        .expect("/ws upgrades in time");
    // The server closed the oldest idle sockets to make room (it allows 256 - 128 connections).
    let reads = idle
        .iter_mut()
        .map(|stream| read_until_closed(stream, Duration::from_secs(3)));
    let outcomes = futures_util::future::join_all(reads).await;
    let closed = outcomes.iter().filter(|outcome| outcome.is_some()).count();
    assert!(
        closed >= IDLE - 128,
        "only {closed} of {IDLE} idle sockets closed"
    );
    assert!(
        outcomes[..IDLE - 200].iter().all(Option::is_some),
        "the oldest idle sockets go first"
    );
    let metrics = chat.metrics().await;
    let evicted: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("tidings_http_connections_evicted_total "))
        .expect("the eviction counter")
        .parse()
        .expect("a number");
    assert!(evicted >= (IDLE - 128) as u64, "{evicted}");
    drop(session);
}

#[tokio::test]
async fn a_client_that_does_not_finish_its_request_head_is_disconnected() {
    let chat = server("[http]\nheaderReadTimeoutMs = 500\n").await;
    let addr = address(&chat);
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: tidings\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let sent = read_until_closed(&mut half, DEADLINE)
        .await
        .expect("disconnected after the header timeout");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "not before the timeout: {:?}",
        started.elapsed()
    );
    assert!(sent.is_empty(), "no answer to half a head");
    // A silent connection, and a kept-alive one idle after its first request, go the same way.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    assert!(read_until_closed(&mut silent, DEADLINE).await.is_some());
    let mut kept_alive = TcpStream::connect(&addr).await.unwrap();
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tidings\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut kept_alive, DEADLINE)
        .await
        .expect("closed while idle between requests");
    let (head, _) = split_answer(&answer);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_problem_json() {
    let chat = server("[http]\nbodyReadTimeoutMs = 500\n").await;
    let mut stream = TcpStream::connect(address(&chat)).await.unwrap();
    let head = format!(
        "POST /api/conversations HTTP/1.1\r\nHost: tidings\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\":",
        chat.token("ann")
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream, DEADLINE)
        .await
        .expect("an answer, then the connection closed");
    let (head, body) = split_answer(&answer);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(
        body.contains("urn:tidings:problem:request-timeout"),
        "{body}"
    );
    // Nothing was created.
    let list = chat.get_json("ann", "/api/conversations").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
}

#[tokio::test]
async fn oversized_heads_and_targets_and_text_rejections_get_problem_json() {
    let chat = server("[http]\nmaxHeaderBytes = 16384\nmaxUriBytes = 8192\n").await;
    let client = reqwest::Client::new();
    let base = &chat.server.base;
    let big_header = client
        .get(format!("{base}/healthz"))
        .header("x-padding", "h".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    let body = problem(big_header, 431).await;
    assert_eq!(body["type"], "urn:tidings:problem:request-header-too-large");
    let long_uri = client
        .get(format!("{base}/healthz?pad={}", "u".repeat(10 * 1024)))
        .send()
        .await
        .unwrap();
    let body = problem(long_uri, 414).await;
    assert_eq!(body["type"], "urn:tidings:problem:uri-too-long");
    // A path segment that is not UTF-8 is rejected by axum's `Path` extractor, as text before.
    let not_utf8 = chat.get("ann", "/api/conversations/%FF%FE").await;
    let body = problem(not_utf8, 400).await;
    assert_eq!(body["type"], "urn:tidings:problem:bad-request");
    // Far beyond the head buffer hyper refuses the head itself: still 431 (documented).
    let huge = client
        .get(format!("{base}/healthz"))
        .header("x-padding", "h".repeat(200 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 431);
}
