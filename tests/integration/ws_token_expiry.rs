//! Sessions end when their token expires, on every socket endpoint, unless the client renews
//! the token in-band: `/ws` closes with 4001 and a reason and handles nothing sent after the
//! expiry; a renewal (`auth`, SignalR `Authenticate`, Socket.IO `auth`) with a fresh token of
//! the same user keeps the session open past the old expiry; another user's token (403) or a bad
//! one (401) is refused and changes nothing; SignalR gets its close record (reconnect allowed)
//! and Socket.IO an `error` event and DISCONNECT before the close; a token already expired
//! (within the verifier's leeway) opens no session.
//!
//! Tokens are JWTs signed with the server's secret with an exact `exp` a couple of seconds
//! ahead; the server runs on the wall clock (a JWT's `exp` is wall-clock time), so these tests
//! wait for real expiries of about two seconds.

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::chat::{chat_server, Chat};
use common::raw::{RawHub, RawSocketIo};
use common::ws::{connect_with_header, refused, DEADLINE};
use serde_json::{json, Value};

/// How far ahead the short tokens expire.
const SHORT: u64 = 2;

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// A token for `user` signed with the server's secret that expires at `exp` (seconds since the
/// epoch).
fn token_expiring_at(chat: &Chat, user: &str, exp: u64) -> String {
    let secret = std::fs::read(chat.dir.path().join("secret.key")).expect("the server's secret");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": user, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .expect("sign")
}

/// A token for `user` that expires [`SHORT`] seconds from the next whole second, and that `exp`.
fn short_token(chat: &Chat, user: &str) -> (String, u64) {
    let exp = unix_now().as_secs() + 1 + SHORT;
    (token_expiring_at(chat, user, exp), exp)
}

/// Waits until the wall clock is `margin` past `exp`.
async fn sleep_past(exp: u64, margin: Duration) {
    let until = Duration::from_secs(exp) + margin;
    tokio::time::sleep(until.saturating_sub(unix_now())).await;
}

/// A `/ws` session's token expires: the session closes with 4001 and a reason saying what to
/// do, not before the token's `exp`; a send written after the expiry is not handled (no ack,
/// nothing stored).
#[tokio::test]
async fn a_ws_session_closes_with_4001_when_its_token_expires() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let (token, exp) = short_token(&chat, "ann");
    let mut ann = connect_with_header(&chat, &token).await;
    ann.send_message("c", "before", "r1").await;
    let accepted = ann.next_of("ack").await;
    assert_eq!(accepted["ref"], "r1");
    assert_eq!(accepted["status"], "accepted", "{accepted}");

    // Written after the expiry, before the client reads the close frame.
    sleep_past(exp, Duration::from_millis(300)).await;
    ann.send_message("c", "after expiry", "r2").await;
    let (code, reason, frames) = ann.until_close_frame().await;
    let closed_at = unix_now();
    assert_eq!(code, 4001, "{reason}");
    assert!(reason.contains("token expired"), "{reason}");
    assert!(closed_at >= Duration::from_secs(exp), "closed before exp");
    assert!(
        frames.iter().all(|f| f["ref"] != "r2"),
        "the late send was answered: {frames:?}"
    );
    // The acked send is stored (a late one would have been acked before the close frame).
    let stored = chat.wait_messages("bob", "c", 1, DEADLINE).await;
    let contents: Vec<&Value> = stored.iter().map(|m| &m["content"]).collect();
    assert_eq!(contents, [&json!("before")], "{stored:?}");
}

/// A fresh token of the same user sent in-band moves the session's end: it stays open and
/// handles sends past the first token's expiry, then closes at the new one.
#[tokio::test]
async fn a_ws_session_renewed_in_band_outlives_its_first_token() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let (token, exp) = short_token(&chat, "ann");
    let mut ann = connect_with_header(&chat, &token).await;
    let renewed_exp = exp + 2;
    let fresh = token_expiring_at(&chat, "ann", renewed_exp);
    ann.send(json!({"type": "auth", "token": fresh, "ref": "renew"}))
        .await;
    let ack = ann.next_of("ack").await;
    assert_eq!(
        ack,
        json!({"type": "ack", "ref": "renew", "expiresAt": renewed_exp})
    );

    sleep_past(exp, Duration::from_millis(500)).await;
    ann.send(json!({"type": "ping", "ref": "p"})).await;
    assert_eq!(ann.next_of("pong").await["ref"], "p");
    ann.send_message("c", "after the first expiry", "s").await;
    assert_eq!(ann.next_of("ack").await["status"], "accepted");

    let (code, _, _) = ann.until_close_frame().await;
    assert_eq!(code, 4001);
    assert!(
        unix_now() >= Duration::from_secs(renewed_exp),
        "closed early"
    );
}

/// A renewal with another user's token is refused with 403, with a bad or expired token with
/// 401; the session stays as it was: its user sends as before and it still ends at the first
/// token's expiry.
#[tokio::test]
async fn a_renewal_with_another_users_or_a_bad_token_is_refused_and_changes_nothing() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let (token, exp) = short_token(&chat, "ann");
    let mut ann = connect_with_header(&chat, &token).await;
    let far = unix_now().as_secs() + 3600;
    let refusals = [
        (token_expiring_at(&chat, "bob", far), 403),
        ("not.a.token".to_owned(), 401),
        (token_expiring_at(&chat, "ann", far - 7200), 401),
    ];
    for (i, (renewal, status)) in refusals.into_iter().enumerate() {
        ann.send(json!({"type": "auth", "token": renewal, "ref": i}))
            .await;
        let error = ann.next_of("error").await;
        assert_eq!(error["ref"], i, "{error}");
        assert_eq!(error["status"], status, "{error}");
    }
    ann.send_message("c", "still ann", "s").await;
    assert_eq!(ann.next_of("ack").await["status"], "accepted");
    let stored = chat.wait_messages("bob", "c", 1, DEADLINE).await;
    assert_eq!(stored[0]["senderId"], "ann", "{stored:?}");

    let (code, _, _) = ann.until_close_frame().await;
    assert_eq!(code, 4001);
    let closed_at = unix_now();
    assert!(closed_at >= Duration::from_secs(exp), "closed early");
    assert!(
        closed_at < Duration::from_secs(exp + 5),
        "the refused renewals moved the expiry"
    );
}

/// A token that expired a moment ago (still within the verifier's clock leeway for a single
/// request) opens no session: `/ws` answers 401, a Socket.IO CONNECT gets CONNECT_ERROR 401.
#[tokio::test]
async fn a_token_that_already_expired_opens_no_session() {
    let chat = chat_server(&[]).await;
    let just_expired = token_expiring_at(&chat, "ann", unix_now().as_secs() - 1);
    let (status, problem) = refused(&chat, &format!("?token={just_expired}")).await;
    assert_eq!(status, 401, "{problem}");

    let mut socket = RawSocketIo::open(&chat).await;
    socket
        .send(&format!(r#"40{{"token":"{just_expired}"}}"#))
        .await;
    let refused = socket.next().await;
    let error: Value = serde_json::from_str(refused.strip_prefix("44").expect("44")).unwrap();
    assert_eq!(error["data"]["status"], 401, "{error}");
}

/// A SignalR session: `Authenticate` with another user's token is refused (403), with a fresh
/// one of its user answered with the new expiry and the session outlives its first token; at
/// the new token's expiry the client gets the close record (reconnect allowed, the reason
/// named), then the close frame 4001.
#[tokio::test]
async fn a_signalr_session_renews_with_authenticate_and_ends_at_expiry() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let (token, exp) = short_token(&chat, "ann");
    let mut hub = RawHub::connect(&chat, &token).await;

    let bobs = token_expiring_at(&chat, "bob", exp + 3600);
    hub.invoke("1", "Authenticate", json!([bobs])).await;
    let refused = hub.next().await;
    assert_eq!(refused["invocationId"], "1");
    assert!(
        refused["error"].as_str().unwrap().starts_with("403"),
        "{refused}"
    );
    let renewed_exp = exp + 2;
    let fresh = token_expiring_at(&chat, "ann", renewed_exp);
    hub.invoke("2", "Authenticate", json!([fresh])).await;
    assert_eq!(
        hub.next().await,
        json!({"type": 3, "invocationId": "2", "result": {"expiresAt": renewed_exp}})
    );

    sleep_past(exp, Duration::from_millis(500)).await;
    hub.invoke("3", "SendMessage", json!(["c", "after the first expiry"]))
        .await;
    // The message may reach the session before the completion does: both come, in any order.
    let sent = hub.completion("3").await;
    assert_eq!(sent["result"]["status"], "accepted", "{sent}");

    let (records, code) = hub.until_closed().await;
    let code = code.expect("a close frame");
    assert!(
        unix_now() >= Duration::from_secs(renewed_exp),
        "closed early"
    );
    let close = records.last().expect("a close record");
    assert_eq!(close["type"], 7, "{records:?}");
    assert_eq!(close["allowReconnect"], true);
    assert!(
        close["error"].as_str().unwrap().contains("token expired"),
        "{close}"
    );
    assert_eq!(code, 4001);
}

/// A Socket.IO session: the `auth` event with another user's token is acknowledged with a 403
/// error, with a fresh one of its user with the new expiry, and the session outlives its first
/// token; at the new token's expiry the client gets an `error` event (401, the reason), then
/// DISCONNECT (`41`, so socket.io-client does not reconnect with the expired token by
/// itself), then the close frame 4001.
#[tokio::test]
async fn a_socketio_session_renews_with_auth_and_ends_at_expiry_with_a_disconnect() {
    let chat = chat_server(&[]).await;
    chat.conversation("ann", "c", &["bob"]).await;
    let (token, exp) = short_token(&chat, "ann");
    let mut socket = RawSocketIo::connect(&chat, &token).await;

    let bobs = token_expiring_at(&chat, "bob", exp + 3600);
    socket
        .send(&format!(r#"421["auth",{{"token":"{bobs}"}}]"#))
        .await;
    let refused: Value =
        serde_json::from_str(socket.next().await.strip_prefix("431").expect("431")).unwrap();
    assert_eq!(refused[0]["error"]["status"], 403, "{refused}");
    let renewed_exp = exp + 2;
    let fresh = token_expiring_at(&chat, "ann", renewed_exp);
    socket
        .send(&format!(r#"422["auth",{{"token":"{fresh}"}}]"#))
        .await;
    assert_eq!(
        socket.next().await,
        format!(r#"432[{{"expiresAt":{renewed_exp}}}]"#)
    );

    sleep_past(exp, Duration::from_millis(500)).await;
    socket
        .send(r#"423["send",{"conversationId":"c","content":"after the first expiry"}]"#)
        .await;
    // The message event may come before the acknowledgement: both come, in any order.
    let sent = socket.next_with("433").await;
    assert_eq!(sent[0]["status"], "accepted", "{sent}");

    let (packets, code) = socket.until_closed().await;
    assert!(
        unix_now() >= Duration::from_secs(renewed_exp),
        "closed early"
    );
    let n = packets.len();
    assert!(n >= 2, "{packets:?}");
    let error: Value = serde_json::from_str(
        packets[n - 2]
            .strip_prefix("42")
            .expect("an event before the DISCONNECT"),
    )
    .unwrap();
    assert_eq!(error[0], "error", "{packets:?}");
    assert_eq!(error[1]["status"], 401);
    assert!(
        error[1]["detail"]
            .as_str()
            .unwrap()
            .contains("token expired"),
        "{error}"
    );
    assert_eq!(packets[n - 1], "41", "{packets:?}");
    assert_eq!(code, 4001);
}
