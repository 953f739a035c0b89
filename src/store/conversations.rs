//! Conversation commands: create, add and remove participants. Like every change a client
//! sees, each is a command in the `messages` log (key = conversation id), applied by the store
//! writer of the conversation's partition in log order with the conversation's messages; so a
//! membership change and the messages around it reach every session in one order, and the
//! writer is the only writer of the conversation's records.
//!
//! One set of rules decides a command twice: at the edge against the in-memory view, so a
//! caller gets its 4xx before anything is appended ([`Store::prepare_conversation`],
//! [`Store::check_add_participant`], [`Store::check_remove_participant`]), and in the writer
//! against the conversation as the log's order left it ([`decide_create`], [`decide_add`],
//! [`decide_remove`]), which settles races between two callers; the edge reads the writer's
//! outcome.
//!
//! Permissions, kept simple: any participant may add or remove anyone; a user may always remove
//! itself. A conversation has at most `max_participants` participants
//! ([`StoreLimits`](super::StoreLimits)). A caller that is not a participant gets `NotFound`
//! (existence is not leaked).

use std::collections::HashSet;

use super::command::{ChangeParticipant, CreateConversation};
use super::error::{Result, StoreError};
use super::model::{
    now_rfc3339, validate_conversation_id, validate_title, validate_user_id, Conversation,
};
use super::Store;

impl Store {
    /// Validates a new conversation and makes its command. `creator` is always a participant
    /// (first); `participants` are deduplicated in order. `id`: the caller's (validated; taken →
    /// `Conflict`) or a new UUIDv7.
    pub(crate) fn prepare_conversation(
        &self,
        creator: &str,
        id: Option<String>,
        title: Option<String>,
        participants: Vec<String>,
    ) -> Result<CreateConversation> {
        validate_user_id("creator", creator)?;
        let conversation_id = match id {
            Some(id) => {
                validate_conversation_id(&id)?;
                id
            }
            None => uuid::Uuid::now_v7().to_string(),
        };
        validate_title(title.as_deref())?;
        let command = CreateConversation {
            conversation_id,
            title,
            participants: self.members(creator, participants)?,
            at: now_rfc3339(),
        };
        decide_create(
            self.conversation(&command.conversation_id).as_ref(),
            &command,
        )?;
        Ok(command)
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

    /// Checks that `actor` may add `user` now (memory only): `actor` a participant, `user` a
    /// valid id, room left unless `user` is in already (adding again changes nothing).
    pub(crate) fn check_add_participant(&self, command: &ChangeParticipant) -> Result<()> {
        validate_user_id("userId", &command.user_id)?;
        let current = self.conversation(&command.conversation_id);
        decide_add(current.as_ref(), command, self.limits().max_participants).map(drop)
    }

    /// Checks that `actor` may remove `user` now (memory only): both participants.
    pub(crate) fn check_remove_participant(&self, command: &ChangeParticipant) -> Result<()> {
        let current = self.conversation(&command.conversation_id);
        decide_remove(current.as_ref(), command).map(drop)
    }
}

/// The conversation a create makes, unless its id is taken.
pub(super) fn decide_create(
    current: Option<&Conversation>,
    command: &CreateConversation,
) -> Result<Conversation> {
    if current.is_some() {
        return Err(StoreError::Conflict(format!(
            "conversation {:?} exists already",
            command.conversation_id
        )));
    }
    Ok(Conversation {
        id: command.conversation_id.clone(),
        title: command.title.clone(),
        participants: command.participants.clone(),
        last_message: None,
        last_seq: 0,
        created_at: command.at.clone(),
        updated_at: command.at.clone(),
    })
}

/// The conversation with `user` added; `None` if it is in already.
pub(super) fn decide_add(
    current: Option<&Conversation>,
    command: &ChangeParticipant,
    max_participants: usize,
) -> Result<Option<Conversation>> {
    let current = participant_view(current, command)?;
    if current.has_participant(&command.user_id) {
        return Ok(None);
    }
    if current.participants.len() >= max_participants {
        return Err(StoreError::LimitReached(format!(
            "conversation {:?} has {max_participants} participants, the most it may have",
            command.conversation_id
        )));
    }
    let mut changed = current.clone();
    changed.participants.push(command.user_id.clone());
    Ok(Some(touched(changed, &command.at)))
}

/// The conversation with `user` removed; `NotFound` if `user` is not a participant.
pub(super) fn decide_remove(
    current: Option<&Conversation>,
    command: &ChangeParticipant,
) -> Result<Option<Conversation>> {
    let current = participant_view(current, command)?;
    if !current.has_participant(&command.user_id) {
        return Err(StoreError::NotFound(format!(
            "participant {:?}",
            command.user_id
        )));
    }
    let mut changed = current.clone();
    changed.participants.retain(|p| p != &command.user_id);
    Ok(Some(touched(changed, &command.at)))
}

/// The conversation, if it exists and the actor is one of its participants.
fn participant_view<'c>(
    current: Option<&'c Conversation>,
    command: &ChangeParticipant,
) -> Result<&'c Conversation> {
    current
        .filter(|c| c.has_participant(&command.actor))
        .ok_or_else(|| StoreError::NotFound(format!("conversation {:?}", command.conversation_id)))
}

/// A membership change moves `updatedAt` forward to its time.
fn touched(mut conversation: Conversation, at: &str) -> Conversation {
    if conversation.updated_at.as_str() < at {
        conversation.updated_at = at.to_owned();
    }
    conversation
}

impl Store {
    /// The store writer's, once it wrote `changed`'s membership: the in-memory view takes it,
    /// then the membership epoch moves (a reader that sees the new epoch sees the new
    /// participants). Returns the conversation as the API shows it now.
    pub(super) fn show_membership(&self, changed: &Conversation) -> Conversation {
        let mut view = self.view_mut();
        view.set_membership(changed);
        let now = view
            .conversation(&changed.id)
            .cloned()
            .unwrap_or_else(|| changed.clone());
        drop(view);
        self.bump_membership_epoch();
        now
    }
}
