//! The writes the store applies in batches (carried as JSON in the `messages` topic's records)
//! and the events it emits for the `messages.sent` topic.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::model::{now_rfc3339, Message};

/// One chat write, as appended to the `messages` topic (JSON with a `type` tag) and applied by
/// the write-behind store writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub(crate) enum ChatCommand {
    /// A new message.
    Send(SendMessage),
    /// A new content for a message (only its sender).
    Edit(EditMessage),
    /// Deletes a message (only its sender): content cleared, seq kept.
    Delete(DeleteMessage),
    /// Moves a user's read state forward.
    Read(MarkRead),
    /// A new conversation.
    CreateConversation(CreateConversation),
    /// Adds a participant (by a participant).
    AddParticipant(ChangeParticipant),
    /// Removes a participant (by an owner; anyone may remove itself).
    RemoveParticipant(ChangeParticipant),
    /// A new title (by an owner).
    RenameConversation(RenameConversation),
    /// Makes a participant an owner or a plain member (by an owner).
    SetRole(SetRole),
    /// Deletes a conversation and its messages (by an owner).
    DeleteConversation(DeleteConversation),
}

impl ChatCommand {
    /// The conversation it concerns: the record's key, so its partition.
    pub(crate) fn conversation_id(&self) -> &str {
        match self {
            ChatCommand::Send(c) => &c.conversation_id,
            ChatCommand::Edit(c) => &c.conversation_id,
            ChatCommand::Delete(c) => &c.conversation_id,
            ChatCommand::Read(c) => &c.conversation_id,
            ChatCommand::CreateConversation(c) => &c.conversation_id,
            ChatCommand::AddParticipant(c) | ChatCommand::RemoveParticipant(c) => {
                &c.conversation_id
            }
            ChatCommand::RenameConversation(c) => &c.conversation_id,
            ChatCommand::SetRole(c) => &c.conversation_id,
            ChatCommand::DeleteConversation(c) => &c.conversation_id,
        }
    }
}

/// A message to store; the edge has validated it and assigned its final id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SendMessage {
    /// Final id (UUIDv7), see [`new_message_id`].
    pub id: String,
    /// Target conversation.
    pub conversation_id: String,
    /// The sender (the token's subject).
    pub sender_id: String,
    /// The sender's display name.
    pub sender_name: String,
    /// Text.
    pub content: String,
    /// The sender's idempotency key.
    #[serde(default)]
    pub client_message_id: Option<String>,
    /// Id of the message this one answers.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Mentioned user ids.
    #[serde(default)]
    pub mentions: Vec<String>,
    /// When the edge accepted it (RFC 3339 UTC).
    pub sent_at: String,
}

impl SendMessage {
    /// A send with a fresh UUIDv7 id, sent now, without client id, reply or mentions.
    pub(crate) fn new(
        conversation_id: impl Into<String>,
        sender_id: impl Into<String>,
        sender_name: impl Into<String>,
        content: impl Into<String>,
    ) -> Self {
        SendMessage {
            id: new_message_id(),
            conversation_id: conversation_id.into(),
            sender_id: sender_id.into(),
            sender_name: sender_name.into(),
            content: content.into(),
            client_message_id: None,
            reply_to: None,
            mentions: Vec::new(),
            sent_at: now_rfc3339(),
        }
    }
}

/// A new content for a stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EditMessage {
    /// The message.
    pub message_id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// Who asks (must be the message's sender).
    pub sender_id: String,
    /// The new text.
    pub content: String,
    /// When (RFC 3339 UTC).
    pub at: String,
}

/// Deletes a stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeleteMessage {
    /// The message.
    pub message_id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// Who asks (must be the message's sender).
    pub sender_id: String,
    /// When (RFC 3339 UTC).
    pub at: String,
}

/// A user has read a conversation up to `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MarkRead {
    /// The conversation.
    pub conversation_id: String,
    /// The reader.
    pub user_id: String,
    /// Highest seq read (clamped to the conversation's last seq).
    pub seq: u64,
}

/// A new conversation, validated by the edge ([`Store::prepare_conversation`]).
///
/// [`Store::prepare_conversation`]: super::Store::prepare_conversation
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateConversation {
    /// Its id (the caller's, or a fresh UUIDv7).
    pub conversation_id: String,
    /// Optional title.
    #[serde(default)]
    pub title: Option<String>,
    /// Participants, the creator first, without duplicates.
    pub participants: Vec<String>,
    /// When the edge accepted it (RFC 3339 UTC): its `createdAt`.
    pub at: String,
}

/// A participant added to or removed from a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChangeParticipant {
    /// The conversation.
    pub conversation_id: String,
    /// Who asks (must be a participant).
    pub actor: String,
    /// The participant added or removed.
    pub user_id: String,
    /// When the edge accepted it (RFC 3339 UTC).
    pub at: String,
}

/// A conversation's new title.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RenameConversation {
    /// The conversation.
    pub conversation_id: String,
    /// Who asks (must be an owner).
    pub actor: String,
    /// The new title (`None` removes it).
    #[serde(default)]
    pub title: Option<String>,
    /// When the edge accepted it (RFC 3339 UTC).
    pub at: String,
}

/// A participant's role in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Role {
    /// May rename and delete the conversation, add and remove others, and change roles.
    Owner,
    /// May send, read, and leave.
    Member,
}

/// A participant made an owner or a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SetRole {
    /// The conversation.
    pub conversation_id: String,
    /// Who asks (must be an owner).
    pub actor: String,
    /// The participant whose role changes.
    pub user_id: String,
    /// Its new role.
    pub role: Role,
    /// When the edge accepted it (RFC 3339 UTC).
    pub at: String,
}

/// A conversation deleted, its messages with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeleteConversation {
    /// The conversation.
    pub conversation_id: String,
    /// Who asks (must be an owner).
    pub actor: String,
    /// When the edge accepted it (RFC 3339 UTC).
    pub at: String,
}

/// A fresh, time-ordered message id (UUIDv7).
pub(crate) fn new_message_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// What happened to a message, as the `eventType` of a `messages.sent` event.
// The variant names are the wire format's `eventType` values (docs/events.md), so they keep
// their common `Message` prefix.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum EventType {
    /// A message was stored.
    MessageSent,
    /// A message's content was edited.
    MessageUpdated,
    /// A message was deleted.
    MessageDeleted,
}

/// The value of a `messages.sent` record (key = conversation id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageEvent {
    /// What happened.
    pub event_type: EventType,
    /// Unique id of this event (UUIDv7).
    pub event_id: String,
    /// When the store applied it (RFC 3339 UTC).
    pub occurred_at: String,
    /// The message after the change, with its seq.
    pub message: Message,
}

/// A [`MessageEvent`] as it is encoded, borrowing its message.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageEventRef<'a> {
    event_type: EventType,
    event_id: String,
    occurred_at: String,
    message: &'a RawValue,
}

impl MessageEvent {
    /// The JSON of a new event (fresh id, occurred now) about `message`.
    pub(crate) fn encode_new(event_type: EventType, message: &Message) -> Vec<u8> {
        let event = MessageEventRef {
            event_type,
            event_id: uuid::Uuid::now_v7().to_string(),
            occurred_at: now_rfc3339(),
            message: message.json(),
        };
        serde_json::to_vec(&event).expect("an event of strings always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_json_with_a_type_tag_and_camel_case_fields() {
        let read = ChatCommand::Read(MarkRead {
            conversation_id: "c".into(),
            user_id: "u".into(),
            seq: 3,
        });
        let json = serde_json::to_value(&read).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type":"read","conversationId":"c","userId":"u","seq":3})
        );
        let send = ChatCommand::Send(SendMessage::new("c", "u", "U", "hi"));
        let text = serde_json::to_string(&send).unwrap();
        assert!(text.contains("\"type\":\"send\"") && text.contains("\"clientMessageId\":null"));
        assert_eq!(serde_json::from_str::<ChatCommand>(&text).unwrap(), send);
    }
}
