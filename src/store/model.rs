//! The chat data as the public API shows it (serde camelCase, times as RFC 3339 UTC strings),
//! and the validation of ids and names.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::{Result, StoreError};

/// Longest conversation id, in characters.
pub(crate) const MAX_CONVERSATION_ID_LEN: usize = 128;
/// Longest user id, in bytes.
pub(crate) const MAX_USER_ID_LEN: usize = 256;
/// Longest conversation title, in characters.
pub(crate) const MAX_TITLE_LEN: usize = 1024;

/// One stored message. `seq` is dense per conversation (1, 2, 3 …) in log order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Message {
    /// Final id (UUIDv7), assigned by the edge before the send reaches the log.
    pub id: String,
    /// The conversation it belongs to.
    pub conversation_id: String,
    /// Position in the conversation, from 1, without gaps.
    pub seq: u64,
    /// Who sent it.
    pub sender_id: String,
    /// The sender's display name when it was sent.
    pub sender_name: String,
    /// Text; empty once deleted.
    pub content: String,
    /// The sender's idempotency key, if it gave one.
    pub client_message_id: Option<String>,
    /// Id of the message this one answers.
    pub reply_to: Option<String>,
    /// Mentioned user ids.
    #[serde(default)]
    pub mentions: Vec<String>,
    /// When the edge accepted it (RFC 3339 UTC).
    pub sent_at: String,
    /// When it was last edited or deleted.
    pub edited_at: Option<String>,
    /// True once deleted (content cleared, seq kept).
    pub deleted: bool,
    /// The JSON above, made once (see [`Message::json`]).
    #[serde(skip)]
    pub json: JsonOnce,
}

impl Message {
    /// The message as its JSON object, made by the first caller and shared after: the stored
    /// chunk, the `messages.sent` event and each wire format's frame all carry the same object,
    /// so a message is serialized once however many of them it goes into.
    pub(crate) fn json(&self) -> &RawValue {
        self.json.0.get_or_init(|| {
            serde_json::value::to_raw_value(self).expect("a message of strings always serializes")
        })
    }
}

/// A message's JSON once made. A clone starts empty, since a clone is how a message is changed
/// (an edit, a deletion) and its fields no longer match; and it never makes two messages unequal.
#[derive(Default)]
pub(crate) struct JsonOnce(OnceLock<Box<RawValue>>);

impl JsonOnce {
    /// Bytes of the JSON if it was made, else 0.
    pub(crate) fn made_len(&self) -> usize {
        self.0.get().map_or(0, |json| json.get().len())
    }
}

impl Clone for JsonOnce {
    fn clone(&self) -> Self {
        JsonOnce::default()
    }
}

impl PartialEq for JsonOnce {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for JsonOnce {}

impl std::fmt::Debug for JsonOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "made"
        } else {
            "not yet"
        })
    }
}

/// A conversation as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Conversation {
    /// Id: 1–128 characters of `[A-Za-z0-9._:-]`.
    pub id: String,
    /// Optional title.
    pub title: Option<String>,
    /// Participants, in the order they joined, without duplicates.
    pub participants: Vec<String>,
    /// The participants who may rename and delete it, add and remove others and change roles
    /// (the creator first); never empty while it has participants.
    #[serde(default)]
    pub owners: Vec<String>,
    /// The message with the highest seq, if any (shared with the view and the store writer:
    /// it changes with every message, and a conversation list copies it for every entry).
    pub last_message: Option<Arc<Message>>,
    /// Highest seq stored (0 before the first message).
    pub last_seq: u64,
    /// Creation time (RFC 3339 UTC).
    pub created_at: String,
    /// Time of the latest activity: creation, a participant change or a message.
    pub updated_at: String,
}

impl Conversation {
    /// True if `user` is one of the participants.
    pub(crate) fn has_participant(&self, user: &str) -> bool {
        self.participants.iter().any(|p| p == user)
    }

    /// True if `user` is one of the owners.
    pub(crate) fn is_owner(&self, user: &str) -> bool {
        self.owners.iter().any(|o| o == user)
    }
}

/// A conversation as one participant sees it, with its read state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConversationView {
    /// Id.
    pub id: String,
    /// Optional title.
    pub title: Option<String>,
    /// Participants.
    pub participants: Vec<String>,
    /// Owners (see [`Conversation::owners`]).
    pub owners: Vec<String>,
    /// The message with the highest seq, if any.
    pub last_message: Option<Arc<Message>>,
    /// Highest seq stored.
    pub last_seq: u64,
    /// Highest seq this user has read.
    pub last_read_seq: u64,
    /// Other participants' messages above `last_read_seq` (`last_seq - last_read_seq`).
    pub unread_count: u64,
    /// Creation time.
    pub created_at: String,
    /// Latest activity.
    pub updated_at: String,
}

impl ConversationView {
    /// `conversation` as `last_read_seq`'s owner sees it.
    pub(crate) fn new(conversation: &Conversation, last_read_seq: u64) -> Self {
        let last_read_seq = last_read_seq.min(conversation.last_seq);
        ConversationView {
            id: conversation.id.clone(),
            title: conversation.title.clone(),
            participants: conversation.participants.clone(),
            owners: conversation.owners.clone(),
            last_message: conversation.last_message.clone(),
            last_seq: conversation.last_seq,
            last_read_seq,
            unread_count: conversation.last_seq - last_read_seq,
            created_at: conversation.created_at.clone(),
            updated_at: conversation.updated_at.clone(),
        }
    }
}

/// A page of a user's conversations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConversationPage {
    /// Most recent activity first.
    pub items: Vec<ConversationView>,
    /// Opaque cursor of the next page, `None` on the last one.
    pub next_cursor: Option<String>,
}

/// A page of a conversation's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HistoryPage {
    /// Messages in ascending seq.
    pub items: Vec<Message>,
    /// With `after`: newer messages exist; otherwise: older ones exist.
    pub has_more: bool,
}

/// The current time as the API writes it: RFC 3339, UTC, milliseconds (fixed width, so these
/// strings sort as the times do).
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Checks a conversation id: 1–128 characters of `[A-Za-z0-9._:-]`.
pub(crate) fn validate_conversation_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_CONVERSATION_ID_LEN {
        return Err(StoreError::invalid(
            "id",
            format!("must be 1–{MAX_CONVERSATION_ID_LEN} characters long"),
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(StoreError::invalid(
            "id",
            format!("{bad:?} is not allowed (use [A-Za-z0-9._:-])"),
        ));
    }
    Ok(())
}

/// Checks a user id: 1–256 bytes, no control characters (NUL separates key parts).
pub(crate) fn validate_user_id(field: &'static str, user: &str) -> Result<()> {
    if user.is_empty() || user.len() > MAX_USER_ID_LEN {
        return Err(StoreError::invalid(
            field,
            format!("a user id must be 1–{MAX_USER_ID_LEN} bytes long"),
        ));
    }
    if user.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            field,
            "a user id may not contain control characters",
        ));
    }
    Ok(())
}

/// Checks an optional title: at most 1024 characters.
pub(crate) fn validate_title(title: Option<&str>) -> Result<()> {
    match title {
        Some(t) if t.chars().count() > MAX_TITLE_LEN => Err(StoreError::invalid(
            "title",
            format!("at most {MAX_TITLE_LEN} characters"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_ids_follow_the_documented_alphabet_and_length() {
        assert!(validate_conversation_id("team.chat:42_a-b").is_ok());
        assert!(validate_conversation_id(&"a".repeat(128)).is_ok());
        assert!(validate_conversation_id("").is_err());
        assert!(validate_conversation_id(&"a".repeat(129)).is_err());
        for bad in ["a b", "a/b", "a\0b", "é"] {
            assert!(
                matches!(
                    validate_conversation_id(bad),
                    Err(StoreError::InvalidField { field: "id", .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn user_ids_refuse_empty_and_control_characters() {
        assert!(validate_user_id("userId", "alice").is_ok());
        assert!(validate_user_id("userId", "").is_err());
        assert!(validate_user_id("userId", "a\0b").is_err());
    }

    #[test]
    fn a_view_counts_unread_as_last_seq_minus_last_read() {
        let c = Conversation {
            id: "c".into(),
            title: None,
            participants: vec!["a".into()],
            owners: vec!["a".into()],
            last_message: None,
            last_seq: 7,
            created_at: now_rfc3339(),
            updated_at: now_rfc3339(),
        };
        assert_eq!(ConversationView::new(&c, 3).unread_count, 4);
        assert_eq!(ConversationView::new(&c, 9).unread_count, 0);
    }

    fn message(content: &str) -> Message {
        Message {
            id: "m".into(),
            conversation_id: "c".into(),
            seq: 3,
            sender_id: "ann".into(),
            sender_name: "Ann \"the\" first".into(),
            content: content.into(),
            client_message_id: None,
            reply_to: None,
            mentions: vec!["bob".into()],
            sent_at: now_rfc3339(),
            edited_at: None,
            deleted: false,
            json: JsonOnce::default(),
        }
    }

    #[test]
    fn a_messages_json_is_its_serialization_made_once() {
        let message = message("line\nbreak \u{1b} and \"quotes\"");
        assert_eq!(message.json.made_len(), 0);
        let json = message.json().get().to_owned();
        assert_eq!(json, serde_json::to_string(&message).unwrap());
        assert!(!json.contains("\"json\""), "{json}");
        assert_eq!(message.json.made_len(), json.len());
        assert!(std::ptr::eq(message.json(), message.json()));
        let back: Message = serde_json::from_str(&json).unwrap();
        assert_eq!(back, message);
    }

    #[test]
    fn a_changed_clone_serializes_its_own_fields() {
        let message = message("alpha");
        assert!(message.json().get().contains("alpha"));
        let mut edited = message.clone();
        edited.content = "omega".into();
        edited.deleted = true;
        let json = edited.json().get();
        assert!(json.contains("omega") && !json.contains("alpha"), "{json}");
        assert!(json.contains(r#""deleted":true"#), "{json}");
        assert!(message.json().get().contains("alpha"));
    }
}
