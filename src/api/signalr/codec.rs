//! The SignalR wire format: ASP.NET Core SignalR's JSON hub protocol (version 1), server side.
//!
//! Each [`ServerEvent`] becomes one record terminated by the record separator `0x1E`: chat
//! events are invocations of the client methods API.md names (`ReceiveMessage`,
//! `UserTyping`, …, their argument the HTTP API's object), a handled invocation is a
//! `Completion` (type 3) carrying its result, a refused one a `Completion` with `error`. An
//! event SignalR has no record for (`/ws`'s `ready` and `pong`, the answer to an invocation sent
//! without an id) encodes as nothing, and the writer writes nothing. Records are encoded once
//! per frame and shared by every SignalR session, like the `/ws` frames.
//!
//! This module also builds the protocol's control records (handshake answer, ping, close); it
//! does not parse what clients send (`protocol.rs`) and knows nothing of sessions.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::api::ws::objects::{ConversationGone, Deleted, EventObject, Presence, Read, Typing};
use crate::hub::{ServerEvent, WireCodec, WireFormat};
use crate::store::Conversation;

/// Ends every record of the JSON hub protocol.
pub(crate) const RECORD_SEPARATOR: u8 = 0x1E;

/// The SignalR JSON hub protocol codec.
pub(crate) struct SignalrJson;

impl WireCodec for SignalrJson {
    const FORMAT: WireFormat = WireFormat::Signalr;

    fn encode(event: &ServerEvent) -> Bytes {
        match record_of(event) {
            Some(record) => record_bytes(&record),
            None => Bytes::new(),
        }
    }
}

/// `{}`: the handshake succeeded.
pub(crate) fn handshake_accepted() -> Bytes {
    record_bytes(&json!({}))
}

/// `{"error"}`: the handshake failed; the connection closes after it.
pub(crate) fn handshake_refused(error: &str) -> Bytes {
    record_bytes(&json!({ "error": error }))
}

/// `{"type":6}`: keep-alive.
pub(crate) fn ping() -> Bytes {
    record_bytes(&json!({ "type": 6 }))
}

/// `{"type":7,"error","allowReconnect"}`: the server closes the connection.
pub(crate) fn close(error: &str, allow_reconnect: bool) -> Bytes {
    record_bytes(&json!({ "type": 7, "error": error, "allowReconnect": allow_reconnect }))
}

fn record_bytes(record: &impl Serialize) -> Bytes {
    let mut bytes =
        serde_json::to_vec(record).expect("records are maps of strings, numbers and JSON values");
    bytes.push(RECORD_SEPARATOR);
    Bytes::from(bytes)
}

/// A record the server sends, as SignalR's JSON protocol lays it out.
#[derive(Serialize)]
#[serde(untagged)]
enum Record<'a> {
    /// Type 1: the server invokes a client method.
    Invocation {
        #[serde(rename = "type")]
        kind: u8,
        target: &'static str,
        arguments: [Argument<'a>; 1],
    },
    /// Type 3: the answer to an invocation that had an id.
    Completion {
        #[serde(rename = "type")]
        kind: u8,
        #[serde(rename = "invocationId")]
        invocation_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<&'a serde_json::Map<String, Value>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// The one argument of a client method: a chat object or an event object.
#[derive(Serialize)]
#[serde(untagged)]
enum Argument<'a> {
    Message(&'a RawValue),
    Conversation(&'a Conversation),
    Deleted(Deleted<'a>),
    Typing(Typing<'a>),
    Read(Read<'a>),
    Presence(Presence<'a>),
    ConversationGone(ConversationGone<'a>),
}

fn invocation<'a>(target: &'static str, argument: Argument<'a>) -> Option<Record<'a>> {
    Some(Record::Invocation {
        kind: 1,
        target,
        arguments: [argument],
    })
}

/// The record of `event`, if SignalR has one for it.
fn record_of(event: &ServerEvent) -> Option<Record<'_>> {
    match event {
        ServerEvent::Ready { .. } | ServerEvent::Pong { .. } => None,
        ServerEvent::Ack { reference, fields } => Some(Record::Completion {
            kind: 3,
            invocation_id: invocation_id(reference.as_ref())?,
            result: (!fields.is_empty()).then_some(fields),
            error: None,
        }),
        ServerEvent::Error {
            reference,
            status,
            detail,
        } => Some(Record::Completion {
            kind: 3,
            invocation_id: invocation_id(reference.as_ref())?,
            result: None,
            error: Some(hub_error(*status, detail)),
        }),
        ServerEvent::Message(message) => {
            invocation("ReceiveMessage", Argument::Message(message.json()))
        }
        ServerEvent::MessageUpdated(message) => {
            invocation("MessageUpdated", Argument::Message(message.json()))
        }
        ServerEvent::MessageDeleted { .. }
        | ServerEvent::Typing { .. }
        | ServerEvent::Read { .. }
        | ServerEvent::Presence { .. }
        | ServerEvent::ConversationDeleted { .. } => match EventObject::of(event)? {
            EventObject::Deleted(deleted) => {
                invocation("MessageDeleted", Argument::Deleted(deleted))
            }
            EventObject::Typing(typing) => invocation("UserTyping", Argument::Typing(typing)),
            EventObject::Read(read) => invocation("MessageRead", Argument::Read(read)),
            EventObject::Presence(presence) => {
                invocation("PresenceChanged", Argument::Presence(presence))
            }
            EventObject::ConversationGone(gone) => {
                invocation("ConversationDeleted", Argument::ConversationGone(gone))
            }
        },
        ServerEvent::ConversationUpdated(conversation) => {
            invocation("ConversationUpdated", Argument::Conversation(conversation))
        }
    }
}

/// The invocation id a reply answers; none for an invocation sent without one (SignalR
/// answers those with nothing).
fn invocation_id(reference: Option<&Value>) -> Option<&str> {
    reference?.as_str()
}

/// A hub error's text: the status the HTTP API would answer, then what was wrong, so that a
/// client can tell a 404 from a 429 without a second field.
fn hub_error(status: u16, detail: &str) -> String {
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("Error");
    format!("{status} {reason}: {detail}")
}

#[cfg(test)]
mod tests {
    use crate::store::Message;
    use std::sync::Arc;

    use serde_json::{json, Map};

    use super::*;
    use crate::hub::{frame, Frame};

    fn decoded(frame: &Frame) -> Option<Value> {
        let bytes = frame.encoded::<SignalrJson>();
        let (last, record) = bytes.split_last()?;
        assert_eq!(*last, RECORD_SEPARATOR);
        Some(serde_json::from_slice(record).expect("a record is JSON"))
    }

    fn message() -> Message {
        crate::api::ws::codec::tests::message(3)
    }

    #[test]
    fn chat_events_invoke_the_client_methods_api_md_names() {
        let cases = [
            (
                frame::conversation_deleted("c"),
                json!({"type":1,"target":"ConversationDeleted","arguments":[{"conversationId":"c"}]}),
            ),
            (
                frame::typing("c", "ann", true),
                json!({"type":1,"target":"UserTyping","arguments":[{"conversationId":"c","userId":"ann","typing":true}]}),
            ),
            (
                frame::read("c", "ann", 4),
                json!({"type":1,"target":"MessageRead","arguments":[{"conversationId":"c","userId":"ann","seq":4}]}),
            ),
            (
                frame::offline("ann", "t"),
                json!({"type":1,"target":"PresenceChanged","arguments":[{"userId":"ann","status":"offline","lastSeen":"t"}]}),
            ),
            (
                frame::message_deleted(&message()),
                json!({"type":1,"target":"MessageDeleted","arguments":[{"conversationId":"c","id":"m","seq":3}]}),
            ),
        ];
        for (frame, expected) in cases {
            assert_eq!(decoded(&frame), Some(expected));
        }
        let received = decoded(&frame::message(Arc::new(message()))).unwrap();
        assert_eq!(received["target"], "ReceiveMessage");
        assert_eq!(received["arguments"][0]["seq"], 3);
        assert_eq!(received["arguments"][0]["senderId"], "ann");
    }

    #[test]
    fn answers_are_completions_of_their_invocation_and_nothing_without_an_id() {
        let mut fields = Map::new();
        fields.insert("id".into(), json!("m1"));
        let accepted = Frame::new(ServerEvent::Ack {
            reference: Some(json!("7")),
            fields,
        });
        assert_eq!(
            decoded(&accepted),
            Some(json!({"type":3,"invocationId":"7","result":{"id":"m1"}}))
        );
        assert_eq!(
            decoded(&frame::ack(Some(json!("8")))),
            Some(json!({"type":3,"invocationId":"8"}))
        );
        assert_eq!(
            decoded(&frame::error(Some(&json!("9")), 404, "conversation c")),
            Some(json!({"type":3,"invocationId":"9","error":"404 Not Found: conversation c"}))
        );
        for silent in [
            frame::ack(None),
            frame::error(None, 400, "x"),
            frame::ready("ann", "s"),
            frame::pong(None),
        ] {
            assert!(silent.encoded::<SignalrJson>().is_empty());
        }
    }

    #[test]
    fn control_records_end_with_the_separator() {
        assert_eq!(&handshake_accepted()[..], b"{}\x1e");
        assert_eq!(&ping()[..], b"{\"type\":6}\x1e");
        let closing = close("bye", false);
        let (last, record) = closing.split_last().unwrap();
        assert_eq!(*last, RECORD_SEPARATOR);
        let record: Value = serde_json::from_slice(record).unwrap();
        assert_eq!(
            record,
            json!({"type":7,"error":"bye","allowReconnect":false})
        );
        assert_eq!(&handshake_refused("no")[..], b"{\"error\":\"no\"}\x1e");
    }
}
