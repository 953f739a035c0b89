//! A conversation as two records written by two different writers, so neither ever
//! read-modify-writes the other's key:
//!
//! - its *membership* (tree `conversations`: participants, title, createdAt, and the time of the
//!   last membership change), written by the conversation commands;
//! - its *activity* (tree `activity`: lastSeq, lastMessage, time of the last message), written
//!   only by the store writer that owns the conversation's partition.
//!
//! [`merge`] joins them into the public [`Conversation`]: `updatedAt` is the later of the two
//! times. Decoding is lenient: a `conversations` value holding a whole conversation (as written
//! before the split) decodes as membership, and its activity fields serve as the activity when
//! the `activity` tree has none.

use serde::{Deserialize, Serialize};

use super::error::{Result, StoreError};
use super::model::{Conversation, Message};

/// The membership record of a conversation (tree `conversations`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Membership {
    pub id: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub participants: Vec<String>,
    pub created_at: String,
    /// Creation or the last participant change.
    pub updated_at: String,
    /// Activity embedded by the pre-split layout; never written now.
    #[serde(default, flatten, skip_serializing)]
    pub legacy: Option<Activity>,
}

/// The activity record of a conversation (tree `activity`); moves forward only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Activity {
    pub last_seq: u64,
    #[serde(default)]
    pub last_message: Option<Message>,
    /// `sentAt` of the latest message ("" before the first).
    #[serde(default)]
    pub updated_at: String,
}

impl Membership {
    pub fn of(conversation: &Conversation) -> Self {
        Membership {
            id: conversation.id.clone(),
            title: conversation.title.clone(),
            participants: conversation.participants.clone(),
            created_at: conversation.created_at.clone(),
            updated_at: conversation.updated_at.clone(),
            legacy: None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a membership of strings always serializes")
    }

    pub fn decode(id: &str, raw: &[u8]) -> Result<Self> {
        serde_json::from_slice(raw)
            .map_err(|e| StoreError::corrupt(format!("conversations/{id}"), e))
    }
}

impl Activity {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an activity of strings always serializes")
    }

    pub fn decode(id: &str, raw: &[u8]) -> Result<Self> {
        serde_json::from_slice(raw).map_err(|e| StoreError::corrupt(format!("activity/{id}"), e))
    }

    /// Moves forward to `message` if it is newer (higher seq) or the same message changed.
    pub fn advance(&mut self, message: &Message) -> bool {
        if message.seq < self.last_seq {
            return false;
        }
        if message.seq == self.last_seq && self.last_message.as_ref() == Some(message) {
            return false;
        }
        self.last_seq = message.seq;
        self.last_message = Some(message.clone());
        self.updated_at = self.updated_at.clone().max(message.sent_at.clone());
        true
    }
}

/// The public conversation: membership joined with activity (the stored one, else the legacy
/// fields of the membership record, else none).
pub(crate) fn merge(membership: Membership, activity: Option<Activity>) -> Conversation {
    let activity = activity
        .or_else(|| membership.legacy.clone())
        .unwrap_or_default();
    let updated_at = membership.updated_at.clone().max(activity.updated_at);
    Conversation {
        id: membership.id,
        title: membership.title,
        participants: membership.participants,
        last_message: activity.last_message,
        last_seq: activity.last_seq,
        created_at: membership.created_at,
        updated_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pre_split_conversation_decodes_as_membership_with_legacy_activity() {
        let whole = serde_json::json!({
            "id": "c", "title": null, "participants": ["a"], "lastMessage": null,
            "lastSeq": 4, "createdAt": "2024-01-01T00:00:00.000Z",
            "updatedAt": "2024-01-02T00:00:00.000Z"
        });
        let raw = serde_json::to_vec(&whole).unwrap();
        let membership = Membership::decode("c", &raw).unwrap();
        assert_eq!(merge(membership.clone(), None).last_seq, 4);
        let stored = Activity {
            last_seq: 6,
            ..Activity::default()
        };
        assert_eq!(merge(membership.clone(), Some(stored)).last_seq, 6);
        let encoded = membership.encode();
        assert!(!String::from_utf8(encoded).unwrap().contains("lastSeq"));
    }
}
