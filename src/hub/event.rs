//! The typed server events the hub carries to sessions: every frame a client can receive, as
//! data. How an event looks on the wire is each protocol's business (the `/ws` JSON frames are
//! `api::ws::codec`); the hub only routes events and checks their [`Scope`](super::Scope).
//!
//! The chat objects inside (messages, conversations) are the API's own types, shared by `Arc`
//! so that one event delivered to thousands of sessions is built once.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::store::{Conversation, Message};

/// One server → client event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ServerEvent {
    /// The first event of every session.
    Ready {
        /// The session's user.
        user_id: String,
        /// The session's id.
        session_id: String,
    },
    /// A client frame was handled; `fields` are the answer's own (a send's acceptance).
    Ack {
        /// The client's `ref`, echoed.
        reference: Option<Value>,
        /// Fields of the answer (empty for most frames).
        fields: Map<String, Value>,
    },
    /// The answer to a client's ping.
    Pong {
        /// The client's `ref`, echoed.
        reference: Option<Value>,
    },
    /// A client frame was refused.
    Error {
        /// The client's `ref`, echoed.
        reference: Option<Value>,
        /// The HTTP status the same request would get.
        status: u16,
        /// What was wrong.
        detail: String,
    },
    /// A message was stored.
    Message(Arc<Message>),
    /// A message's content changed.
    MessageUpdated(Arc<Message>),
    /// A message was deleted (its seq stays).
    MessageDeleted {
        /// Its conversation.
        conversation_id: Arc<str>,
        /// The message.
        id: String,
        /// Its seq.
        seq: u64,
    },
    /// A participant started or stopped typing.
    Typing {
        /// The conversation.
        conversation_id: Arc<str>,
        /// Who types.
        user_id: String,
        /// Started (true) or stopped.
        typing: bool,
    },
    /// A participant read a conversation up to `seq`.
    Read {
        /// The conversation.
        conversation_id: Arc<str>,
        /// The reader.
        user_id: String,
        /// Highest seq read.
        seq: u64,
    },
    /// A contact came online or went offline.
    Presence {
        /// The contact.
        user_id: String,
        /// Online now?
        online: bool,
        /// When it was last seen (offline only; RFC 3339 UTC).
        last_seen: Option<String>,
    },
    /// A conversation's participants, owners or title changed.
    ConversationUpdated(Arc<Conversation>),
    /// A conversation was deleted (its former participants learn it).
    ConversationDeleted {
        /// The conversation.
        conversation_id: Arc<str>,
    },
}

impl ServerEvent {
    /// The `ack` of a frame without answer fields.
    pub(crate) fn ack(reference: Option<Value>) -> ServerEvent {
        ServerEvent::Ack {
            reference,
            fields: Map::new(),
        }
    }
}
