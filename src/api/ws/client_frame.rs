//! What `/ws` clients send, parsed and typed, and the typed frames the other protocols'
//! parsers (`api::signalr::protocol`, `api::socketio::protocol`) produce, so one reader
//! handles them all.
//!
//! A `/ws` text frame is a JSON object with a `type`: `send`, `read`, `typing`, `resume`,
//! `auth` or `ping`, and an optional `ref` echoed in its answer. Any text gives a typed frame or
//! a 400 naming what is wrong. Pure parsing: nothing here touches the hub, the store or the
//! socket (that is `reader.rs`).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::api::problem::ApiError;

/// `{"type":"send",…}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SendFrame {
    pub(crate) conversation_id: String,
    pub(crate) content: String,
    pub(crate) client_message_id: Option<String>,
    pub(crate) reply_to: Option<String>,
    #[serde(default)]
    pub(crate) mentions: Vec<String>,
}

/// `{"type":"typing","conversationId","typing"}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TypingFrame {
    pub(crate) conversation_id: String,
    pub(crate) typing: bool,
}

/// `{"type":"read","conversationId","seq"}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReadFrame {
    pub(crate) conversation_id: String,
    pub(crate) seq: u64,
}

/// `{"type":"resume","conversations":{id: lastSeenSeq}}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ResumeFrame {
    pub(crate) conversations: BTreeMap<String, u64>,
}

/// `{"type":"auth","token"}`: a fresh token for the session (SignalR `Authenticate(token)`,
/// Socket.IO `auth` `{token}`).
#[derive(Debug, Deserialize)]
pub(crate) struct AuthFrame {
    pub(crate) token: String,
}

/// A client frame, parsed and typed: everything [`parse_client_frame`] accepts from `/ws`
/// clients, and what SignalR clients invoke (`api::signalr::protocol`).
#[derive(Debug)]
pub(crate) enum ClientFrame {
    Send(SendFrame),
    Read(ReadFrame),
    Typing(TypingFrame),
    Resume(ResumeFrame),
    /// A fresh token: the session lives on until it expires.
    Auth(AuthFrame),
    Ping,
    /// SignalR `JoinConversation`: hear this conversation's events from now on.
    Join(String),
    /// SignalR `LeaveConversation`.
    Leave(String),
    /// SignalR's ping or stream cancellation: nothing to do but note the client is there.
    KeepAlive,
    /// SignalR's close record: the client is leaving.
    Goodbye,
}

/// One client message of a protocol that is not `/ws`'s (a SignalR record, a Socket.IO
/// packet), parsed.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A frame to handle, with the id its answer goes to (none: no answer).
    Frame(ClientFrame, Option<Value>),
    /// A well-formed request that cannot be carried out; answered with its id, if any.
    Refused(Option<Value>, ApiError),
    /// The client broke the protocol: close the connection with this error.
    Broken(String),
}

/// A frame refused before it is handled: the error, and the client's `ref` if the frame was a
/// JSON object that had one.
#[derive(Debug)]
pub(super) struct Refused {
    pub(super) reference: Option<Value>,
    pub(super) error: ApiError,
}

/// Parses a text frame into a typed client frame and its `ref`. Any text gives a frame or a
/// 400 naming what is wrong (bad JSON, not an object, a missing or mistyped field, an unknown
/// `type`); nothing here panics or nests deeper than serde_json's recursion limit.
pub(super) fn parse_client_frame(text: &str) -> Result<(ClientFrame, Option<Value>), Refused> {
    let refused = |reference: Option<Value>, detail: String| Refused {
        reference,
        error: ApiError::BadRequest(detail),
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => return Err(refused(None, "a frame is a JSON object with a type".into())),
        Err(e) => return Err(refused(None, format!("invalid JSON: {e}"))),
    };
    let reference = value.get("ref").cloned();
    let kind = match value.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(_) => return Err(refused(reference, "invalid type: not a string".into())),
        None => return Err(refused(reference, "missing field `type`".into())),
    };
    let frame = match kind.as_str() {
        "send" => parse(value, "send frame").map(ClientFrame::Send),
        "read" => parse(value, "read frame").map(ClientFrame::Read),
        "typing" => parse(value, "typing frame").map(ClientFrame::Typing),
        "resume" => parse(value, "resume frame").map(ClientFrame::Resume),
        "auth" => parse(value, "auth frame").map(ClientFrame::Auth),
        "ping" => Ok(ClientFrame::Ping),
        other => Err(ApiError::BadRequest(format!(
            "unknown type {other:?}: expected send, typing, read, resume, auth or ping"
        ))),
    };
    match frame {
        Ok(frame) => Ok((frame, reference)),
        Err(error) => Err(Refused { reference, error }),
    }
}

/// The frame's `ref`, if it is JSON with one: a refusal made before the frame is handled (its
/// rate) still names the frame it refuses. Only the `ref` is kept; the rest is skipped.
pub(super) fn reference_of(text: &str) -> Option<Value> {
    #[derive(Deserialize)]
    struct Reference {
        #[serde(rename = "ref")]
        reference: Option<Value>,
    }
    serde_json::from_str::<Reference>(text).ok()?.reference
}

/// A typed client frame (`kind` names it), or 400 naming what is wrong (`missing field
/// `conversationId``).
pub(crate) fn parse<T: DeserializeOwned>(value: Value, kind: &str) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::BadRequest(format!("invalid {kind}: {e}")))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn status(text: &str) -> Result<&'static str, u16> {
        match parse_client_frame(text) {
            Ok((ClientFrame::Send(_), _)) => Ok("send"),
            Ok((ClientFrame::Read(_), _)) => Ok("read"),
            Ok((ClientFrame::Typing(_), _)) => Ok("typing"),
            Ok((ClientFrame::Resume(_), _)) => Ok("resume"),
            Ok((ClientFrame::Auth(_), _)) => Ok("auth"),
            Ok((ClientFrame::Ping, _)) => Ok("ping"),
            Ok((other, _)) => panic!("/ws has no {other:?} frame"),
            Err(refused) => Err(refused.error.status().as_u16()),
        }
    }

    #[test]
    fn frames_parse_by_type_and_keep_their_ref() {
        let (frame, reference) =
            parse_client_frame(r#"{"type":"read","conversationId":"c","seq":3,"ref":[1]}"#)
                .unwrap();
        assert!(matches!(frame, ClientFrame::Read(ReadFrame { seq: 3, .. })));
        assert_eq!(reference, Some(json!([1])));
        assert_eq!(status(r#"{"type":"ping"}"#), Ok("ping"));
        assert_eq!(status(r#"{"type":"auth","token":"t"}"#), Ok("auth"));
        assert_eq!(status(r#"{"type":"auth","token":7}"#), Err(400));
        let refused = parse_client_frame(r#"{"type":"read","ref":"r"}"#).unwrap_err();
        assert_eq!(refused.reference, Some(json!("r")));
        assert!(refused.error.detail().contains("conversationId"));
        assert_eq!(status("[1]"), Err(400));
        assert_eq!(status(r#"{"type":7}"#), Err(400));
        assert_eq!(status(r#"{"type":"shout"}"#), Err(400));
    }

    #[test]
    fn a_frame_nested_100_000_deep_is_a_400_not_a_stack_overflow() {
        let deep = format!(r#"{{"type":"ping","ref":{}}}"#, "[".repeat(100_000));
        assert_eq!(status(&deep), Err(400));
        let closed = format!(
            r#"{{"type":"ping","ref":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(status(&closed), Err(400));
    }

    /// JSON objects shaped like client frames, with fields of random type and value.
    fn frame_like() -> impl Strategy<Value = String> {
        let field = prop_oneof![
            Just(json!(null)),
            any::<bool>().prop_map(|b| json!(b)),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|n| json!(n)),
            ".{0,8}".prop_map(|s| json!(s)),
            Just(json!(u64::MAX)),
            Just(json!(-1)),
            Just(json!({"c": 1})),
            Just(json!(["x"])),
        ];
        let kind = prop_oneof![
            Just("send"),
            Just("read"),
            Just("typing"),
            Just("resume"),
            Just("ping"),
            Just("auth"),
            Just("x")
        ];
        let name = prop_oneof![
            Just("conversationId"),
            Just("content"),
            Just("seq"),
            Just("typing"),
            Just("conversations"),
            Just("mentions"),
            Just("clientMessageId"),
            Just("replyTo"),
            Just("ref"),
            Just("token"),
            Just("type"),
        ];
        (kind, proptest::collection::vec((name, field), 0..6)).prop_map(|(kind, fields)| {
            let mut object = serde_json::Map::new();
            object.insert("type".into(), json!(kind));
            for (name, value) in fields {
                object.insert(name.into(), value);
            }
            Value::Object(object).to_string()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text is a typed frame or a 400, never a panic.
        #[test]
        fn any_text_is_a_frame_or_a_400(text in ".{0,64}") {
            if let Err(code) = status(&text) {
                prop_assert_eq!(code, 400);
            }
        }

        /// Any bytes read as text (lossily, as a client could send them) are a frame or a 400.
        #[test]
        fn any_bytes_are_a_frame_or_a_400(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Err(code) = status(&String::from_utf8_lossy(&raw)) {
                prop_assert_eq!(code, 400);
            }
        }

        /// Frames of the right shape with fields of the wrong type are a frame or a 400.
        #[test]
        fn frame_shaped_objects_are_a_frame_or_a_400(text in frame_like()) {
            if let Err(code) = status(&text) {
                prop_assert_eq!(code, 400);
            }
        }
    }
}
