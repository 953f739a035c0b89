//! Bad input and limits on `/ws` against the real binary: rejected tokens get 401 and no
//! session; invalid frames (bad JSON, unknown or missing type, a missing field, binary, too
//! large, too many) get an `error` frame and the session stays usable; a frame above the hard
//! cap closes with 1009; the session limits refuse upgrades with 429 and 503; a session that
//! stops reading is closed with 4008 while another one keeps receiving everything; one that
//! answers no pings is closed with 1008.

use crate::common;

use std::time::{Duration, Instant};

use common::chat::{chat_server, expired_token, Chat};
use common::ws::{connect, message_seqs, refused, ws_server};
use serde_json::json;

/// The value of an unlabelled metric on `/metrics`.
async fn metric(chat: &Chat, name: &str) -> u64 {
    let text = chat.metrics().await;
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn rejected_tokens_get_401_and_never_a_session() {
    let chat = chat_server(&[]).await;
    let (status, problem) = refused(&chat, "").await;
    assert_eq!((status, problem["status"].clone()), (401, json!(401)));
    let (status, _) = refused(&chat, "?token=not-a-jwt").await;
    assert_eq!(status, 401);
    let expired = expired_token(chat.dir.path(), "ann");
    let (status, problem) = refused(&chat, &format!("?token={expired}")).await;
    assert_eq!(status, 401);
    assert!(
        problem["detail"].as_str().unwrap().contains("expired"),
        "{problem}"
    );
    assert_eq!(metric(&chat, "tidings_ws_sessions_opened_total").await, 0);
    assert_eq!(metric(&chat, "tidings_ws_sessions").await, 0);
}

#[tokio::test]
async fn invalid_frames_get_an_error_and_the_session_stays_usable() {
    let chat = ws_server("[ws]\nmaxFrameBytes = 1024\nhardFrameBytes = 4096\n").await;
    chat.conversation("ann", "c", &[]).await;
    let mut ann = connect(&chat, "ann").await;
    let cases = [
        ("{not json".to_owned(), 400, "invalid JSON"),
        (
            r#"{"type":"dance","ref":1}"#.to_owned(),
            400,
            "unknown type",
        ),
        (r#"{"ref":2}"#.to_owned(), 400, "missing field `type`"),
        (
            r#"{"type":"send","conversationId":"c"}"#.to_owned(),
            400,
            "missing field `content`",
        ),
        (
            r#"{"type":"read","conversationId":"c","seq":"x"}"#.to_owned(),
            400,
            "invalid read frame",
        ),
        (r#"[1,2]"#.to_owned(), 400, "JSON object"),
        (
            format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(2000)),
            413,
            "limit is 1024",
        ),
    ];
    for (text, status, detail) in cases {
        ann.send_text(text.clone()).await;
        let error = ann.next_of("error").await;
        assert_eq!(error["status"], status, "{text:.60}: {error}");
        assert!(
            error["detail"].as_str().unwrap().contains(detail),
            "{error}"
        );
        ann.send(json!({"type": "ping", "ref": "still"})).await;
        assert_eq!(
            ann.next_of("pong").await["ref"],
            "still",
            "usable after {text:.60}"
        );
    }
    let unknown = r#"{"type":"dance","ref":"mine"}"#.to_owned();
    ann.send_text(unknown).await;
    assert_eq!(
        ann.next_of("error").await["ref"],
        "mine",
        "the ref is echoed"
    );

    // Far above the soft limit: not even read, the session closes with 1009.
    ann.send_text(format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(8000)))
        .await;
    let (code, _) = ann.until_closed().await;
    assert_eq!(code, 1009);
}

#[tokio::test]
async fn frames_over_the_rate_get_429_and_the_session_recovers() {
    let chat = ws_server("[ws]\nframeRate = 5\n").await;
    let mut ann = connect(&chat, "ann").await;
    for n in 0..30 {
        ann.send(json!({"type": "ping", "ref": n})).await;
    }
    // Every ping gets a pong or, over the rate, an error naming the ping it refuses.
    let mut frames = Vec::new();
    for _ in 0..30 {
        frames.push(ann.next().await);
    }
    let limited = frames.iter().filter(|f| f["status"] == 429).count();
    let refs: Vec<_> = frames.iter().map(|f| f["ref"].clone()).collect();
    assert_eq!(
        refs,
        (0..30).map(|n| json!(n)).collect::<Vec<_>>(),
        "{frames:?}"
    );
    let answered = frames.iter().filter(|f| f["type"] == "pong").count();
    assert!(limited >= 10, "{limited} refused of 30 at 5/s, burst 10");
    assert!(answered >= 10, "the burst is answered: {answered}");
    // The session recovers: a frame is answered again once the bucket holds a token (at 5/s,
    // within 200 ms). Polled, not slept; the refill's timing is proven on a paused clock in
    // `api::ws::frame_rate`.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        ann.send(json!({"type": "ping", "ref": "later"})).await;
        let answer = ann.next().await;
        assert_eq!(answer["ref"], "later", "{answer}");
        if answer["type"] == "pong" {
            break;
        }
        assert_eq!(answer["status"], 429, "{answer}");
        assert!(Instant::now() < deadline, "never answered again");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn session_limits_refuse_upgrades_with_problems() {
    let chat = ws_server("[ws]\nmaxSessions = 3\nmaxSessionsPerUser = 2\n").await;
    let token = chat.token("ann");
    let _one = connect(&chat, "ann").await;
    let _two = connect(&chat, "ann").await;
    let (status, problem) = refused(&chat, &format!("?token={token}")).await;
    assert_eq!(status, 429, "{problem}");
    let _three = connect(&chat, "bob").await;
    let (status, problem) = refused(&chat, &format!("?token={}", chat.token("cat"))).await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(metric(&chat, "tidings_ws_sessions").await, 3);
    assert_eq!(metric(&chat, "tidings_ws_sessions_refused_total").await, 2);
}

#[tokio::test]
async fn a_session_that_stops_reading_is_closed_with_4008_while_another_gets_everything() {
    let chat =
        ws_server("[ws]\nqueueFrames = 64\n[limits]\nrateLimit = 0\nmaxContentBytes = 131072\n")
            .await;
    chat.conversation("ann", "c", &["slow", "fast"]).await;
    let mut slow = connect(&chat, "slow").await;
    let mut fast = connect(&chat, "fast").await;
    slow.send(json!({"type": "ping"})).await;
    fast.send(json!({"type": "ping"})).await;
    let content = "x".repeat(100_000);
    let mut sent = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        loop {
            let frame = fast.next().await;
            if frame["type"] == "message" {
                seqs.push(frame["message"]["seq"].as_u64().unwrap());
            }
            if frame["message"]["content"] == "last" {
                return seqs;
            }
        }
    });
    while metric(&chat, "tidings_ws_sessions_closed_slow_total").await == 0 {
        assert!(
            Instant::now() < deadline && sent < 2000,
            "never closed the slow session"
        );
        for _ in 0..20 {
            chat.send("ann", "c", &content).await;
            sent += 1;
        }
    }
    chat.send("ann", "c", "last").await;
    sent += 1;
    let seqs = reader.await.unwrap();
    assert_eq!(
        seqs,
        (1..=sent).collect::<Vec<_>>(),
        "the fast session got everything"
    );

    let (code, frames) = slow.until_closed().await;
    assert_eq!(code, 4008);
    let got = message_seqs(&frames);
    assert!(got.len() < sent as usize, "the slow one missed some");
    assert_eq!(
        got,
        (1..=got.len() as u64).collect::<Vec<_>>(),
        "in order, then closed"
    );
}

#[tokio::test]
async fn a_connection_that_answers_no_pings_is_closed_with_1008() {
    let chat = ws_server("[ws]\npingIntervalMs = 200\n").await;
    let mut ann = connect(&chat, "ann").await;
    // Not reading means not answering the server's pings either; the server's side of it is
    // watched over HTTP until it drops the session (two ping intervals, 400 ms, after the first
    // ping went unanswered).
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&chat, "tidings_ws_sessions").await > 0 {
        assert!(Instant::now() < deadline, "the session was never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, _) = ann.until_closed().await;
    assert_eq!(code, 1008);
    assert_eq!(metric(&chat, "tidings_ws_sessions").await, 0);
}
