//! Conversation commands: create, add and remove participants. Each is one sled transaction on
//! the `conversations` tree (read-modify-write, so it cannot undo a message the store writer
//! stored meanwhile), then an update of the in-memory view.
//!
//! Permissions, kept simple: any participant may add or remove anyone; a user may always remove
//! itself. A caller that is not a participant gets `NotFound` (existence is not leaked).

use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::error::{Result, StoreError};
use super::model::{
    now_rfc3339, validate_conversation_id, validate_title, validate_user_id, Conversation,
};
use super::Store;

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<StoreError>>;

pub(crate) fn encode_conversation(conversation: &Conversation) -> Vec<u8> {
    serde_json::to_vec(conversation).expect("a conversation of strings always serializes")
}

pub(crate) fn decode_conversation(id: &str, raw: &[u8]) -> Result<Conversation> {
    serde_json::from_slice(raw).map_err(|e| StoreError::corrupt(format!("conversations/{id}"), e))
}

/// Reads a conversation inside a transaction.
pub(crate) fn load_in(tx: &TransactionalTree, id: &str) -> TxResult<Option<Conversation>> {
    match tx.get(id.as_bytes())? {
        Some(raw) => decode_conversation(id, &raw)
            .map(Some)
            .map_err(ConflictableTransactionError::Abort),
        None => Ok(None),
    }
}

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
        let mut members = vec![creator.to_owned()];
        for user in participants {
            validate_user_id("participants", &user)?;
            if !members.contains(&user) {
                members.push(user);
            }
        }
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
        let encoded = encode_conversation(&conversation);
        self.trees().conversations.transaction(|tx| {
            if tx.get(conversation.id.as_bytes())?.is_some() {
                return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                    format!("conversation {:?} exists already", conversation.id),
                )));
            }
            tx.insert(conversation.id.as_bytes(), encoded.as_slice())?;
            Ok(())
        })?;
        self.view_mut().insert(conversation.clone());
        Ok(conversation)
    }

    /// Adds `user` to the conversation; `actor` must be a participant. Adding a participant
    /// again changes nothing. Returns the conversation as it is now.
    pub fn add_participant(
        &self,
        actor: &str,
        conversation: &str,
        user: &str,
    ) -> Result<Conversation> {
        validate_user_id("userId", user)?;
        self.change_membership(actor, conversation, |c| {
            if c.has_participant(user) {
                return false;
            }
            c.participants.push(user.to_owned());
            true
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
            c.participants.len() != before
        })
    }

    fn change_membership(
        &self,
        actor: &str,
        id: &str,
        change: impl Fn(&mut Conversation) -> bool,
    ) -> Result<Conversation> {
        let not_found = || StoreError::NotFound(format!("conversation {id:?}"));
        if !self.is_participant(id, actor) {
            return Err(not_found());
        }
        let changed = self.trees().conversations.transaction(|tx| {
            let Some(mut conversation) = load_in(tx, id)? else {
                return Err(ConflictableTransactionError::Abort(not_found()));
            };
            if !conversation.has_participant(actor) {
                return Err(ConflictableTransactionError::Abort(not_found()));
            }
            if change(&mut conversation) {
                conversation.updated_at = conversation.updated_at.clone().max(now_rfc3339());
                tx.insert(id.as_bytes(), encode_conversation(&conversation))?;
            }
            Ok(conversation)
        })?;
        self.view_mut().set_membership(&changed);
        Ok(changed)
    }
}
