//! Server → client frames as the hub queues them: JSON text serialized once and shared by every
//! recipient ([`Frame`] is one `Arc`), tagged with what a session writer must check before
//! writing it ([`Scope`]).
//!
//! The builders here are for the frames that carry no stored data (`ready`, `pong`, `error`,
//! `typing`, `read`, `presence`). Frames that carry a message or a conversation are built where
//! those types live (`pipeline::fanout`, `api`), with [`Frame::new`]. This module does not send
//! anything.

use std::sync::Arc;

use bytes::Bytes;

use serde::Serialize;
use serde_json::json;

/// What a session writer checks before it writes a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Written as is (`ready`, `presence`, `conversation.updated`, replies).
    Session,
    /// About a conversation: written only while the user is still one of its participants.
    Conversation(Arc<str>),
    /// A `message` frame: participation is checked, and the conversation's seq must be the next
    /// one the session expects (older: dropped as a duplicate; newer: the gap is filled first).
    Message {
        /// The conversation.
        conversation: Arc<str>,
        /// The message's seq.
        seq: u64,
    },
}

#[derive(Debug)]
struct FrameData {
    /// UTF-8 JSON, kept as `Bytes` so a socket writer can send it without copying it first.
    text: Bytes,
    scope: Scope,
}

/// One serialized frame, shared by every session it is queued to (cloning is one refcount).
#[derive(Debug, Clone)]
pub struct Frame(Arc<FrameData>);

impl Frame {
    /// A frame of `text` (one JSON object with a `type`) and its scope.
    pub fn new(text: impl Into<String>, scope: Scope) -> Frame {
        Frame(Arc::new(FrameData {
            text: Bytes::from(text.into()),
            scope,
        }))
    }

    /// A frame serialized from `value`.
    pub fn json(value: &impl Serialize, scope: Scope) -> Frame {
        let text = serde_json::to_string(value).expect("frames are maps of strings and numbers");
        Frame::new(text, scope)
    }

    /// The JSON text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.0.text).expect("a frame is built from a String")
    }

    /// The JSON text as UTF-8 bytes, shared (cloning is one refcount).
    pub fn bytes(&self) -> Bytes {
        self.0.text.clone()
    }

    /// What the writer checks before writing it.
    pub fn scope(&self) -> &Scope {
        &self.0.scope
    }
}

/// `{"type":"ready","userId","sessionId"}`: the first frame of every session.
pub fn ready(user_id: &str, session_id: &str) -> Frame {
    Frame::json(
        &json!({"type": "ready", "userId": user_id, "sessionId": session_id}),
        Scope::Session,
    )
}

/// `{"type":"pong"}` (with the client's `ref`, if it gave one).
pub fn pong(reference: Option<&serde_json::Value>) -> Frame {
    let mut value = json!({"type": "pong"});
    if let Some(reference) = reference {
        value["ref"] = reference.clone();
    }
    Frame::json(&value, Scope::Session)
}

/// `{"type":"ack","ref"?}`: a client frame was handled (a send's ack adds the 202 fields).
pub fn ack(reference: Option<serde_json::Value>) -> Frame {
    let mut value = json!({"type": "ack"});
    if let Some(reference) = reference {
        value["ref"] = reference;
    }
    Frame::json(&value, Scope::Session)
}

/// `{"type":"error","ref"?,"status","detail"}`: a client frame was refused.
pub fn error(reference: Option<&serde_json::Value>, status: u16, detail: &str) -> Frame {
    let mut value = json!({"type": "error", "status": status, "detail": detail});
    if let Some(reference) = reference {
        value["ref"] = reference.clone();
    }
    Frame::json(&value, Scope::Session)
}

/// `{"type":"typing","conversationId","userId","typing"}`.
pub fn typing(conversation: &str, user_id: &str, typing: bool) -> Frame {
    Frame::json(
        &json!({"type": "typing", "conversationId": conversation, "userId": user_id, "typing": typing}),
        Scope::Conversation(conversation.into()),
    )
}

/// `{"type":"read","conversationId","userId","seq"}`: a read receipt.
pub fn read(conversation: &str, user_id: &str, seq: u64) -> Frame {
    Frame::json(
        &json!({"type": "read", "conversationId": conversation, "userId": user_id, "seq": seq}),
        Scope::Conversation(conversation.into()),
    )
}

/// `{"type":"presence","userId","status":"online"}`.
pub fn online(user_id: &str) -> Frame {
    Frame::json(
        &json!({"type": "presence", "userId": user_id, "status": "online"}),
        Scope::Session,
    )
}

/// `{"type":"presence","userId","status":"offline","lastSeen"}`.
pub fn offline(user_id: &str, last_seen: &str) -> Frame {
    Frame::json(
        &json!({"type": "presence", "userId": user_id, "status": "offline", "lastSeen": last_seen}),
        Scope::Session,
    )
}
