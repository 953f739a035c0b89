//! Conversation commands: create, add and remove participants, rename, change a participant's
//! role, delete. Like every change a client
//! sees, each is a command in the `messages` log (key = conversation id), applied by the store
//! writer of the conversation's partition in log order with the conversation's messages; so a
//! membership change and the messages around it reach every session in one order, and the
//! writer is the only writer of the conversation's records.
//!
//! One set of rules decides a command twice: at the edge against the in-memory view, so a
//! caller gets its 4xx before anything is appended ([`Store::prepare_conversation`],
//! [`Store::check_conversation_command`]), and in the writer against the conversation as the
//! log's order left it ([`decide_create`], [`decide_add`], [`decide_remove`], [`decide_rename`],
//! [`decide_role`], [`decide_delete`]), which settles races between two callers; the edge reads
//! the writer's outcome.
//!
//! Roles: the creator is the first owner. Owners add and remove participants, rename, delete,
//! and make participants owners or members again; anyone may leave (remove itself); anything
//! else a member asks is `Forbidden`. A conversation is never ownerless while it has
//! participants: when its last owner leaves, the longest-standing remaining participant (the
//! first in join order) becomes owner, and the last owner cannot make itself a member
//! (`Conflict`). A conversation has at most `max_participants` participants
//! ([`StoreLimits`](super::StoreLimits)). A caller that is not a participant gets `NotFound`
//! (existence is not leaked).

use std::collections::HashSet;

use super::command::{
    ChangeParticipant, ChatCommand, CreateConversation, DeleteConversation, RenameConversation,
    Role, SetRole,
};
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

    /// Checks a change of an existing conversation against the view (memory only), with the
    /// rules the store writer applies again: a 4xx before anything is appended.
    pub(crate) fn check_conversation_command(&self, command: &ChatCommand) -> Result<()> {
        let current = self.conversation(command.conversation_id());
        let current = current.as_ref();
        match command {
            ChatCommand::AddParticipant(add) => {
                validate_user_id("userId", &add.user_id)?;
                decide_add(current, add, self.limits().max_participants).map(drop)
            }
            ChatCommand::RemoveParticipant(remove) => decide_remove(current, remove).map(drop),
            ChatCommand::RenameConversation(rename) => decide_rename(current, rename).map(drop),
            ChatCommand::SetRole(role) => decide_role(current, role).map(drop),
            ChatCommand::DeleteConversation(delete) => decide_delete(current, delete).map(drop),
            ChatCommand::Send(_)
            | ChatCommand::Edit(_)
            | ChatCommand::Delete(_)
            | ChatCommand::Read(_)
            | ChatCommand::CreateConversation(_) => Ok(()),
        }
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
        owners: command.participants.iter().take(1).cloned().collect(),
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
    let current = participant_view(current, &command.conversation_id, &command.actor)?;
    require_owner(current, &command.actor, "add participants")?;
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

/// The conversation with `user` removed (by itself, or by an owner); `NotFound` if `user` is
/// not a participant. A last owner who leaves hands ownership to the longest-standing
/// remaining participant.
pub(super) fn decide_remove(
    current: Option<&Conversation>,
    command: &ChangeParticipant,
) -> Result<Option<Conversation>> {
    let current = participant_view(current, &command.conversation_id, &command.actor)?;
    if command.actor != command.user_id {
        require_owner(current, &command.actor, "remove other participants")?;
    }
    if !current.has_participant(&command.user_id) {
        return Err(StoreError::NotFound(format!(
            "participant {:?}",
            command.user_id
        )));
    }
    let mut changed = current.clone();
    changed.participants.retain(|p| p != &command.user_id);
    changed.owners.retain(|o| o != &command.user_id);
    if changed.owners.is_empty() {
        changed.owners = changed.participants.iter().take(1).cloned().collect();
    }
    Ok(Some(touched(changed, &command.at)))
}

/// The conversation with its new title (an owner's); `None` if it has that title already.
pub(super) fn decide_rename(
    current: Option<&Conversation>,
    command: &RenameConversation,
) -> Result<Option<Conversation>> {
    validate_title(command.title.as_deref())?;
    let current = participant_view(current, &command.conversation_id, &command.actor)?;
    require_owner(current, &command.actor, "rename it")?;
    if current.title == command.title {
        return Ok(None);
    }
    let mut changed = current.clone();
    changed.title = command.title.clone();
    Ok(Some(touched(changed, &command.at)))
}

/// The conversation with a participant's new role (an owner's change); `None` if it has that
/// role already. The last owner cannot become a member: a conversation is never ownerless.
pub(super) fn decide_role(
    current: Option<&Conversation>,
    command: &SetRole,
) -> Result<Option<Conversation>> {
    let current = participant_view(current, &command.conversation_id, &command.actor)?;
    require_owner(current, &command.actor, "change roles")?;
    if !current.has_participant(&command.user_id) {
        return Err(StoreError::NotFound(format!(
            "participant {:?}",
            command.user_id
        )));
    }
    let owner = current.is_owner(&command.user_id);
    let mut changed = current.clone();
    match command.role {
        Role::Owner if owner => return Ok(None),
        Role::Member if !owner => return Ok(None),
        Role::Owner => changed.owners.push(command.user_id.clone()),
        Role::Member if current.owners.len() == 1 => {
            return Err(StoreError::Conflict(format!(
                "{:?} is the only owner of conversation {:?}: make another participant an \
                 owner first",
                command.user_id, command.conversation_id
            )))
        }
        Role::Member => changed.owners.retain(|o| o != &command.user_id),
    }
    Ok(Some(touched(changed, &command.at)))
}

/// The conversation to delete (an owner's request).
pub(super) fn decide_delete(
    current: Option<&Conversation>,
    command: &DeleteConversation,
) -> Result<Conversation> {
    let current = participant_view(current, &command.conversation_id, &command.actor)?;
    require_owner(current, &command.actor, "delete it")?;
    Ok(current.clone())
}

/// The conversation, if it exists and `actor` is one of its participants.
fn participant_view<'c>(
    current: Option<&'c Conversation>,
    conversation_id: &str,
    actor: &str,
) -> Result<&'c Conversation> {
    current
        .filter(|c| c.has_participant(actor))
        .ok_or_else(|| StoreError::NotFound(format!("conversation {conversation_id:?}")))
}

/// `Forbidden` unless `actor` owns the conversation; `what` says what only owners may do.
fn require_owner(conversation: &Conversation, actor: &str, what: &str) -> Result<()> {
    if conversation.is_owner(actor) {
        return Ok(());
    }
    Err(StoreError::Forbidden(format!(
        "only an owner of conversation {:?} may {what}; {actor:?} is a member",
        conversation.id
    )))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation(participants: &[&str], owners: &[&str]) -> Conversation {
        Conversation {
            id: "c".into(),
            title: None,
            participants: participants.iter().map(|p| p.to_string()).collect(),
            owners: owners.iter().map(|p| p.to_string()).collect(),
            last_message: None,
            last_seq: 0,
            created_at: "t0".into(),
            updated_at: "t0".into(),
        }
    }

    fn change(actor: &str, user: &str) -> ChangeParticipant {
        ChangeParticipant {
            conversation_id: "c".into(),
            actor: actor.into(),
            user_id: user.into(),
            at: "t1".into(),
        }
    }

    fn role(actor: &str, user: &str, role: Role) -> SetRole {
        SetRole {
            conversation_id: "c".into(),
            actor: actor.into(),
            user_id: user.into(),
            role,
            at: "t1".into(),
        }
    }

    /// Members may leave but not remove others; a last owner leaving hands ownership to the
    /// longest-standing participant; owners may remove anyone.
    #[test]
    fn removals_follow_the_roles() {
        let c = conversation(&["ann", "bob", "cy"], &["ann"]);
        let refused = decide_remove(Some(&c), &change("bob", "cy"));
        assert!(
            matches!(refused, Err(StoreError::Forbidden(_))),
            "{refused:?}"
        );
        let left = decide_remove(Some(&c), &change("bob", "bob"))
            .unwrap()
            .unwrap();
        assert_eq!(left.participants, ["ann", "cy"]);
        assert_eq!(left.owners, ["ann"]);
        let owner_left = decide_remove(Some(&c), &change("ann", "ann"))
            .unwrap()
            .unwrap();
        assert_eq!(owner_left.owners, ["bob"], "the longest-standing one");
        let removed = decide_remove(Some(&c), &change("ann", "bob"))
            .unwrap()
            .unwrap();
        assert_eq!(removed.participants, ["ann", "cy"]);
        let stranger = decide_remove(Some(&c), &change("dan", "dan"));
        assert!(matches!(stranger, Err(StoreError::NotFound(_))));
    }

    /// Only owners add, rename, delete and change roles; the last owner stays an owner.
    #[test]
    fn owner_changes_need_an_owner() {
        let c = conversation(&["ann", "bob"], &["ann"]);
        let add = decide_add(Some(&c), &change("bob", "cy"), 10);
        assert!(matches!(add, Err(StoreError::Forbidden(_))));
        let rename = RenameConversation {
            conversation_id: "c".into(),
            actor: "bob".into(),
            title: Some("x".into()),
            at: "t1".into(),
        };
        assert!(matches!(
            decide_rename(Some(&c), &rename),
            Err(StoreError::Forbidden(_))
        ));
        let delete = DeleteConversation {
            conversation_id: "c".into(),
            actor: "bob".into(),
            at: "t1".into(),
        };
        assert!(matches!(
            decide_delete(Some(&c), &delete),
            Err(StoreError::Forbidden(_))
        ));
        let promote = decide_role(Some(&c), &role("bob", "bob", Role::Owner));
        assert!(matches!(promote, Err(StoreError::Forbidden(_))));
        let last = decide_role(Some(&c), &role("ann", "ann", Role::Member));
        assert!(matches!(last, Err(StoreError::Conflict(_))), "{last:?}");
        let both = decide_role(Some(&c), &role("ann", "bob", Role::Owner))
            .unwrap()
            .unwrap();
        assert_eq!(both.owners, ["ann", "bob"]);
        let stepped_down = decide_role(Some(&both), &role("ann", "ann", Role::Member))
            .unwrap()
            .unwrap();
        assert_eq!(stepped_down.owners, ["bob"]);
        assert!(decide_role(Some(&both), &role("ann", "bob", Role::Owner))
            .unwrap()
            .is_none());
    }
}
