//! The in-memory view of conversations and read state, loaded on open from the `conversations`,
//! `activity` and `read_state` trees (never from `messages`), so that validating a send and
//! listing a user's conversations need no disk read.
//!
//! Writers update it field by field: the store writer moves activity (`lastMessage`, `lastSeq`,
//! `updatedAt`) and read state forward only, conversation commands replace participants and
//! title. Two writers racing on one conversation therefore cannot undo each other's change in
//! memory.
//!
//! The view is where activity and read state are current: the store writer does not write them
//! to disk per batch. The view notes which of them changed ([`View::take_changes`]), and the
//! store's [`checkpoint`](super::checkpoint) writes those.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use base64::Engine;

use super::activity::Activity;
use super::error::{Result, StoreError};
use super::model::{Conversation, ConversationPage, ConversationView, Message};

/// (updatedAt, conversation id): a user's conversations sort by this, newest first.
type ActivityKey = (String, String);

#[derive(Default)]
pub(crate) struct View {
    conversations: HashMap<String, Conversation>,
    by_user: HashMap<String, BTreeSet<ActivityKey>>,
    read: HashMap<(String, String), u64>,
    /// Activity and read states changed since the last [`View::take_changes`].
    changed: Changed,
}

/// Keys whose disk record is older than the view: conversation ids (activity) and
/// (user, conversation) pairs (read state).
#[derive(Debug, Default)]
pub(super) struct Changed {
    pub activity: HashSet<String>,
    pub reads: HashSet<(String, String)>,
}

/// What a checkpoint writes: each changed record as the view holds it now, `None` where the
/// record should not exist (its conversation was deleted, or a read state of 0).
#[derive(Debug, Default)]
pub(super) struct Changes {
    pub activity: Vec<(String, Option<Activity>)>,
    pub reads: Vec<((String, String), Option<u64>)>,
}

impl Changes {
    /// The keys, for [`View::mark_changed`] when writing them failed.
    pub(super) fn keys(&self) -> Changed {
        Changed {
            activity: self.activity.iter().map(|(id, _)| id.clone()).collect(),
            reads: self.reads.iter().map(|(key, _)| key.clone()).collect(),
        }
    }
}

impl View {
    pub(super) fn conversation(&self, id: &str) -> Option<&Conversation> {
        self.conversations.get(id)
    }

    pub(super) fn last_read(&self, user: &str, conversation: &str) -> u64 {
        self.read
            .get(&(user.to_owned(), conversation.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Inserts a new conversation (or replaces one read from disk at open).
    pub(super) fn insert(&mut self, conversation: Conversation) {
        let key = (conversation.updated_at.clone(), conversation.id.clone());
        for user in &conversation.participants {
            self.by_user
                .entry(user.clone())
                .or_default()
                .insert(key.clone());
        }
        self.conversations
            .insert(conversation.id.clone(), conversation);
    }

    /// Applies a participant/title change: `changed` as committed.
    pub(super) fn set_membership(&mut self, changed: &Conversation) {
        let Some(current) = self.conversations.get_mut(&changed.id) else {
            self.insert(changed.clone());
            return;
        };
        let old_key = (current.updated_at.clone(), current.id.clone());
        for user in &current.participants {
            remove_key(&mut self.by_user, user, &old_key);
        }
        current.participants = changed.participants.clone();
        current.owners = changed.owners.clone();
        current.title = changed.title.clone();
        current.updated_at = current.updated_at.clone().max(changed.updated_at.clone());
        let new_key = (current.updated_at.clone(), current.id.clone());
        for user in &current.participants {
            self.by_user
                .entry(user.clone())
                .or_default()
                .insert(new_key.clone());
        }
    }

    /// The conversation's activity (`None`: it does not exist).
    pub(super) fn activity(&self, id: &str) -> Option<Activity> {
        self.conversations.get(id).map(Activity::of)
    }

    /// Applies the store writer's change of a conversation's activity, forward only.
    pub(super) fn set_activity(&mut self, id: &str, changed: Activity) {
        let Some(current) = self.conversations.get_mut(id) else {
            return;
        };
        self.changed.activity.insert(id.to_owned());
        if changed.last_seq < current.last_seq {
            return;
        }
        current.last_seq = changed.last_seq;
        current.last_message = changed.last_message.map(without_json);
        if changed.updated_at > current.updated_at {
            let old_key = (current.updated_at.clone(), current.id.clone());
            let new_key = (changed.updated_at.clone(), current.id.clone());
            for user in &current.participants {
                remove_key(&mut self.by_user, user, &old_key);
                self.by_user
                    .entry(user.clone())
                    .or_default()
                    .insert(new_key.clone());
            }
            current.updated_at = changed.updated_at;
        }
    }

    /// Every other participant of the conversations `user` is in, each once.
    pub(super) fn contacts_of(&self, user: &str) -> Vec<String> {
        let mut contacts = BTreeSet::new();
        for (_, id) in self.by_user.get(user).into_iter().flatten() {
            let Some(conversation) = self.conversations.get(id) else {
                continue;
            };
            for participant in &conversation.participants {
                if participant != user {
                    contacts.insert(participant.as_str());
                }
            }
        }
        contacts.into_iter().map(str::to_owned).collect()
    }

    /// Forgets a deleted conversation: its entry, its place in every participant's list and
    /// every read state on it.
    pub(super) fn remove(&mut self, id: &str) {
        if let Some(gone) = self.conversations.remove(id) {
            let key = (gone.updated_at.clone(), gone.id.clone());
            for user in &gone.participants {
                remove_key(&mut self.by_user, user, &key);
            }
        }
        let changed = &mut self.changed;
        self.read.retain(|(user, conversation), _| {
            if conversation != id {
                return true;
            }
            changed.reads.insert((user.clone(), conversation.clone()));
            false
        });
        changed.activity.insert(id.to_owned());
    }

    /// Moves a user's read state forward (never back).
    pub(super) fn set_read(&mut self, user: &str, conversation: &str, seq: u64) {
        let key = (user.to_owned(), conversation.to_owned());
        let entry = self.read.entry(key.clone()).or_insert(0);
        *entry = (*entry).max(seq);
        self.changed.reads.insert(key);
    }

    /// The activity and read states changed since the last call, as they are now; the view then
    /// counts them written.
    pub(super) fn take_changes(&mut self) -> Changes {
        let Changed { activity, reads } = std::mem::take(&mut self.changed);
        Changes {
            activity: activity
                .into_iter()
                .map(|id| {
                    let now = self.activity(&id);
                    (id, now)
                })
                .collect(),
            reads: reads
                .into_iter()
                .map(|(user, conversation)| {
                    let seq = self
                        .conversations
                        .contains_key(&conversation)
                        .then(|| self.last_read(&user, &conversation))
                        .filter(|seq| *seq > 0);
                    ((user, conversation), seq)
                })
                .collect(),
        }
    }

    /// Counts these records changed again (their write failed).
    pub(super) fn mark_changed(&mut self, keys: Changed) {
        self.changed.activity.extend(keys.activity);
        self.changed.reads.extend(keys.reads);
    }

    /// A page of `user`'s conversations, newest activity first (ties: higher id first).
    pub(super) fn conversations_of(
        &self,
        user: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<ConversationPage> {
        if limit == 0 {
            return Err(StoreError::invalid("limit", "must be at least 1"));
        }
        let after = cursor.map(decode_cursor).transpose()?;
        let Some(keys) = self.by_user.get(user) else {
            return Ok(ConversationPage {
                items: Vec::new(),
                next_cursor: None,
            });
        };
        let mut page: Vec<&ActivityKey> = match &after {
            Some(after) => keys.range(..after.clone()).rev().take(limit + 1).collect(),
            None => keys.iter().rev().take(limit + 1).collect(),
        };
        let more = page.len() > limit;
        page.truncate(limit);
        let next_cursor = more
            .then(|| page.last().map(|k| encode_cursor(k)))
            .flatten();
        let items = page
            .iter()
            .filter_map(|(_, id)| self.conversations.get(id))
            .map(|c| ConversationView::new(c, self.last_read(user, &c.id)))
            .collect();
        Ok(ConversationPage { items, next_cursor })
    }
}

fn remove_key(by_user: &mut HashMap<String, BTreeSet<ActivityKey>>, user: &str, key: &ActivityKey) {
    if let Some(keys) = by_user.get_mut(user) {
        keys.remove(key);
        if keys.is_empty() {
            by_user.remove(user);
        }
    }
}

fn encode_cursor((updated_at, id): &ActivityKey) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{updated_at}\n{id}"))
}

fn decode_cursor(cursor: &str) -> Result<ActivityKey> {
    let bad = || StoreError::invalid("cursor", "not a cursor this server returned");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (updated_at, id) = text.split_once('\n').ok_or_else(bad)?;
    Ok((updated_at.to_owned(), id.to_owned()))
}

/// The message as the view keeps it: without its JSON, which the store writer made for the
/// event, the chunk and the frames. The view holds one message per conversation for as long as
/// the server runs, and the JSON would add as much again to each; so a message whose JSON was
/// made is copied once here (a copy starts without it), per conversation and batch, not per
/// message.
fn without_json(message: Arc<Message>) -> Arc<Message> {
    if message.json.made_len() == 0 {
        message
    } else {
        Arc::new(Message::clone(&message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation(id: &str, updated_at: &str, participants: &[&str]) -> Conversation {
        Conversation {
            id: id.into(),
            title: None,
            participants: participants.iter().map(|p| p.to_string()).collect(),
            owners: participants.iter().take(1).map(|p| p.to_string()).collect(),
            last_message: None,
            last_seq: 0,
            created_at: updated_at.into(),
            updated_at: updated_at.into(),
        }
    }

    fn ids(page: &ConversationPage) -> Vec<&str> {
        page.items.iter().map(|c| c.id.as_str()).collect()
    }

    #[test]
    fn cursor_paging_walks_conversations_newest_first_without_gaps_or_repeats() {
        let mut view = View::default();
        for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            view.insert(conversation(
                id,
                &format!("2024-01-0{}T00:00:00.000Z", i + 1),
                &["u"],
            ));
        }
        view.insert(conversation("z", "2024-01-09T00:00:00.000Z", &["other"]));
        let first = view.conversations_of("u", 2, None).unwrap();
        assert_eq!(ids(&first), ["e", "d"]);
        let second = view
            .conversations_of("u", 2, first.next_cursor.as_deref())
            .unwrap();
        assert_eq!(ids(&second), ["c", "b"]);
        let third = view
            .conversations_of("u", 2, second.next_cursor.as_deref())
            .unwrap();
        assert_eq!(ids(&third), ["a"]);
        assert_eq!(third.next_cursor, None);
        assert!(view.conversations_of("u", 2, Some("%%%")).is_err());
        assert!(view
            .conversations_of("nobody", 2, None)
            .unwrap()
            .items
            .is_empty());
    }

    #[test]
    fn activity_moves_a_conversation_to_the_front_and_never_back() {
        let mut view = View::default();
        view.insert(conversation("a", "2024-01-01T00:00:00.000Z", &["u"]));
        view.insert(conversation("b", "2024-01-02T00:00:00.000Z", &["u"]));
        let mut newer = conversation("a", "2024-01-03T00:00:00.000Z", &["u"]);
        newer.last_seq = 2;
        view.set_activity("a", Activity::of(&newer));
        assert_eq!(
            ids(&view.conversations_of("u", 10, None).unwrap()),
            ["a", "b"]
        );
        let mut older = conversation("a", "2024-01-01T00:00:00.000Z", &["u"]);
        older.last_seq = 1;
        view.set_activity("a", Activity::of(&older));
        assert_eq!(view.conversation("a").unwrap().last_seq, 2);
    }

    #[test]
    fn read_state_only_moves_forward() {
        let mut view = View::default();
        view.set_read("u", "c", 5);
        view.set_read("u", "c", 3);
        assert_eq!(view.last_read("u", "c"), 5);
    }

    #[test]
    fn contacts_are_the_other_participants_of_a_users_conversations() {
        let mut view = View::default();
        view.insert(conversation("a", "2024-01-01T00:00:00.000Z", &["u", "v"]));
        view.insert(conversation(
            "b",
            "2024-01-02T00:00:00.000Z",
            &["u", "v", "w"],
        ));
        view.insert(conversation("c", "2024-01-03T00:00:00.000Z", &["x"]));
        assert_eq!(view.contacts_of("u"), ["v", "w"]);
        assert!(view.contacts_of("x").is_empty());
    }

    #[test]
    fn membership_changes_move_the_conversation_between_users() {
        let mut view = View::default();
        view.insert(conversation("a", "2024-01-01T00:00:00.000Z", &["u", "v"]));
        view.set_membership(&conversation("a", "2024-01-02T00:00:00.000Z", &["u", "w"]));
        assert!(view
            .conversations_of("v", 5, None)
            .unwrap()
            .items
            .is_empty());
        assert_eq!(ids(&view.conversations_of("w", 5, None).unwrap()), ["a"]);
    }
}
