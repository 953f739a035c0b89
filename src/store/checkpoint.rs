//! The store's checkpoint: the writer of the message-id index entries pending since the last
//! one (see [`id_index`](super::id_index)), of the busy conversations' messages stored since
//! then (each conversation's as one chunk record of tree `messages`, see
//! [`unwritten`](super::unwritten))
//! and the one writer of what the store writer derives from the messages it applies, namely
//! each conversation's activity (tree `activity`), each read state (tree `read_state`) and the
//! applied-up-to position of each partition (tree `applied`, see [`position`](super::position)).
//!
//! The store writer keeps those in memory only (the [`view`](super::view) and the positions)
//! and writes per message only what cannot be derived: a quiet conversation's message and its
//! client id. A conversation's activity and its senders' read states change with every message,
//! but only their latest value matters, so writing them per batch cost two sled inserts a batch
//! could mostly do without. The checkpoint writes each changed one once, at most every
//! `MIRROR_INTERVAL`, then flushes and syncs the database.
//!
//! Why a crash loses nothing: the position a checkpoint writes is noted *before* the messages
//! and the view it reads, and a writer moves a partition's position only after the view and the
//! unwritten messages hold its batch. So the chunks, activity and read state on disk are at
//! least as far as the position beside them, written before it. The pending index entries are
//! taken *after* the view's changes and written before everything else; sled
//! recovers a prefix of its writes, so a message that anything on disk counts is indexed.
//! After a crash the writer replays from that position; a replayed send finds its id indexed
//! with its seq and stores its message again at that seq if no chunk holds it (no new seq),
//! and activity and read state only move forward, so the replay brings them to where they
//! were.
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
    /// On failure the changed records stay marked, so the next checkpoint writes them, and the
    /// store writers stop (see [`Store::apply_batch`]).
    pub(crate) fn checkpoint(&self) -> Result<BTreeMap<u32, u64>> {
        self.checkpoint_between(&mut || {}, &mut || {
            fail::fail_point!("store::checkpoint", |_| Err(
                super::error::StoreError::Storage(
                    "injected write failure (failpoint store::checkpoint)".into()
                )
            ));
            Ok(())
        })
    }

    /// Why the last checkpoint failed, if it did.
    pub(super) fn checkpoint_failure(&self) -> Option<String> {
        self.inner.checkpoint_failure.lock().clone()
    }

    /// [`checkpoint`](Self::checkpoint), calling `between` at each point where a store writer
    /// may apply a batch meanwhile (a test applies one there), and `count` before each of its
    /// writes (a test stops it there, as a crash would).
    ///
    /// The view's changes are taken before the unwritten messages and the pending index entries
    /// are copied: a batch applied in between is then in those copies, so every message the
    /// written activity counts is indexed on disk (and in a chunk) before it.
    pub(super) fn checkpoint_between(
        &self,
        between: &mut dyn FnMut(),
        count: &mut dyn FnMut() -> Result<()>,
    ) -> Result<BTreeMap<u32, u64>> {
        let noted = self.positions().noted();
        between();
        let changes = self.view_mut().take_changes();
        between();
        let written = self
            .write_unwritten_between(between, count)
            .and_then(|()| self.write_changes(&changes, &noted, count));
        if written.is_err() {
            self.view_mut().mark_changed(changes.keys());
        }
        *self.inner.checkpoint_failure.lock() = written.as_ref().err().map(ToString::to_string);
        written?;
        Ok(noted)
    }

    /// Writes each conversation's unwritten messages as one chunk record, then lets go of
    /// those unchanged since (see [`Unwritten::forget_written`](super::unwritten::Unwritten));
    /// what could not be written stays in memory. Store writers go on meanwhile, except for a
    /// conversation's deletion, which waits for the chunks being written so that none of its
    /// messages comes back after it. Blocking.
    pub(super) fn write_unwritten(&self) -> Result<()> {
        self.write_unwritten_between(&mut || {}, &mut || Ok(()))
    }

    /// [`write_unwritten`](Self::write_unwritten), calling `between` where a store writer may
    /// apply a batch meanwhile and `count` before each write (see
    /// [`Store::checkpoint_between`]).
    fn write_unwritten_between(
        &self,
        between: &mut dyn FnMut(),
        count: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        let (written, inserted) = {
            let _chunks = self.inner.chunk_writes.lock();
            self.write_pending_ids(count)?;
            between();
            let snapshots = self.unwritten().snapshot();
            between();
            let mut written = Vec::new();
            let mut inserted = Ok(());
            for snapshot in snapshots {
                let key = keys::message(&snapshot.conversation, snapshot.first);
                let chunk = snapshot.chunk.as_slice();
                inserted = count().and_then(|()| {
                    self.trees().messages.insert(key, chunk)?;
                    Ok(())
                });
                if inserted.is_err() {
                    break;
                }
                written.push(snapshot);
            }
            (written, inserted)
        };
        // No batch between finding a message among the unwritten ones and putting it back.
        let _alone = self.inner.batches.write();
        let mut unwritten = self.unwritten_mut();
        unwritten.forget_written(&written);
        unwritten.start_interval(&written);
        drop(unwritten);
        inserted?;
        Ok(())
    }

    /// Writes the message-id index entries pending in memory to their buckets; they stay
    /// pending if that fails. First in a checkpoint: a replay must find indexed every message
    /// that the chunks, the activity or a position written after them count (see the module
    /// doc). The caller holds `chunk_writes`. Blocking.
    fn write_pending_ids(&self, count: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let taken = self.pending_ids_mut().take_for_writing();
        let entries = taken.iter().map(|(id, at)| (id.as_str(), at.as_slice()));
        let added = self.trees().message_ids.add(entries, &mut *count);
        drop(taken);
        self.pending_ids_mut().written(added.is_ok());
        added
    }

    fn write_changes(
        &self,
        changes: &super::view::Changes,
        noted: &BTreeMap<u32, u64>,
        count: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        let t = self.trees();
        for (id, activity) in &changes.activity {
            count()?;
            match activity {
                Some(activity) => t.activity.insert(id.as_bytes(), activity.encode())?,
                None => t.activity.remove(id.as_bytes())?,
            };
        }
        for ((user, conversation), seq) in &changes.reads {
            let key = keys::read_state(user, conversation);
            count()?;
            match seq {
                Some(seq) => t.read_state.insert(key, &seq.to_be_bytes())?,
                None => t.read_state.remove(key)?,
            };
        }
        self.positions().write(noted, count)?;
        self.inner.database.flush_and_sync()
    }
}
