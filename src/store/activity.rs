//! A conversation as two records written by two different writers, so neither ever
//! read-modify-writes the other's key:
//!
//! - its *membership* (tree `conversations`: participants, title, createdAt, and the time of the
//!   last membership change), written by conversation commands;
//! - its *activity* (tree `activity`: lastSeq, lastMessage, time of the last message), moved
//!   forward by the store writer in memory and written by the store's checkpoint
//!   (see [`checkpoint`](super::checkpoint)).
//!
//! Keeping them apart means a message never rewrites the participant list. [`merge`] joins them
//! into the public [`Conversation`]: `updatedAt` is the later of the two times.

use std::sync::Arc;

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
    /// Absent in records written before roles existed: see [`merge`].
    #[serde(default)]
    pub owners: Vec<String>,
    pub created_at: String,
    /// Creation or the last participant change.
    pub updated_at: String,
}

/// The activity record of a conversation (tree `activity`); moves forward only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Activity {
    pub last_seq: u64,
    #[serde(default)]
    pub last_message: Option<Arc<Message>>,
    /// `sentAt` of the latest message ("" before the first).
    #[serde(default)]
    pub updated_at: String,
}

impl Membership {
    pub(super) fn of(conversation: &Conversation) -> Self {
        Membership {
            id: conversation.id.clone(),
            title: conversation.title.clone(),
            participants: conversation.participants.clone(),
            owners: conversation.owners.clone(),
            created_at: conversation.created_at.clone(),
            updated_at: conversation.updated_at.clone(),
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a membership of strings always serializes")
    }

    pub(super) fn decode(id: &str, raw: &[u8]) -> Result<Self> {
        serde_json::from_slice(raw)
            .map_err(|e| StoreError::corrupt(format!("conversations/{id}"), e))
    }
}

impl Activity {
    /// The activity part of a conversation as the view holds it. Its `updated_at` is the
    /// conversation's, which is at least the latest message's `sentAt`; [`merge`] takes the later
    /// of it and the membership's, so the conversation reads back the same.
    pub(super) fn of(conversation: &Conversation) -> Self {
        Activity {
            last_seq: conversation.last_seq,
            last_message: conversation.last_message.clone(),
            updated_at: conversation.updated_at.clone(),
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an activity of strings always serializes")
    }

    pub(super) fn decode(id: &str, raw: &[u8]) -> Result<Self> {
        serde_json::from_slice(raw).map_err(|e| StoreError::corrupt(format!("activity/{id}"), e))
    }

    /// Moves forward to `message` if it is newer (higher seq) or the same message changed.
    pub(super) fn advance(&mut self, message: &Arc<Message>) -> bool {
        if message.seq < self.last_seq {
            return false;
        }
        if message.seq == self.last_seq && self.last_message.as_ref() == Some(message) {
            return false;
        }
        self.last_seq = message.seq;
        self.last_message = Some(Arc::clone(message));
        if message.sent_at > self.updated_at {
            self.updated_at.clone_from(&message.sent_at);
        }
        true
    }
}

/// The public conversation: membership joined with its activity (none before the first message).
///
/// A membership written before roles existed has no owners: its first participant (the creator,
/// or the longest-standing one if the creator left) becomes its owner, as the rule for a last
/// owner leaving would have made it.
pub(crate) fn merge(membership: Membership, activity: Option<Activity>) -> Conversation {
    let activity = activity.unwrap_or_default();
    let updated_at = membership.updated_at.clone().max(activity.updated_at);
    let owners = if membership.owners.is_empty() {
        membership.participants.iter().take(1).cloned().collect()
    } else {
        membership.owners
    };
    Conversation {
        id: membership.id,
        title: membership.title,
        participants: membership.participants,
        owners,
        last_message: activity.last_message,
        last_seq: activity.last_seq,
        created_at: membership.created_at,
        updated_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A membership record written before roles existed (no `owners` key, as the previous
    /// release wrote it) still loads, and its first participant is its owner.
    #[test]
    fn a_membership_from_before_roles_loads_with_its_first_participant_as_owner() {
        let old = br#"{"id":"c","title":"team","participants":["ann","bob"],"createdAt":"2024-01-01T00:00:00.000Z","updatedAt":"2024-01-01T00:00:00.000Z"}"#;
        let membership = Membership::decode("c", old).expect("the old record decodes");
        assert!(membership.owners.is_empty());
        let conversation = merge(membership, None);
        assert_eq!(conversation.owners, ["ann"]);
        assert_eq!(conversation.participants, ["ann", "bob"]);
        let written = Membership::of(&conversation);
        let reread = merge(Membership::decode("c", &written.encode()).unwrap(), None);
        assert_eq!(reread.owners, ["ann"], "owners are written from then on");
        let empty = br#"{"id":"c","participants":[],"createdAt":"x","updatedAt":"x"}"#;
        assert!(merge(Membership::decode("c", empty).unwrap(), None)
            .owners
            .is_empty());
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        fn message() -> impl Strategy<Value = Message> {
            (".{0,12}", ".{0,12}", any::<u64>(), ".{0,40}", any::<bool>()).prop_map(
                |(id, sender, seq, content, deleted)| Message {
                    id,
                    conversation_id: "c".into(),
                    seq,
                    sender_id: sender.clone(),
                    sender_name: sender,
                    content,
                    client_message_id: None,
                    reply_to: None,
                    mentions: vec![],
                    sent_at: "2024-01-01T00:00:00.000Z".into(),
                    edited_at: None,
                    deleted,
                    json: Default::default(),
                },
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            /// What the writers encode decodes back the same.
            #[test]
            fn records_round_trip(
                title in proptest::option::of(".{0,20}"),
                participants in proptest::collection::vec(".{0,10}", 0..5),
                last in proptest::option::of(message()),
                last_seq in any::<u64>(),
            ) {
                let membership = Membership {
                    id: "c".into(),
                    title,
                    owners: participants.iter().take(1).cloned().collect(),
                    participants,
                    created_at: "2024-01-01T00:00:00.000Z".into(),
                    updated_at: "2024-01-02T00:00:00.000Z".into(),
                };
                prop_assert_eq!(Membership::decode("c", &membership.encode()).unwrap(), membership);
                let activity = Activity { last_seq, last_message: last.map(Arc::new), updated_at: "x".into() };
                prop_assert_eq!(Activity::decode("c", &activity.encode()).unwrap(), activity);
            }

            /// Random bytes are a typed corrupt error or a record, never a panic.
            #[test]
            fn random_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..100)) {
                if let Err(e) = Membership::decode("c", &raw) {
                    prop_assert!(matches!(e, StoreError::Corrupt { .. }), "{}", e);
                }
                if let Err(e) = Activity::decode("c", &raw) {
                    prop_assert!(matches!(e, StoreError::Corrupt { .. }), "{}", e);
                }
            }
        }
    }

    #[test]
    fn a_deeply_nested_record_is_corrupt_not_a_stack_overflow() {
        let raw = "[".repeat(100_000);
        assert!(Membership::decode("c", raw.as_bytes()).is_err());
        let raw = format!(
            "{{\"lastSeq\":1,\"lastMessage\":{}",
            "{\"a\":".repeat(100_000)
        );
        assert!(Activity::decode("c", raw.as_bytes()).is_err());
    }
}
