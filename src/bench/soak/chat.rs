//! The soak's chat world and its ledger: users with their tokens, two-member and larger
//! conversations (created over HTTP), which users have a live session now, and every message
//! the server acknowledged (202), by conversation, for the final history check.
//!
//! It does not send load nor hold sessions ([`super::load`], [`super::sessions`] do); it is the
//! state they share.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use super::random::{random_below, random_chance};
use crate::auth::Authenticator;

/// Recently acknowledged messages kept per conversation as edit and delete targets.
const RECENT: usize = 16;

/// The shape of the world, from the options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Users in all.
    pub(crate) users: usize,
    /// Two-member conversations.
    pub(crate) pairs: usize,
    /// Larger conversations.
    pub(crate) groups: usize,
    /// Members of each larger conversation.
    pub(crate) group_members: usize,
    /// Users with a slow-consumer session: members of every larger conversation.
    pub(crate) slow_users: usize,
}

/// Users, tokens and conversations of one run.
pub(crate) struct World {
    /// User ids, by index.
    pub(crate) user_ids: Vec<String>,
    /// Bearer tokens, by user index.
    pub(crate) tokens: Vec<String>,
    /// Conversation ids, by index: the pairs first, then the groups.
    pub(crate) conversations: Vec<String>,
    /// Members (user indexes) of each conversation.
    pub(crate) members: Vec<Vec<usize>>,
    /// Conversation index by id.
    pub(crate) index: HashMap<String, usize>,
    /// How many of the conversations are pairs (the rest are groups).
    pub(crate) pairs: usize,
}

impl World {
    /// Users and memberships (nothing created on the server yet). Pair i joins users i and
    /// i + 1 + (i / users) (mod users); group g has the slow users first, then users spread
    /// from g·members.
    pub(crate) fn new(shape: Shape, run: &str, authenticator: &Authenticator) -> World {
        let user_ids: Vec<String> = (0..shape.users)
            .map(|i| format!("soak-{run}-u{i}"))
            .collect();
        let ttl = Duration::from_secs(7 * 24 * 3600);
        let tokens = user_ids
            .iter()
            .map(|id| authenticator.issue(id, None, &[], ttl))
            .collect();
        let mut members = Vec::new();
        for i in 0..shape.pairs {
            let other = (i + 1 + i / shape.users) % shape.users;
            members.push(vec![i % shape.users, other]);
        }
        for g in 0..shape.groups {
            let mut group: Vec<usize> = (0..shape.slow_users).collect();
            let mut next = g * shape.group_members;
            while group.len() < shape.group_members.max(shape.slow_users + 1) {
                let user = next % shape.users;
                if !group.contains(&user) {
                    group.push(user);
                }
                next += 1;
            }
            members.push(group);
        }
        let conversations: Vec<String> = (0..members.len())
            .map(|i| format!("soak-{run}-c{i}"))
            .collect();
        World {
            index: conversations
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), i))
                .collect(),
            user_ids,
            tokens,
            conversations,
            members,
            pairs: shape.pairs,
        }
    }

    /// Creates every conversation on the server (the first member creates it).
    pub(crate) async fn create(&self, client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
        for (c, id) in self.conversations.iter().enumerate() {
            let members = &self.members[c];
            let others: Vec<&str> = members[1..]
                .iter()
                .map(|&u| self.user_ids[u].as_str())
                .collect();
            let response = client
                .post(format!("{base}/api/conversations"))
                .bearer_auth(&self.tokens[members[0]])
                .json(&json!({"id": id, "participants": others}))
                .send()
                .await
                .with_context(|| format!("cannot reach {base}"))?;
            anyhow::ensure!(
                response.status() == 201,
                "creating conversation {id}: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// A conversation for the next operation: a group with probability `group_share`.
    pub(crate) fn pick_conversation(&self, group_share: f64) -> usize {
        let groups = self.conversations.len() - self.pairs;
        if groups > 0 && (self.pairs == 0 || random_chance(group_share)) {
            self.pairs + random_below(groups)
        } else {
            random_below(self.pairs)
        }
    }

    /// A random member of conversation `c`.
    pub(crate) fn pick_member(&self, c: usize) -> usize {
        let members = &self.members[c];
        members[random_below(members.len())]
    }
}

/// Live sessions per user, as the soak's own clients know them.
pub(crate) struct Presence {
    online: Vec<AtomicU32>,
    /// Sessions open now, over all users.
    pub(crate) live: AtomicU64,
}

impl Presence {
    /// Nobody online.
    pub(crate) fn new(users: usize) -> Presence {
        Presence {
            online: (0..users).map(|_| AtomicU32::new(0)).collect(),
            live: AtomicU64::new(0),
        }
    }

    /// A session of `user` opened.
    pub(crate) fn opened(&self, user: usize) {
        self.online[user].fetch_add(1, Ordering::Relaxed);
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    /// A session of `user` ended.
    pub(crate) fn closed(&self, user: usize) {
        self.online[user].fetch_sub(1, Ordering::Relaxed);
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// Members of `c` other than `sender` with no session: who a notification is due to
    /// (approximately: sessions open and close around the moment the server decides).
    pub(crate) fn offline_recipients(&self, world: &World, c: usize, sender: usize) -> u64 {
        world.members[c]
            .iter()
            .filter(|&&u| u != sender && self.online[u].load(Ordering::Relaxed) == 0)
            .count() as u64
    }
}

/// A message the server acknowledged, kept as an edit or delete target.
#[derive(Debug, Clone)]
pub(crate) struct Recent {
    /// Its id.
    pub(crate) id: String,
    /// The user who sent it (the only one who may edit or delete it).
    pub(crate) sender: usize,
}

/// Every acknowledged message, by conversation.
pub(crate) struct Ledger {
    acked: Mutex<Vec<Vec<u128>>>,
    recent: Mutex<Vec<VecDeque<Recent>>>,
    /// Acknowledged sends so far.
    pub(crate) total: AtomicU64,
}

impl Ledger {
    /// An empty ledger for `conversations` conversations.
    pub(crate) fn new(conversations: usize) -> Ledger {
        Ledger {
            acked: Mutex::new(vec![Vec::new(); conversations]),
            recent: Mutex::new(vec![VecDeque::new(); conversations]),
            total: AtomicU64::new(0),
        }
    }

    /// Records a 202 for message `id` in conversation `c`.
    pub(crate) fn acknowledge(&self, c: usize, id: &str, sender: usize) -> anyhow::Result<()> {
        let uuid = uuid::Uuid::parse_str(id)
            .with_context(|| format!("the 202 named a message id that is no UUID: {id:?}"))?;
        self.acked.lock()[c].push(uuid.as_u128());
        let mut recent = self.recent.lock();
        if recent[c].len() == RECENT {
            recent[c].pop_front();
        }
        recent[c].push_back(Recent {
            id: id.to_owned(),
            sender,
        });
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A recent message of `c` to edit (it stays a target).
    pub(crate) fn edit_target(&self, c: usize) -> Option<Recent> {
        let recent = self.recent.lock();
        let list = &recent[c];
        (!list.is_empty()).then(|| list[random_below(list.len())].clone())
    }

    /// A recent message of `c` to delete (no longer a target afterwards).
    pub(crate) fn delete_target(&self, c: usize) -> Option<Recent> {
        self.recent.lock()[c].pop_front()
    }

    /// The acknowledged ids of every conversation (taken at the end of the run).
    pub(crate) fn acknowledged(&self) -> Vec<Vec<u128>> {
        self.acked.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(shape: Shape) -> World {
        let authenticator = Authenticator::new(&[7u8; 32]).unwrap();
        World::new(shape, "t", &authenticator)
    }

    #[test]
    fn pairs_have_two_distinct_members_and_groups_hold_the_slow_users() {
        let w = world(Shape {
            users: 10,
            pairs: 15,
            groups: 2,
            group_members: 4,
            slow_users: 2,
        });
        assert_eq!(w.conversations.len(), 17);
        for pair in &w.members[..15] {
            assert_eq!(pair.len(), 2);
            assert_ne!(pair[0], pair[1]);
        }
        for group in &w.members[15..] {
            assert_eq!(group.len(), 4);
            assert_eq!(&group[..2], &[0, 1]);
        }
    }

    #[test]
    fn deleted_messages_are_no_longer_targets() {
        let ledger = Ledger::new(1);
        let id = uuid::Uuid::now_v7().to_string();
        ledger.acknowledge(0, &id, 3).unwrap();
        assert_eq!(ledger.edit_target(0).unwrap().id, id);
        assert_eq!(ledger.delete_target(0).unwrap().sender, 3);
        assert!(ledger.edit_target(0).is_none());
        assert_eq!(ledger.acknowledged()[0].len(), 1);
        assert!(ledger.acknowledge(0, "not-a-uuid", 0).is_err());
    }
}
