//! Server → client frames as the hub queues them: one typed [`ServerEvent`] shared by every
//! recipient ([`Frame`] is one `Arc`), tagged with what a session writer must check before
//! writing it ([`Scope`]), and encoded at most once per wire format ([`WireCodec`]): the first
//! session of a format to write the frame encodes it, every other session of that format
//! writes the same bytes.
//!
//! The builders here are the one place frames are made. This module does not send anything
//! and knows no wire format's syntax (that is each protocol's codec, e.g. `api::ws::codec`).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;

pub(crate) use super::event::ServerEvent;
use crate::store::{Conversation, Message};

/// What a session writer checks before it writes a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
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

impl Scope {
    /// What a writer must check before writing `event`.
    fn of(event: &ServerEvent) -> Scope {
        match event {
            ServerEvent::Message(message) => Scope::Message {
                conversation: message.conversation_id.as_str().into(),
                seq: message.seq,
            },
            ServerEvent::MessageUpdated(message) => {
                Scope::Conversation(message.conversation_id.as_str().into())
            }
            ServerEvent::MessageDeleted {
                conversation_id, ..
            }
            | ServerEvent::Typing {
                conversation_id, ..
            }
            | ServerEvent::Read {
                conversation_id, ..
            } => Scope::Conversation(conversation_id.clone()),
            // A user just removed from the conversation learns it this way.
            ServerEvent::ConversationUpdated(_) | ServerEvent::ConversationDeleted { .. } => {
                Scope::Session
            }
            ServerEvent::Ready { .. }
            | ServerEvent::Ack { .. }
            | ServerEvent::Pong { .. }
            | ServerEvent::Error { .. }
            | ServerEvent::Presence { .. } => Scope::Session,
        }
    }
}

/// The wire formats sessions speak; each has one encoding slot in every [`Frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireFormat {
    /// The `/ws` JSON text frames.
    Ws,
    /// SignalR's JSON hub protocol records (`/chathub`).
    Signalr,
    /// Socket.IO packets inside Engine.IO message packets (`/socket.io/`).
    SocketIo,
}

impl WireFormat {
    const COUNT: usize = 3;

    fn slot(self) -> usize {
        self as usize
    }
}

/// How one wire format writes events: the protocol edge implements it, the frame caches it.
pub(crate) trait WireCodec {
    /// Which slot of a frame caches this codec's bytes.
    const FORMAT: WireFormat;
    /// The event as this format's bytes.
    fn encode(event: &ServerEvent) -> Bytes;
}

#[derive(Debug)]
struct FrameData {
    event: ServerEvent,
    scope: Scope,
    encoded: [OnceLock<Bytes>; WireFormat::COUNT],
}

/// One event on its way to sessions, shared by every session it is queued to (cloning is one
/// refcount).
#[derive(Debug, Clone)]
pub(crate) struct Frame(Arc<FrameData>);

impl Frame {
    /// A frame of `event`, scoped as the event requires.
    pub(crate) fn new(event: ServerEvent) -> Frame {
        let scope = Scope::of(&event);
        Frame(Arc::new(FrameData {
            event,
            scope,
            encoded: Default::default(),
        }))
    }

    /// The event.
    pub(crate) fn event(&self) -> &ServerEvent {
        &self.0.event
    }

    /// What the writer checks before writing it.
    pub(crate) fn scope(&self) -> &Scope {
        &self.0.scope
    }

    /// The frame in `C`'s format: encoded by the first caller, shared after (cloning the bytes
    /// is one refcount).
    pub(crate) fn encoded<C: WireCodec>(&self) -> Bytes {
        self.0.encoded[C::FORMAT.slot()]
            .get_or_init(|| C::encode(&self.0.event))
            .clone()
    }
}

/// `ready`: the first frame of every session.
pub(crate) fn ready(user_id: &str, session_id: &str) -> Frame {
    Frame::new(ServerEvent::Ready {
        user_id: user_id.to_owned(),
        session_id: session_id.to_owned(),
    })
}

/// `pong`, with the client's `ref` if it gave one.
pub(crate) fn pong(reference: Option<&Value>) -> Frame {
    Frame::new(ServerEvent::Pong {
        reference: reference.cloned(),
    })
}

/// `ack`: a client frame was handled (a send's ack adds the 202 fields: [`ServerEvent::Ack`]).
pub(crate) fn ack(reference: Option<Value>) -> Frame {
    Frame::new(ServerEvent::ack(reference))
}

/// `error`: a client frame was refused.
pub(crate) fn error(reference: Option<&Value>, status: u16, detail: &str) -> Frame {
    Frame::new(ServerEvent::Error {
        reference: reference.cloned(),
        status,
        detail: detail.to_owned(),
    })
}

/// `typing`.
pub(crate) fn typing(conversation: &str, user_id: &str, typing: bool) -> Frame {
    Frame::new(ServerEvent::Typing {
        conversation_id: conversation.into(),
        user_id: user_id.to_owned(),
        typing,
    })
}

/// `read`: a read receipt.
pub(crate) fn read(conversation: &str, user_id: &str, seq: u64) -> Frame {
    Frame::new(ServerEvent::Read {
        conversation_id: conversation.into(),
        user_id: user_id.to_owned(),
        seq,
    })
}

/// `presence` online.
pub(crate) fn online(user_id: &str) -> Frame {
    Frame::new(ServerEvent::Presence {
        user_id: user_id.to_owned(),
        online: true,
        last_seen: None,
    })
}

/// `presence` offline, with `lastSeen`.
pub(crate) fn offline(user_id: &str, last_seen: &str) -> Frame {
    Frame::new(ServerEvent::Presence {
        user_id: user_id.to_owned(),
        online: false,
        last_seen: Some(last_seen.to_owned()),
    })
}

/// `message`: a stored message (live, or replayed from history on `resume`).
pub(crate) fn message(message: Arc<Message>) -> Frame {
    Frame::new(ServerEvent::Message(message))
}

/// `message.updated`.
pub(crate) fn message_updated(message: Arc<Message>) -> Frame {
    Frame::new(ServerEvent::MessageUpdated(message))
}

/// `message.deleted`.
pub(crate) fn message_deleted(message: &Message) -> Frame {
    Frame::new(ServerEvent::MessageDeleted {
        conversation_id: message.conversation_id.as_str().into(),
        id: message.id.clone(),
        seq: message.seq,
    })
}

/// `conversation.deleted`.
pub(crate) fn conversation_deleted(conversation_id: &str) -> Frame {
    Frame::new(ServerEvent::ConversationDeleted {
        conversation_id: conversation_id.into(),
    })
}

/// `conversation.updated`.
pub(crate) fn conversation_updated(conversation: Arc<Conversation>) -> Frame {
    Frame::new(ServerEvent::ConversationUpdated(conversation))
}
