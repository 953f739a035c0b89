//! Conversation commands: create, add and remove participants. Each is one compare-and-swap of
//! the conversation's *membership* record in the `conversations` tree (no sled transaction:
//! those would stall every writer of the process), then an update of the in-memory view. The
//! store writer writes the conversation's *activity* to another tree (`activity`), so neither
//! can undo the other's change.
//!
//! Permissions, kept simple: any participant may add or remove anyone; a user may always remove
//! itself. A conversation has at most `max_participants` participants ([`StoreLimits`](super::StoreLimits)). A caller that is not a participant gets `NotFound` (existence is not leaked).

use std::collections::HashSet;

use super::activity::{merge, Membership};
use super::error::{Result, StoreError};
use super::model::{
    now_rfc3339, validate_conversation_id, validate_title, validate_user_id, Conversation,
};
use super::Store;

impl Store {
    /// Creates a conversation. `creator` is always a participant (first); `participants` are
    /// deduplicated in order. `id`: the caller's (validated; taken → `Conflict`) or a new UUIDv7.
    pub fn create_conversation(
        &self,
        creator: &str,
        id: Option<String>,
        title: Option<String>,
        participants: Vec<String>,
    ) -> Result<Conversation> {
        validate_user_id("creator", creator)?;
        let id = match id {
            Some(id) => {
                validate_conversation_id(&id)?;
                id
            }
            None => uuid::Uuid::now_v7().to_string(),
        };
        validate_title(title.as_deref())?;
        let members = self.members(creator, participants)?;
        let now = now_rfc3339();
        let conversation = Conversation {
            id,
            title,
            participants: members,
            last_message: None,
            last_seq: 0,
            created_at: now.clone(),
            updated_at: now,
        };
        let encoded = Membership::of(&conversation).encode();
        let swapped = self.trees().conversations.compare_and_swap(
            conversation.id.as_bytes(),
            None::<&[u8]>,
            Some(encoded),
        )?;
        if swapped.is_err() {
            return Err(StoreError::Conflict(format!(
                "conversation {:?} exists already",
                conversation.id
            )));
        }
        self.view_mut().insert(conversation.clone());
        Ok(conversation)
    }

    /// The creator (first) and the listed participants, validated and deduplicated in order
    /// (a set, so a long list costs linear time); more than `max_participants` is invalid.
    fn members(&self, creator: &str, participants: Vec<String>) -> Result<Vec<String>> {
        let max = self.limits().max_participants;
        let mut seen = HashSet::with_capacity(participants.len().min(max) + 1);
        seen.insert(creator.to_owned());
        let mut members = vec![creator.to_owned()];
        for user in participants {
            validate_user_id("participants", &user)?;
            if seen.insert(user.clone()) {
                members.push(user);
            }
            if members.len() > max {
                return Err(StoreError::invalid(
                    "participants",
                    format!("a conversation has at most {max} participants, its creator included"),
                ));
            }
        }
        Ok(members)
    }

    /// Adds `user` to the conversation; `actor` must be a participant. Adding a participant
    /// again changes nothing; adding one to a full conversation is `LimitReached`. Returns the
    /// conversation as it is now.
    pub fn add_participant(
        &self,
        actor: &str,
        conversation: &str,
        user: &str,
    ) -> Result<Conversation> {
        validate_user_id("userId", user)?;
        let max = self.limits().max_participants;
        self.change_membership(actor, conversation, |c| {
            if c.has_participant(user) {
                return Ok(false);
            }
            if c.participants.len() >= max {
                return Err(StoreError::LimitReached(format!(
                    "conversation {conversation:?} has {max} participants, the most it may have"
                )));
            }
            c.participants.push(user.to_owned());
            Ok(true)
        })
    }

    /// Removes `user` from the conversation; `actor` must be a participant (a user may always
    /// remove itself). `NotFound` if `user` is not a participant. Returns the conversation.
    pub fn remove_participant(
        &self,
        actor: &str,
        conversation: &str,
        user: &str,
    ) -> Result<Conversation> {
        if !self.is_participant(conversation, user) {
            return Err(StoreError::NotFound(format!("participant {user:?}")));
        }
        self.change_membership(actor, conversation, |c| {
            let before = c.participants.len();
            c.participants.retain(|p| p != user);
            Ok(c.participants.len() != before)
        })
    }

    fn change_membership(
        &self,
        actor: &str,
        id: &str,
        change: impl Fn(&mut Conversation) -> Result<bool>,
    ) -> Result<Conversation> {
        let not_found = || StoreError::NotFound(format!("conversation {id:?}"));
        if !self.is_participant(id, actor) {
            return Err(not_found());
        }
        let tree = &self.trees().conversations;
        let mut current = tree.get(id.as_bytes())?;
        let changed = loop {
            let Some(raw) = &current else {
                return Err(not_found());
            };
            let mut membership = Membership::decode(id, raw)?;
            if !membership.participants.iter().any(|p| p == actor) {
                return Err(not_found());
            }
            let mut conversation = merge(membership.clone(), None);
            if !change(&mut conversation)? {
                break conversation;
            }
            membership.participants = conversation.participants.clone();
            membership.updated_at = membership.updated_at.clone().max(now_rfc3339());
            self.keep_legacy_activity(id, &membership)?;
            let encoded = membership.encode();
            match tree.compare_and_swap(id.as_bytes(), current.clone(), Some(encoded))? {
                Ok(()) => break merge(membership, None),
                Err(conflict) => current = conflict.current,
            }
        };
        let mut view = self.view_mut();
        view.set_membership(&changed);
        let now = view.conversation(id).cloned().unwrap_or(changed);
        drop(view);
        // After the view changed: a reader that sees the new epoch sees the new participants.
        self.bump_membership_epoch();
        Ok(now)
    }

    /// A membership record in the pre-split layout carries the activity; the rewrite drops it,
    /// so it moves to `activity` first unless the store writer wrote one (compare-and-swap from
    /// empty: the store writer's later writes move it forward as usual).
    fn keep_legacy_activity(&self, id: &str, membership: &Membership) -> Result<()> {
        if let Some(legacy) = &membership.legacy {
            let _ = self.trees().activity.compare_and_swap(
                id.as_bytes(),
                None::<&[u8]>,
                Some(legacy.encode()),
            )?;
        }
        Ok(())
    }
}
