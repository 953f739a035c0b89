//! The store's checkpoint: the one writer of what the store writer derives from the messages it
//! applies, namely each conversation's activity (tree `activity`), each read state (tree
//! `read_state`) and the applied-up-to position of each partition (tree `applied`, see
//! [`position`](super::position)).
//!
//! The store writer keeps those in memory only (the [`view`](super::view) and the positions)
//! and writes per message only what cannot be derived: the message and its indexes. A
//! conversation's activity and its senders' read states change with every message, but only
//! their latest value matters, so writing them per batch cost two sled inserts a batch could
//! mostly do without. The checkpoint writes each changed one once, at most every
//! `MIRROR_INTERVAL`, then flushes and syncs the database.
//!
//! Why a crash loses nothing: the position a checkpoint writes is noted *before* the view it
//! reads, and a writer moves a partition's position only after the view holds its batch. So the
//! activity and read state on disk are at least as far as the position beside them; sled
//! recovers a prefix of its writes, so the messages of every batch the view held are on disk
//! before them. After a crash the writer replays from that position; a replayed send finds its
//! message by id (no new seq), and activity and read state only move forward, so the replay
//! brings them to where they were.
//!
//! A deleted conversation's activity and read states are removed here too (the view marks them
//! changed and no longer holds them), so this module is the only writer of both trees and a
//! deletion cannot race a checkpoint writing them back.

use std::collections::BTreeMap;

use super::error::Result;
use super::keys;
use super::Store;

impl Store {
    /// Writes the activity, read states and positions changed since the last checkpoint, then
    /// flushes and syncs the store's database. Returns the positions now durable. Blocking.
    ///
    /// On failure the changed records stay marked, so the next checkpoint writes them.
    pub(crate) fn checkpoint(&self) -> Result<BTreeMap<u32, u64>> {
        let noted = self.positions().noted();
        let changes = self.view_mut().take_changes();
        let written = self.write_changes(&changes, &noted);
        if written.is_err() {
            self.view_mut().mark_changed(changes.keys());
        }
        written?;
        Ok(noted)
    }

    fn write_changes(
        &self,
        changes: &super::view::Changes,
        noted: &BTreeMap<u32, u64>,
    ) -> Result<()> {
        let t = self.trees();
        for (id, activity) in &changes.activity {
            match activity {
                Some(activity) => t.activity.insert(id.as_bytes(), activity.encode())?,
                None => t.activity.remove(id.as_bytes())?,
            };
        }
        for ((user, conversation), seq) in &changes.reads {
            let key = keys::read_state(user, conversation);
            match seq {
                Some(seq) => t.read_state.insert(key, &seq.to_be_bytes())?,
                None => t.read_state.remove(key)?,
            };
        }
        self.positions().write(noted)?;
        self.inner.database.flush_and_sync()
    }
}
