//! The Socket.IO wire format, server side: Socket.IO 5 packets inside Engine.IO 4 message
//! packets, as text.
//!
//! A chat event is an EVENT packet, `42["message",{…}]`: the event named as the `/ws` frame's
//! `type`, its one argument the `/ws` frame's other fields (API.md). A handled client event that
//! asked for an acknowledgement gets an ACK packet, `43<id>[{…}]`, carrying the `/ws` ack's
//! fields, or `{"error":{"status","detail"}}` when it was refused; a refusal of an event sent
//! without an acknowledgement id goes out as an `error` event. The session's greeting (`/ws`'s
//! `ready`) is the CONNECT answer, `40{"sid"}`. Packets are encoded once per frame and shared by
//! every Socket.IO session, like the `/ws` frames; the same bytes serve both transports
//! (WebSocket messages, or long-polling bodies joined by `0x1E`).
//!
//! This module also builds the protocol's control packets (the Engine.IO handshake, ping,
//! noop, close, the probe answer, a refused CONNECT); it does not parse what clients send
//! (`protocol.rs`) and knows nothing of transports or sessions.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::api::ws::objects::{ConversationGone, Deleted, EventObject, Presence, Read, Typing};
use crate::hub::{ServerEvent, WireCodec, WireFormat};
use crate::store::Conversation;

/// Separates packets in a long-polling body.
pub(crate) const PACKET_SEPARATOR: char = '\u{1e}';

/// The Socket.IO codec.
pub(crate) struct SocketIoJson;

impl WireCodec for SocketIoJson {
    const FORMAT: WireFormat = WireFormat::SocketIo;

    fn encode(event: &ServerEvent) -> Bytes {
        match event {
            ServerEvent::Ready { session_id, .. } => packet("40", &json!({ "sid": session_id })),
            ServerEvent::Pong { .. } => Bytes::new(),
            ServerEvent::Ack { reference, fields } => match ack_id(reference.as_ref()) {
                Some(id) => packet(&format!("43{id}"), &[fields]),
                None => Bytes::new(),
            },
            ServerEvent::Error {
                reference,
                status,
                detail,
            } => {
                let error = Problem {
                    status: *status,
                    detail,
                };
                match ack_id(reference.as_ref()) {
                    Some(id) => packet(&format!("43{id}"), &[json!({ "error": error })]),
                    None => packet("42", &("error", error)),
                }
            }
            ServerEvent::Message(message) => event_packet(
                "message",
                Data::Message {
                    message: message.json(),
                },
            ),
            ServerEvent::MessageUpdated(message) => event_packet(
                "message.updated",
                Data::Message {
                    message: message.json(),
                },
            ),
            ServerEvent::MessageDeleted { .. }
            | ServerEvent::Typing { .. }
            | ServerEvent::Read { .. }
            | ServerEvent::Presence { .. }
            | ServerEvent::ConversationDeleted { .. } => match EventObject::of(event) {
                Some(EventObject::Deleted(deleted)) => {
                    event_packet("message.deleted", Data::Deleted(deleted))
                }
                Some(EventObject::Typing(typing)) => event_packet("typing", Data::Typing(typing)),
                Some(EventObject::Read(read)) => event_packet("read", Data::Read(read)),
                Some(EventObject::Presence(presence)) => {
                    event_packet("presence", Data::Presence(presence))
                }
                Some(EventObject::ConversationGone(gone)) => {
                    event_packet("conversation.deleted", Data::ConversationGone(gone))
                }
                None => Bytes::new(),
            },
            ServerEvent::ConversationUpdated(conversation) => {
                event_packet("conversation.updated", Data::Conversation { conversation })
            }
        }
    }
}

/// The one argument of an event: the `/ws` frame's fields but `type`.
#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Message { message: &'a RawValue },
    Conversation { conversation: &'a Conversation },
    Deleted(Deleted<'a>),
    Typing(Typing<'a>),
    Read(Read<'a>),
    Presence(Presence<'a>),
    ConversationGone(ConversationGone<'a>),
}

/// A refusal, as the HTTP API's problem would say it.
#[derive(Serialize)]
struct Problem<'a> {
    status: u16,
    detail: &'a str,
}

fn event_packet(name: &str, data: Data<'_>) -> Bytes {
    packet("42", &(name, data))
}

/// `prefix` then `body` as JSON.
fn packet(prefix: &str, body: &impl Serialize) -> Bytes {
    let mut bytes = BytesMut::with_capacity(128).writer();
    bytes.get_mut().put_slice(prefix.as_bytes());
    serde_json::to_writer(&mut bytes, body)
        .expect("packets are maps of strings, numbers and JSON values");
    bytes.into_inner().freeze()
}

/// The acknowledgement id an answer goes to; none for an event sent without one.
fn ack_id(reference: Option<&Value>) -> Option<u64> {
    reference?.as_u64()
}

/// The Engine.IO handshake, `0{…}`: the connection's id, the transports it may upgrade to, and
/// the heartbeat and size limits the client must keep.
pub(crate) fn open(sid: &str, upgrades: &[&str], ping: Duration, max_payload: usize) -> Bytes {
    let ping_ms = u64::try_from(ping.as_millis()).unwrap_or(u64::MAX);
    packet(
        "0",
        &json!({
            "sid": sid,
            "upgrades": upgrades,
            "pingInterval": ping_ms,
            "pingTimeout": ping_ms,
            "maxPayload": max_payload,
        }),
    )
}

/// `44{"message","data":{"status","detail"}}`: a refused CONNECT, the client's
/// `connect_error` (its `message` is the plain-language reason).
pub(crate) fn connect_refused(namespace: &str, status: u16, detail: &str) -> Bytes {
    let mut data = Map::new();
    data.insert("status".into(), json!(status));
    data.insert("detail".into(), json!(detail));
    let body = json!({ "message": detail, "data": data });
    if namespace == "/" {
        packet("44", &body)
    } else {
        packet(&format!("44{namespace},"), &body)
    }
}

/// Engine.IO's ping, `2`: the server's heartbeat, answered with `3`.
pub(crate) fn ping() -> Bytes {
    Bytes::from_static(b"2")
}

/// Engine.IO's answer to an upgrade probe.
pub(crate) fn probe_answer() -> Bytes {
    Bytes::from_static(b"3probe")
}

/// Engine.IO's noop, `6`: ends a pending long-poll while the transport upgrades.
pub(crate) fn noop() -> Bytes {
    Bytes::from_static(b"6")
}

/// Socket.IO's DISCONNECT of the namespace `/`, `41`: the server ends the socket, and the
/// client does not reconnect by itself (its `disconnect` reason is `io server disconnect`).
pub(crate) fn disconnect() -> Bytes {
    Bytes::from_static(b"41")
}

/// Engine.IO's close, `1`: the connection is over (long-polling; a WebSocket closes instead).
pub(crate) fn close() -> Bytes {
    Bytes::from_static(b"1")
}

#[cfg(test)]
mod tests {
    use crate::store::Message;
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::hub::{frame, Frame};

    /// A packet as (its prefix, its JSON).
    fn decoded(frame: &Frame) -> (String, Value) {
        let bytes = frame.encoded::<SocketIoJson>();
        let text = std::str::from_utf8(&bytes).unwrap();
        let split = text.find(['[', '{']).unwrap();
        (
            text[..split].to_owned(),
            serde_json::from_str(&text[split..]).unwrap(),
        )
    }

    fn message() -> Message {
        crate::api::ws::codec::tests::message(3)
    }

    #[test]
    fn chat_events_are_event_packets_named_as_the_ws_frames_without_their_type() {
        let cases = [
            (
                frame::conversation_deleted("c"),
                json!(["conversation.deleted", {"conversationId":"c"}]),
            ),
            (
                frame::typing("c", "ann", true),
                json!(["typing", {"conversationId":"c","userId":"ann","typing":true}]),
            ),
            (
                frame::read("c", "ann", 4),
                json!(["read", {"conversationId":"c","userId":"ann","seq":4}]),
            ),
            (
                frame::offline("ann", "t"),
                json!(["presence", {"userId":"ann","status":"offline","lastSeen":"t"}]),
            ),
            (
                frame::message_deleted(&message()),
                json!(["message.deleted", {"conversationId":"c","id":"m","seq":3}]),
            ),
        ];
        for (frame, expected) in cases {
            assert_eq!(decoded(&frame), ("42".to_owned(), expected));
        }
        let (prefix, sent) = decoded(&frame::message(Arc::new(message())));
        assert_eq!(prefix, "42");
        assert_eq!(sent[0], "message");
        assert_eq!(sent[1]["message"]["seq"], 3);
        let (_, updated) = decoded(&frame::message_updated(Arc::new(message())));
        assert_eq!(updated[0], "message.updated");
    }

    #[test]
    fn answers_are_acks_of_their_event_and_refusals_without_an_id_are_error_events() {
        let mut fields = Map::new();
        fields.insert("id".into(), json!("m1"));
        let accepted = Frame::new(ServerEvent::Ack {
            reference: Some(json!(7)),
            fields,
        });
        assert_eq!(decoded(&accepted), ("437".into(), json!([{"id":"m1"}])));
        assert_eq!(
            decoded(&frame::ack(Some(json!(8)))),
            ("438".into(), json!([{}]))
        );
        assert_eq!(
            decoded(&frame::error(Some(&json!(9)), 404, "conversation c")),
            (
                "439".into(),
                json!([{"error":{"status":404,"detail":"conversation c"}}])
            )
        );
        assert_eq!(
            decoded(&frame::error(None, 400, "x")),
            ("42".into(), json!(["error", {"status":400,"detail":"x"}]))
        );
        assert!(frame::ack(None).encoded::<SocketIoJson>().is_empty());
        assert!(frame::pong(None).encoded::<SocketIoJson>().is_empty());
        assert_eq!(
            decoded(&frame::ready("ann", "s1")),
            ("40".into(), json!({"sid":"s1"}))
        );
    }

    #[test]
    fn control_packets() {
        let open = open("e1", &["websocket"], Duration::from_secs(25), 1000);
        let open: Value = serde_json::from_slice(&open[1..]).unwrap();
        assert_eq!(
            open,
            json!({"sid":"e1","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":25000,"maxPayload":1000})
        );
        assert_eq!(
            &connect_refused("/", 401, "no token")[..],
            br#"44{"data":{"detail":"no token","status":401},"message":"no token"}"#
        );
        assert!(connect_refused("/admin", 404, "x").starts_with(b"44/admin,{"));
        assert_eq!(
            (&ping()[..], &noop()[..], &close()[..]),
            (&b"2"[..], &b"6"[..], &b"1"[..])
        );
    }
}
