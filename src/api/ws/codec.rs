//! The `/ws` wire format: each [`ServerEvent`] as one JSON text frame with a `type` (the frames
//! API.md lists). Encoded once per frame and shared by every `/ws` session it goes to
//! ([`Frame::encoded`](crate::hub::Frame::encoded)); session logic (seq tracking, resume,
//! scopes, flow control) is the writer's, not this module's.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::objects::{ConversationGone, Deleted, EventObject, Presence, Read, Typing};
use crate::hub::{ServerEvent, WireCodec, WireFormat};
use crate::store::Conversation;

/// The `/ws` JSON codec.
pub(crate) struct TidingsJson;

impl WireCodec for TidingsJson {
    const FORMAT: WireFormat = WireFormat::Ws;

    fn encode(event: &ServerEvent) -> Bytes {
        let text = serde_json::to_vec(&WsFrame::of(event))
            .expect("frames are maps of strings, numbers and JSON values");
        Bytes::from(text)
    }
}

/// A frame as `/ws` writes it: the `type` tag first, then the event's fields in camelCase.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum WsFrame<'a> {
    #[serde(rename_all = "camelCase")]
    Ready {
        user_id: &'a str,
        session_id: &'a str,
    },
    Ack {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
        #[serde(flatten)]
        fields: &'a Map<String, Value>,
    },
    Pong {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
    },
    Error {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
        status: u16,
        detail: &'a str,
    },
    Message {
        message: &'a RawValue,
    },
    #[serde(rename = "message.updated")]
    MessageUpdated {
        message: &'a RawValue,
    },
    #[serde(rename = "message.deleted")]
    MessageDeleted(Deleted<'a>),
    Typing(Typing<'a>),
    Read(Read<'a>),
    Presence(Presence<'a>),
    #[serde(rename = "conversation.updated")]
    ConversationUpdated {
        conversation: &'a Conversation,
    },
    #[serde(rename = "conversation.deleted")]
    ConversationDeleted(ConversationGone<'a>),
}

impl<'a> WsFrame<'a> {
    fn of(event: &'a ServerEvent) -> WsFrame<'a> {
        match event {
            ServerEvent::Ready {
                user_id,
                session_id,
            } => WsFrame::Ready {
                user_id,
                session_id,
            },
            ServerEvent::Ack { reference, fields } => WsFrame::Ack {
                reference: reference.as_ref(),
                fields,
            },
            ServerEvent::Pong { reference } => WsFrame::Pong {
                reference: reference.as_ref(),
            },
            ServerEvent::Error {
                reference,
                status,
                detail,
            } => WsFrame::Error {
                reference: reference.as_ref(),
                status: *status,
                detail,
            },
            ServerEvent::Message(message) => WsFrame::Message {
                message: message.json(),
            },
            ServerEvent::MessageUpdated(message) => WsFrame::MessageUpdated {
                message: message.json(),
            },
            ServerEvent::MessageDeleted { .. }
            | ServerEvent::Typing { .. }
            | ServerEvent::Read { .. }
            | ServerEvent::Presence { .. }
            | ServerEvent::ConversationDeleted { .. } => {
                match EventObject::of(event).expect("these events carry an object") {
                    EventObject::Deleted(deleted) => WsFrame::MessageDeleted(deleted),
                    EventObject::Typing(typing) => WsFrame::Typing(typing),
                    EventObject::Read(read) => WsFrame::Read(read),
                    EventObject::Presence(presence) => WsFrame::Presence(presence),
                    EventObject::ConversationGone(gone) => WsFrame::ConversationDeleted(gone),
                }
            }
            ServerEvent::ConversationUpdated(conversation) => {
                WsFrame::ConversationUpdated { conversation }
            }
        }
    }
}

/// The frame's `/ws` JSON, decoded (for tests that inspect frames).
#[cfg(test)]
pub(crate) fn to_json(frame: &crate::hub::Frame) -> Value {
    serde_json::from_slice(&frame.encoded::<TidingsJson>()).expect("a frame is JSON")
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::store::Message;
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::hub::frame;

    /// A message of ann's in conversation `c`, for the codecs' tests.
    pub(crate) fn message(seq: u64) -> Message {
        Message {
            id: "m".into(),
            conversation_id: "c".into(),
            seq,
            sender_id: "ann".into(),
            sender_name: "Ann".into(),
            content: "hi".into(),
            client_message_id: None,
            reply_to: None,
            mentions: Vec::new(),
            sent_at: "2024-01-01T00:00:00.000Z".into(),
            edited_at: None,
            deleted: false,
            json: Default::default(),
        }
    }

    #[test]
    fn every_frame_has_the_fields_api_md_lists() {
        let cases = [
            (
                frame::ready("ann", "s1"),
                json!({"type":"ready","userId":"ann","sessionId":"s1"}),
            ),
            (frame::ack(None), json!({"type":"ack"})),
            (frame::ack(Some(json!(7))), json!({"type":"ack","ref":7})),
            (
                frame::pong(Some(&json!("p"))),
                json!({"type":"pong","ref":"p"}),
            ),
            (
                frame::error(None, 404, "no"),
                json!({"type":"error","status":404,"detail":"no"}),
            ),
            (
                frame::conversation_deleted("c"),
                json!({"type":"conversation.deleted","conversationId":"c"}),
            ),
            (
                frame::typing("c", "ann", true),
                json!({"type":"typing","conversationId":"c","userId":"ann","typing":true}),
            ),
            (
                frame::read("c", "ann", 4),
                json!({"type":"read","conversationId":"c","userId":"ann","seq":4}),
            ),
            (
                frame::online("ann"),
                json!({"type":"presence","userId":"ann","status":"online"}),
            ),
            (
                frame::offline("ann", "t"),
                json!({"type":"presence","userId":"ann","status":"offline","lastSeen":"t"}),
            ),
            (
                frame::message_deleted(&message(3)),
                json!({"type":"message.deleted","conversationId":"c","id":"m","seq":3}),
            ),
        ];
        for (frame, expected) in cases {
            assert_eq!(to_json(&frame), expected);
        }
        let sent = to_json(&frame::message(Arc::new(message(3))));
        assert_eq!(sent["type"], "message");
        assert_eq!(sent["message"]["seq"], 3);
        let updated = frame::message_updated(Arc::new(message(3)));
        assert!(std::str::from_utf8(&updated.encoded::<TidingsJson>())
            .unwrap()
            .starts_with(r#"{"type":"message.updated","message":{"#));
    }

    #[test]
    fn an_ack_carries_its_answer_fields_and_the_ref() {
        let mut fields = Map::new();
        fields.insert("id".into(), json!("m1"));
        fields.insert("status".into(), json!("accepted"));
        let ack = crate::hub::Frame::new(ServerEvent::Ack {
            reference: Some(json!("r")),
            fields,
        });
        assert_eq!(
            to_json(&ack),
            json!({"type":"ack","ref":"r","id":"m1","status":"accepted"})
        );
    }

    #[test]
    fn a_frame_is_encoded_once_and_its_bytes_shared() {
        let frame = frame::typing("c", "ann", true);
        let first = frame.encoded::<TidingsJson>();
        let again = frame.clone().encoded::<TidingsJson>();
        assert_eq!(first.as_ptr(), again.as_ptr());
    }
}
