//! The small event objects both socket wire formats carry: a `/ws` frame writes one's fields
//! after its `type`, SignalR passes it as the argument of a client method (`UserTyping`, …).
//! Messages and conversations are not here: they are the API's own objects
//! (`store::Message`, `store::Conversation`).

use serde::Serialize;

use crate::hub::ServerEvent;

/// `{conversationId, id, seq}`: a deleted message.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Deleted<'a> {
    conversation_id: &'a str,
    id: &'a str,
    seq: u64,
}

/// `{conversationId}`: a deleted conversation.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConversationGone<'a> {
    conversation_id: &'a str,
}

/// `{conversationId, userId, typing}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Typing<'a> {
    conversation_id: &'a str,
    user_id: &'a str,
    typing: bool,
}

/// `{conversationId, userId, seq}`: a read receipt.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Read<'a> {
    conversation_id: &'a str,
    user_id: &'a str,
    seq: u64,
}

/// `{userId, status, lastSeen?}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Presence<'a> {
    user_id: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<&'a str>,
}

/// The object an event carries, for the events whose object is one of these.
#[derive(Debug)]
pub(crate) enum EventObject<'a> {
    Deleted(Deleted<'a>),
    Typing(Typing<'a>),
    Read(Read<'a>),
    Presence(Presence<'a>),
    ConversationGone(ConversationGone<'a>),
}

impl<'a> EventObject<'a> {
    /// The object of `event`, if it carries one of these.
    pub(crate) fn of(event: &'a ServerEvent) -> Option<EventObject<'a>> {
        let object = match event {
            ServerEvent::MessageDeleted {
                conversation_id,
                id,
                seq,
            } => EventObject::Deleted(Deleted {
                conversation_id,
                id,
                seq: *seq,
            }),
            ServerEvent::Typing {
                conversation_id,
                user_id,
                typing,
            } => EventObject::Typing(Typing {
                conversation_id,
                user_id,
                typing: *typing,
            }),
            ServerEvent::Read {
                conversation_id,
                user_id,
                seq,
            } => EventObject::Read(Read {
                conversation_id,
                user_id,
                seq: *seq,
            }),
            ServerEvent::Presence {
                user_id,
                online,
                last_seen,
            } => EventObject::Presence(Presence {
                user_id,
                status: if *online { "online" } else { "offline" },
                last_seen: last_seen.as_deref(),
            }),
            ServerEvent::ConversationDeleted { conversation_id } => {
                EventObject::ConversationGone(ConversationGone { conversation_id })
            }
            _ => return None,
        };
        Some(object)
    }
}
