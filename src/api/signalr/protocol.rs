//! What SignalR clients send: the handshake and the hub protocol's records, parsed into the
//! same typed client frames `/ws` clients send, so one reader handles both.
//!
//! A WebSocket text frame carries one or more records, each ended by `0x1E`. The first record
//! of a connection is the handshake (`{"protocol":"json","version":1}`); after it, records are
//! told apart by their numeric `type`: 1 an invocation of a hub method (API.md's
//! `JoinConversation`, `SendMessage`, `Authenticate`, …), 4 a stream invocation (refused: no hub method
//! streams), 5 a stream cancellation, 6 a ping, 7 the client closing. A record that is not JSON,
//! not an object, has no known `type`, or a frame that does not end with the separator breaks
//! the protocol: the connection closes with the reason ([`Parsed::Broken`]). An invocation of
//! an unknown method or with arguments of the wrong number or type is refused with a 400 for
//! its completion, and the connection stays.
//!
//! Pure parsing: nothing here touches the hub, the store or the socket.

use serde_json::Value;

use super::codec::RECORD_SEPARATOR;
use crate::api::problem::ApiError;
use crate::api::ws::client_frame::{
    AuthFrame, ClientFrame, Parsed, ReadFrame, ResumeFrame, SendFrame, TypingFrame,
};

/// The records of one text frame (handshake not included), in order.
pub(crate) fn records(text: &str) -> Vec<Parsed> {
    let Some(body) = text.strip_suffix(char::from(RECORD_SEPARATOR)) else {
        return vec![Parsed::Broken(
            "a message must end with the record separator 0x1E".into(),
        )];
    };
    body.split(char::from(RECORD_SEPARATOR))
        .map(record)
        .collect()
}

/// The handshake, the first record of a connection: `Ok` for JSON version 1, else why not.
/// Whatever follows it in the same frame is returned for parsing as records.
pub(crate) fn handshake(text: &str) -> Result<&str, String> {
    let Some((first, rest)) = text.split_once(char::from(RECORD_SEPARATOR)) else {
        return Err("the handshake must end with the record separator 0x1E".into());
    };
    #[derive(serde::Deserialize)]
    struct Handshake {
        protocol: String,
        version: u32,
    }
    let handshake: Handshake = serde_json::from_str(first)
        .map_err(|e| format!("the handshake is not a valid handshake request: {e}"))?;
    if handshake.protocol != "json" {
        return Err(format!(
            "The protocol '{}' is not supported: use 'json'.",
            handshake.protocol
        ));
    }
    if handshake.version != 1 {
        return Err(format!(
            "The server does not support version {} of the 'json' protocol: use 1.",
            handshake.version
        ));
    }
    Ok(rest)
}

fn record(text: &str) -> Parsed {
    let value: Value = match serde_json::from_str(text) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => return Parsed::Broken("a message is a JSON object with a type".into()),
        Err(e) => return Parsed::Broken(format!("a message is not valid JSON: {e}")),
    };
    let id = value.get("invocationId").cloned();
    match value.get("type").and_then(Value::as_u64) {
        Some(1) => invocation(&value, id),
        Some(4) => Parsed::Refused(
            id,
            ApiError::BadRequest("no hub method streams: use invoke".into()),
        ),
        Some(5) => Parsed::Frame(ClientFrame::KeepAlive, None),
        Some(6) => Parsed::Frame(ClientFrame::KeepAlive, None),
        Some(7) => Parsed::Frame(ClientFrame::Goodbye, None),
        Some(other) => Parsed::Broken(format!("unknown message type {other}")),
        None => Parsed::Broken("a message needs a numeric type".into()),
    }
}

fn invocation(value: &Value, id: Option<Value>) -> Parsed {
    if id.as_ref().is_some_and(|id| !id.is_string()) {
        return Parsed::Broken("invocationId must be a string".into());
    }
    let Some(target) = value.get("target").and_then(Value::as_str) else {
        return Parsed::Broken("an invocation needs a target".into());
    };
    let Some(arguments) = value.get("arguments").and_then(Value::as_array) else {
        return Parsed::Broken("an invocation needs an arguments array".into());
    };
    match hub_method(target, arguments) {
        Ok(frame) => Parsed::Frame(frame, id),
        Err(error) => Parsed::Refused(id, error),
    }
}

/// The hub methods of API.md, each with its arguments checked.
fn hub_method(target: &str, arguments: &[Value]) -> Result<ClientFrame, ApiError> {
    let args = Arguments { target, arguments };
    match target {
        "JoinConversation" => {
            args.count(1, 1)?;
            Ok(ClientFrame::Join(args.string(0)?))
        }
        "LeaveConversation" => {
            args.count(1, 1)?;
            Ok(ClientFrame::Leave(args.string(0)?))
        }
        "SendMessage" => {
            args.count(2, 3)?;
            Ok(ClientFrame::Send(SendFrame {
                conversation_id: args.string(0)?,
                content: args.string(1)?,
                client_message_id: args.optional_string(2)?,
                reply_to: None,
                mentions: Vec::new(),
            }))
        }
        "Typing" => {
            args.count(2, 2)?;
            Ok(ClientFrame::Typing(TypingFrame {
                conversation_id: args.string(0)?,
                typing: args.boolean(1)?,
            }))
        }
        "MarkRead" => {
            args.count(2, 2)?;
            Ok(ClientFrame::Read(ReadFrame {
                conversation_id: args.string(0)?,
                seq: args.seq(1)?,
            }))
        }
        "Resume" => {
            args.count(2, 2)?;
            Ok(ClientFrame::Resume(ResumeFrame {
                conversations: [(args.string(0)?, args.seq(1)?)].into(),
            }))
        }
        "Authenticate" => {
            args.count(1, 1)?;
            Ok(ClientFrame::Auth(AuthFrame {
                token: args.string(0)?,
            }))
        }
        other => Err(ApiError::BadRequest(format!(
            "Unknown hub method '{other}': JoinConversation, LeaveConversation, SendMessage, \
             Typing, MarkRead, Resume or Authenticate"
        ))),
    }
}

/// The arguments of one invocation, checked one by one with errors that name the method.
struct Arguments<'a> {
    target: &'a str,
    arguments: &'a [Value],
}

impl Arguments<'_> {
    fn count(&self, least: usize, most: usize) -> Result<(), ApiError> {
        let given = self.arguments.len();
        if (least..=most).contains(&given) {
            return Ok(());
        }
        let expected = if least == most {
            least.to_string()
        } else {
            format!("{least} to {most}")
        };
        Err(ApiError::BadRequest(format!(
            "'{}' takes {expected} argument(s), the invocation gave {given}",
            self.target
        )))
    }

    fn wrong(&self, index: usize, expected: &str) -> ApiError {
        ApiError::BadRequest(format!(
            "argument {} of '{}' must be {expected}",
            index + 1,
            self.target
        ))
    }

    fn string(&self, index: usize) -> Result<String, ApiError> {
        match &self.arguments[index] {
            Value::String(text) => Ok(text.clone()),
            _ => Err(self.wrong(index, "a string")),
        }
    }

    fn optional_string(&self, index: usize) -> Result<Option<String>, ApiError> {
        match self.arguments.get(index) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(self.wrong(index, "a string or null")),
        }
    }

    fn boolean(&self, index: usize) -> Result<bool, ApiError> {
        self.arguments[index]
            .as_bool()
            .ok_or_else(|| self.wrong(index, "a boolean"))
    }

    fn seq(&self, index: usize) -> Result<u64, ApiError> {
        self.arguments[index]
            .as_u64()
            .ok_or_else(|| self.wrong(index, "a non-negative integer"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn one(text: &str) -> Parsed {
        let mut parsed = records(text);
        assert_eq!(parsed.len(), 1, "{text}");
        parsed.remove(0)
    }

    fn refusal(text: &str) -> (Option<Value>, String) {
        match one(text) {
            Parsed::Refused(id, error) => (id, error.detail()),
            other => panic!("{text}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_handshake_accepts_json_version_1_and_hands_back_what_follows() {
        assert_eq!(
            handshake("{\"protocol\":\"json\",\"version\":1}\u{1e}"),
            Ok("")
        );
        assert_eq!(
            handshake("{\"protocol\":\"json\",\"version\":1}\u{1e}{\"type\":6}\u{1e}"),
            Ok("{\"type\":6}\u{1e}")
        );
        assert!(
            handshake("{\"protocol\":\"messagepack\",\"version\":1}\u{1e}")
                .unwrap_err()
                .contains("messagepack")
        );
        assert!(handshake("{\"protocol\":\"json\",\"version\":2}\u{1e}").is_err());
        assert!(handshake("{\"protocol\":\"json\",\"version\":1}").is_err());
        assert!(handshake("hello\u{1e}").is_err());
    }

    #[test]
    fn invocations_become_client_frames_with_their_id() {
        let text = "{\"type\":1,\"invocationId\":\"4\",\"target\":\"SendMessage\",\"arguments\":[\"c\",\"hi\",\"k1\"]}\u{1e}";
        match one(text) {
            Parsed::Frame(ClientFrame::Send(send), id) => {
                assert_eq!(id, Some(json!("4")));
                assert_eq!(send.conversation_id, "c");
                assert_eq!(send.content, "hi");
                assert_eq!(send.client_message_id.as_deref(), Some("k1"));
            }
            other => panic!("{other:?}"),
        }
        let join = "{\"type\":1,\"target\":\"JoinConversation\",\"arguments\":[\"c\"]}\u{1e}";
        assert!(matches!(one(join), Parsed::Frame(ClientFrame::Join(c), None) if c == "c"));
        let two = format!("{join}{}", "{\"type\":6}\u{1e}");
        assert_eq!(records(&two).len(), 2);
    }

    #[test]
    fn wrong_methods_and_arguments_are_refused_with_the_invocation_id() {
        let (id, detail) = refusal(
            "{\"type\":1,\"invocationId\":\"1\",\"target\":\"Shout\",\"arguments\":[]}\u{1e}",
        );
        assert_eq!(id, Some(json!("1")));
        assert!(detail.contains("Unknown hub method 'Shout'"), "{detail}");
        let (_, detail) = refusal(
            "{\"type\":1,\"invocationId\":\"2\",\"target\":\"Typing\",\"arguments\":[\"c\"]}\u{1e}",
        );
        assert!(detail.contains("'Typing' takes 2 argument(s)"), "{detail}");
        let (_, detail) = refusal(
            "{\"type\":1,\"invocationId\":\"3\",\"target\":\"MarkRead\",\"arguments\":[\"c\",-1]}\u{1e}",
        );
        assert!(detail.contains("argument 2 of 'MarkRead'"), "{detail}");
        let (_, detail) = refusal(
            "{\"type\":4,\"invocationId\":\"5\",\"target\":\"SendMessage\",\"arguments\":[]}\u{1e}",
        );
        assert!(detail.contains("streams"), "{detail}");
    }

    #[test]
    fn malformed_records_break_the_protocol() {
        for text in [
            "{\"type\":1}",
            "not json\u{1e}",
            "[1]\u{1e}",
            "{\"type\":99}\u{1e}",
            "{\"type\":\"1\"}\u{1e}",
            "{\"type\":1,\"target\":\"Typing\"}\u{1e}",
            "{\"type\":1,\"invocationId\":5,\"target\":\"Typing\",\"arguments\":[]}\u{1e}",
        ] {
            assert!(
                records(text).iter().any(|p| matches!(p, Parsed::Broken(_))),
                "{text}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text parses into records or a broken protocol, never a panic.
        #[test]
        fn any_text_parses_without_panicking(text in ".{0,64}") {
            let _ = records(&text);
            let _ = handshake(&text);
        }

        /// Invocations of any method with any arguments are a frame or a refusal.
        #[test]
        fn any_invocation_is_a_frame_or_a_refusal(
            target in prop_oneof![
                Just("JoinConversation"), Just("LeaveConversation"), Just("SendMessage"),
                Just("Typing"), Just("MarkRead"), Just("Resume"), Just("Authenticate"),
                Just("Other")
            ],
            arguments in proptest::collection::vec(prop_oneof![
                Just(json!(null)), Just(json!("c")), Just(json!(true)), Just(json!(3)),
                Just(json!(-3)), Just(json!(1.5)), Just(json!({})), Just(json!([]))
            ], 0..4),
        ) {
            let text = format!(
                "{}\u{1e}",
                json!({"type": 1, "invocationId": "i", "target": target, "arguments": arguments})
            );
            let parsed = one(&text);
            prop_assert!(!matches!(parsed, Parsed::Broken(_)));
        }
    }
}
