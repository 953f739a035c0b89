//! The chat read model in its own sled database (`DATA_DIR/store/`, see [`database`]):
//! conversations, messages by (conversation, seq), the message-id ([`id_index`]) and client-id
//! indexes, read state, the outbox of edit and delete events not yet relayed, and the store's
//! applied-up-to position ([`position`]).
//!
//! It owns the chat data and the store writer's batch ([`Store::apply_batch`]): plain inserts in
//! a replay-safe order — no sled transaction (see [`apply`]) — and the move of its position
//! ([`Store::commit_batch`]), which the writer calls once the batch's events are relayed; the
//! [`checkpoint`] writes what the writer keeps in memory (message-id index entries, messages,
//! activity, read state, positions). It knows nothing of HTTP or WebSocket, nor of how records
//! reach it (that is `pipeline/`); it uses the log only to mirror its position into the
//! consumer group `store` ([`Store::mirror_position`]).
//!
//! Messages are written as chunks, one record per conversation per checkpoint: those stored
//! since the last checkpoint are held in memory ([`unwritten`]) and read from there.
//!
//! A conversation is two records ([`activity`]): membership (tree `conversations`, written by
//! conversation commands) and activity (tree `activity`, moved only by the store writer of its
//! partition and written by the checkpoint). Reads of conversations and read state come from an
//! in-memory [`view`] loaded on open (a scan of `conversations`, `activity` and `read_state`;
//! `messages` is never scanned), so validating a send costs no disk read. Every change arrives
//! through the log as a command (conversation commands too: the edge checks them against the
//! view, the writer decides them again in log order).
//!
//! Rules the writer follows (see [`apply`]):
//! - `seq` is dense per conversation (1, 2, 3 …) in the order of the conversation's partition,
//!   and `lastMessage` only moves forward.
//! - A send whose id is stored already (by another record), or whose (sender, conversation,
//!   clientMessageId) is indexed, is skipped: nothing is stored twice.
//! - Unread counts are O(1): storing a message by user U at seq S moves U's `lastReadSeq` up to S
//!   (a sender has read its own messages, and sending marks the conversation read), so every
//!   message above a user's `lastReadSeq` is someone else's and `unreadCount = lastSeq −
//!   lastReadSeq`. Read state only moves forward and never past `lastSeq`.
//!
//! Files: `model` (public types and validation), `keys` (key layouts), `command` (log commands
//! and events), `activity` (membership and activity records), `view` (in-memory view),
//! `conversations` (conversation commands), `queries` (history and lookups), `id_index` (the
//! message-id index, in buckets, and its entries pending in memory), `apply` (the
//! store writer's batch), `outbox` (edit and delete events awaiting relay), `database` (the
//! store's sled database), `position` (applied-up-to, and its mirror in the log),
//! `checkpoint` (writing what the writer derived, with the position it covers), `unwritten`
//! (messages since the last checkpoint, and the chunk format).

mod activity;
mod apply;
mod checkpoint;
mod command;
mod conversations;
mod database;
mod error;
mod id_index;
mod keys;
mod model;
mod outbox;
mod position;
mod queries;
mod unwritten;
mod view;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub(crate) use apply::{AppliedBatch, BatchPosition, Change, Outcome};
/// The decoded form of a `messages.sent` record, for tests that read the topic back.
#[cfg(test)]
pub(crate) use command::MessageEvent;
pub(crate) use command::{
    new_message_id, ChangeParticipant, ChatCommand, DeleteConversation, DeleteMessage, EditMessage,
    EventType, MarkRead, RenameConversation, Role, SendMessage, SetRole,
};
pub(crate) use error::{Result, StoreError};
pub(crate) use model::{
    now_rfc3339, validate_user_id, Conversation, ConversationPage, ConversationView, HistoryPage,
    Message,
};
pub(crate) use outbox::OutboxEntry;

use database::Database;
use id_index::{IdIndex, PendingIds};
use position::Positions;
use unwritten::Unwritten;
use view::View;

/// Most messages one history page returns.
pub(crate) const MAX_HISTORY_PAGE: usize = 1000;
/// Default most participants of one conversation (`limits.maxParticipants`).
pub(crate) const DEFAULT_MAX_PARTICIPANTS: usize = 1000;

/// Limits the store enforces on conversation commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreLimits {
    /// Most participants of one conversation: a create that lists more is invalid, an add to a
    /// full conversation is refused. Every message costs work per participant (deliveries,
    /// notifications), so this bounds what one send can make the server do.
    pub max_participants: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_participants: DEFAULT_MAX_PARTICIPANTS,
        }
    }
}

/// The store's sled trees, in its own database.
pub(crate) struct Trees {
    pub conversations: sled::Tree,
    pub activity: sled::Tree,
    pub messages: sled::Tree,
    message_ids: IdIndex,
    pub client_ids: sled::Tree,
    pub read_state: sled::Tree,
    pub outbox: sled::Tree,
}

struct Inner {
    trees: Trees,
    positions: Positions,
    /// Declared last: the trees above are dropped before the database closes its files.
    database: Database,
    limits: StoreLimits,
    view: RwLock<View>,
    /// The messages stored since the last checkpoint (see [`unwritten`]).
    unwritten: RwLock<Unwritten>,
    /// The message-id index entries of the messages stored since the last checkpoint (see
    /// [`id_index`]).
    pending_ids: RwLock<PendingIds>,
    /// Store writers hold it shared for a batch; a checkpoint holds it alone to let go of the
    /// unwritten messages it wrote, so that no batch is between finding one and changing it.
    batches: RwLock<()>,
    /// Held while chunks are written, and by a conversation's deletion.
    chunk_writes: parking_lot::Mutex<()>,
    /// Bumped after every participant change (see [`Store::membership_epoch`]).
    membership_epoch: AtomicU64,
    /// Why the last checkpoint failed, if it did: the store writers stop on it as on a write of
    /// their own that fails (see [`Store::apply_batch`]).
    checkpoint_failure: parking_lot::Mutex<Option<String>>,
}

/// A handle to the chat store; cheap to clone, usable from any thread or task.
///
/// It keeps the store's database open: drop every handle before reopening the data directory.
#[derive(Clone)]
pub(crate) struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store's database under the data directory `data_dir` (whose
    /// log is open, so the directory is ours and locked) and loads the in-memory view, with the
    /// default limits.
    #[cfg(test)]
    pub(crate) fn open(data_dir: &Path) -> Result<Store> {
        Store::open_with(data_dir, StoreLimits::default())
    }

    /// [`open`](Self::open) with the given limits.
    pub(crate) fn open_with(data_dir: &Path, limits: StoreLimits) -> Result<Store> {
        let database = Database::open(data_dir)?;
        let db = &database.db;
        let trees = Trees {
            conversations: db.open_tree("conversations")?,
            activity: db.open_tree("activity")?,
            messages: db.open_tree("messages")?,
            message_ids: IdIndex::open(db)?,
            client_ids: db.open_tree("client_ids")?,
            read_state: db.open_tree("read_state")?,
            outbox: db.open_tree("outbox")?,
        };
        let positions = Positions::open(db)?;
        let view = load_view(&trees)?;
        Ok(Store {
            inner: Arc::new(Inner {
                trees,
                positions,
                database,
                limits,
                view: RwLock::new(view),
                unwritten: RwLock::default(),
                pending_ids: RwLock::default(),
                batches: RwLock::new(()),
                chunk_writes: parking_lot::Mutex::new(()),
                membership_epoch: AtomicU64::new(0),
                checkpoint_failure: parking_lot::Mutex::new(None),
            }),
        })
    }

    pub(crate) fn trees(&self) -> &Trees {
        &self.inner.trees
    }

    fn positions(&self) -> &Positions {
        &self.inner.positions
    }

    /// The limits this store enforces.
    pub(crate) fn limits(&self) -> StoreLimits {
        self.inner.limits
    }

    fn view(&self) -> RwLockReadGuard<'_, View> {
        self.inner.view.read()
    }

    fn view_mut(&self) -> RwLockWriteGuard<'_, View> {
        self.inner.view.write()
    }

    fn unwritten(&self) -> RwLockReadGuard<'_, Unwritten> {
        self.inner.unwritten.read()
    }

    fn unwritten_mut(&self) -> RwLockWriteGuard<'_, Unwritten> {
        self.inner.unwritten.write()
    }

    fn pending_ids(&self) -> RwLockReadGuard<'_, PendingIds> {
        self.inner.pending_ids.read()
    }

    fn pending_ids_mut(&self) -> RwLockWriteGuard<'_, PendingIds> {
        self.inner.pending_ids.write()
    }

    /// Where message `id` is (a location, see [`keys::message_id_value`]): pending
    /// in memory, or in its bucket on disk.
    fn location_of(&self, id: &str) -> Result<Option<Vec<u8>>> {
        if let Some(location) = self.pending_ids().get(id) {
            return Ok(Some(location.to_vec()));
        }
        self.trees().message_ids.get(id)
    }

    /// True if the conversation exists and `user` is one of its participants (memory only).
    pub(crate) fn is_participant(&self, conversation: &str, user: &str) -> bool {
        self.view()
            .conversation(conversation)
            .is_some_and(|c| c.has_participant(user))
    }

    /// The conversation, if it exists (memory only).
    pub(crate) fn conversation(&self, conversation: &str) -> Option<Conversation> {
        self.view().conversation(conversation).cloned()
    }

    /// A number that changes after every participant change (added or removed) of any
    /// conversation: a reader that found a user a participant under one value may trust that
    /// answer as long as the value stays the same (a WebSocket writer checks every frame so).
    pub(crate) fn membership_epoch(&self) -> u64 {
        self.inner.membership_epoch.load(Ordering::Acquire)
    }

    pub(crate) fn bump_membership_epoch(&self) {
        self.inner.membership_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The store writer's, once it removed a deleted conversation's records: the view forgets
    /// it, then the membership epoch moves (a reader that sees the new epoch finds nobody a
    /// participant any more).
    pub(super) fn forget_conversation(&self, conversation: &str) {
        self.view_mut().remove(conversation);
        self.bump_membership_epoch();
    }

    /// The conversation's participants, if it exists (memory only): who a message goes to.
    pub(crate) fn participants(&self, conversation: &str) -> Option<Vec<String>> {
        self.view()
            .conversation(conversation)
            .map(|c| c.participants.clone())
    }

    /// How many participants the conversation has (memory only), `None` if it does not exist.
    pub(crate) fn participant_count(&self, conversation: &str) -> Option<usize> {
        self.view()
            .conversation(conversation)
            .map(|c| c.participants.len())
    }

    /// Every other user who shares a conversation with `user` (memory only): whom its
    /// presence concerns.
    pub(crate) fn contacts_of(&self, user: &str) -> Vec<String> {
        self.view().contacts_of(user)
    }

    /// The conversation as `user` sees it; `NotFound` if it does not exist or `user` is not a
    /// participant.
    pub(crate) fn conversation_for(
        &self,
        user: &str,
        conversation: &str,
    ) -> Result<ConversationView> {
        let view = self.view();
        let found = view
            .conversation(conversation)
            .filter(|c| c.has_participant(user))
            .ok_or_else(|| StoreError::NotFound(format!("conversation {conversation:?}")))?;
        Ok(ConversationView::new(
            found,
            view.last_read(user, conversation),
        ))
    }

    /// A page of `user`'s conversations, most recent activity (updatedAt) first, ties by id
    /// descending. `cursor` is the `next_cursor` of the previous page.
    pub(crate) fn conversations_of(
        &self,
        user: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<ConversationPage> {
        self.view().conversations_of(user, limit, cursor)
    }

    /// The highest seq `user` has read in `conversation` (0 if none).
    #[cfg(test)]
    pub(crate) fn read_state(&self, user: &str, conversation: &str) -> u64 {
        self.view().last_read(user, conversation)
    }
}

/// Loads the view from disk. Activity and read states whose conversation has no membership
/// record are removed: a crash after a deletion's batch and before the next checkpoint leaves
/// them (see [`checkpoint`]), and a conversation created later with the same id must not inherit
/// them.
fn load_view(trees: &Trees) -> Result<View> {
    let mut memberships = std::collections::HashMap::new();
    for item in trees.conversations.iter() {
        let (key, value) = item?;
        let id = String::from_utf8_lossy(&key).into_owned();
        let membership = activity::Membership::decode(&id, &value)?;
        memberships.insert(id, membership);
    }
    let mut view = View::default();
    for item in trees.activity.iter() {
        let (key, value) = item?;
        let id = String::from_utf8_lossy(&key).into_owned();
        match memberships.remove(&id) {
            Some(membership) => {
                let activity = activity::Activity::decode(&id, &value)?;
                view.insert(activity::merge(membership, Some(activity)));
            }
            None => {
                trees.activity.remove(&key)?;
            }
        }
    }
    for (_, membership) in memberships {
        view.insert(activity::merge(membership, None));
    }
    for item in trees.read_state.iter() {
        let (key, value) = item?;
        let (user, conversation) = keys::decode_read_state(&key)?;
        if view.conversation(&conversation).is_none() {
            trees.read_state.remove(&key)?;
            continue;
        }
        view.set_read(
            &user,
            &conversation,
            keys::decode_u64("read_state", &value)?,
        );
    }
    // What was just read from disk is not a change to write back.
    view.take_changes();
    Ok(view)
}

#[cfg(test)]
mod deletion_tests;
#[cfg(test)]
mod tests;
