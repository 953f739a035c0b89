//! The message-id index: message id → where the message is (conversation, seq) and the source
//! offset of the send record that stored it (see [`keys::message_id_value`]). It serves reads
//! and edits by id, and lets a replay recognize a send it applied before (see
//! [`apply`](super::apply)).
//!
//! On disk it is tree `message_id_buckets`, one record per *bucket*: every entry whose id starts
//! with the same [`BUCKET_PREFIX`] bytes. The edges make ids as UUIDv7, whose first thirteen
//! characters are its millisecond, so a bucket holds the messages accepted in one millisecond.
//! Why buckets: ids come in time order, so one record per id kept appending to sled's last leaf,
//! and every insert paid a leaf copy and every eighth a split, the largest cost of a stored
//! message that the store controls. Any string is a valid id; one that is not a UUIDv7 only
//! makes a bucket of its own more often.
//!
//! The store writer does not write the index: it hands each send's entry to memory
//! ([`PendingIds`]), and the [`checkpoint`](super::checkpoint) writes the pending entries bucket
//! by bucket (read, merge, write: a handful of inserts per checkpoint instead of one per
//! message), before anything else it writes. A lookup reads memory first, then the bucket.
//!
//! This module knows nothing of messages or of the log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::error::{Result, StoreError};
use super::keys;

/// The tree of buckets.
pub(super) const TREE: &str = "message_id_buckets";
/// The index of an earlier layout, one record per id: folded into buckets when a store opens.
const UNBUCKETED_TREE: &str = "message_ids";
/// Bytes of an id that name its bucket: a UUIDv7's 48-bit millisecond, as written
/// (`xxxxxxxx-xxxx`).
const BUCKET_PREFIX: usize = 13;

/// The bucket key of an id: its first [`BUCKET_PREFIX`] bytes (all of a shorter id).
fn bucket_of(id: &[u8]) -> &[u8] {
    &id[..id.len().min(BUCKET_PREFIX)]
}

/// The entries of a bucket record, by id. The record is `(u32 BE length ++ bytes)` twice per
/// entry (id, then location), in id order.
type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

fn encode_bucket(entries: &Entries) -> Vec<u8> {
    let size = entries.iter().map(|(id, at)| 8 + id.len() + at.len()).sum();
    let mut record = Vec::with_capacity(size);
    for (id, location) in entries {
        for part in [id, location] {
            // A record of the log is far below 4 GiB, and so is any id it carries.
            let len = u32::try_from(part.len()).expect("an id or a location under 4 GiB");
            record.extend_from_slice(&len.to_be_bytes());
            record.extend_from_slice(part);
        }
    }
    record
}

fn decode_bucket(key: &[u8], mut raw: &[u8]) -> Result<Entries> {
    let bad = || {
        StoreError::corrupt(
            format!("{TREE}/{}", String::from_utf8_lossy(key)),
            "malformed bucket",
        )
    };
    let part = |raw: &mut &[u8]| -> Result<Vec<u8>> {
        let (len, rest) = raw.split_first_chunk::<4>().ok_or_else(bad)?;
        let len = u32::from_be_bytes(*len) as usize;
        let bytes = rest.get(..len).ok_or_else(bad)?.to_vec();
        *raw = &rest[len..];
        Ok(bytes)
    };
    let mut entries = Entries::new();
    while !raw.is_empty() {
        let id = part(&mut raw)?;
        let location = part(&mut raw)?;
        entries.insert(id, location);
    }
    Ok(entries)
}

/// The index on disk.
pub(super) struct IdIndex {
    tree: sled::Tree,
}

impl IdIndex {
    /// Opens the index of `db`, folding an index of the earlier layout into buckets first.
    pub(super) fn open(db: &sled::Db) -> Result<IdIndex> {
        let index = IdIndex {
            tree: db.open_tree(TREE)?,
        };
        index.fold_unbucketed(db)?;
        Ok(index)
    }

    /// The location of `id` on disk, if indexed.
    pub(super) fn get(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let key = bucket_of(id.as_bytes());
        let Some(raw) = self.tree.get(key)? else {
            return Ok(None);
        };
        Ok(decode_bucket(key, &raw)?.remove(id.as_bytes()))
    }

    /// Adds entries (id, location) to their buckets: one read and one write per bucket. `count`
    /// is called before each write (the checkpoint's crash test hook counts them). Blocking.
    pub(super) fn add<'a>(
        &self,
        entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        mut count: impl FnMut() -> Result<()>,
    ) -> Result<()> {
        for (key, added) in by_bucket(entries) {
            let mut bucket = self.bucket(&key)?;
            bucket.extend(added);
            count()?;
            self.tree.insert(key, encode_bucket(&bucket))?;
        }
        Ok(())
    }

    /// Removes the entries of `ids`, bucket by bucket; a bucket left empty goes. `count` is
    /// called before each write (the store writer's crash test hook counts them). Blocking.
    pub(super) fn remove<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        mut count: impl FnMut() -> Result<()>,
    ) -> Result<()> {
        let entries = ids.into_iter().map(|id| (id, &[][..]));
        for (key, removed) in by_bucket(entries) {
            let mut bucket = self.bucket(&key)?;
            let before = bucket.len();
            for id in removed.keys() {
                bucket.remove(id);
            }
            if bucket.len() == before {
                continue;
            }
            count()?;
            if bucket.is_empty() {
                self.tree.remove(key)?;
            } else {
                self.tree.insert(key, encode_bucket(&bucket))?;
            }
        }
        Ok(())
    }

    /// How many ids are indexed on disk (tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.tree
            .iter()
            .map(|item| {
                let (key, raw) = item.expect("a bucket");
                decode_bucket(&key, &raw).expect("a valid bucket").len()
            })
            .sum()
    }

    fn bucket(&self, key: &[u8]) -> Result<Entries> {
        match self.tree.get(key)? {
            Some(raw) => decode_bucket(key, &raw),
            None => Ok(Entries::new()),
        }
    }

    /// Moves every entry of the earlier layout's tree into buckets, then drops that tree. A
    /// crash part-way leaves the tree, and the next open does it again (adding an entry twice
    /// changes nothing).
    fn fold_unbucketed(&self, db: &sled::Db) -> Result<()> {
        if !db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == UNBUCKETED_TREE.as_bytes())
        {
            return Ok(());
        }
        let old = db.open_tree(UNBUCKETED_TREE)?;
        // Keys in order put a bucket's ids together: one bucket in memory at a time.
        let mut moved = 0;
        let mut bucket: Vec<(String, sled::IVec)> = Vec::new();
        let mut write = |bucket: &mut Vec<(String, sled::IVec)>| {
            let entries = bucket.iter().map(|(id, at)| (id.as_str(), at.as_ref()));
            let added = self.add(entries, || Ok(()));
            moved += bucket.len();
            bucket.clear();
            added
        };
        for item in old.iter() {
            let (id, location) = item?;
            let id = String::from_utf8(id.to_vec())
                .map_err(|_| StoreError::corrupt(UNBUCKETED_TREE, "an id that is not UTF-8"))?;
            keys::decode_message_id(&location)?;
            if bucket
                .first()
                .is_some_and(|(first, _)| bucket_of(first.as_bytes()) != bucket_of(id.as_bytes()))
            {
                write(&mut bucket)?;
            }
            bucket.push((id, location));
        }
        write(&mut bucket)?;
        db.flush()?;
        db.drop_tree(UNBUCKETED_TREE)?;
        db.flush()?;
        tracing::info!(moved, "message-id index folded into buckets");
        Ok(())
    }
}

/// Entries grouped by bucket key.
fn by_bucket<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> BTreeMap<Vec<u8>, Entries> {
    let mut buckets: BTreeMap<Vec<u8>, Entries> = BTreeMap::new();
    for (id, location) in entries {
        buckets
            .entry(bucket_of(id.as_bytes()).to_vec())
            .or_default()
            .insert(id.as_bytes().to_vec(), location.to_vec());
    }
    buckets
}

/// Pending entries, by id.
type Pending = HashMap<String, Vec<u8>>;

/// The entries of the messages stored since the last checkpoint, in memory.
#[derive(Debug, Default)]
pub(super) struct PendingIds {
    entries: Pending,
    /// The entries a checkpoint is writing, handed over whole (not copied): lookups still find
    /// them here until they are on disk.
    writing: Option<Arc<Pending>>,
    /// Roughly what `entries` take, and what `writing` takes.
    bytes: usize,
    writing_bytes: usize,
}

/// Roughly what an entry costs beside its bytes (the map's slot, two allocations).
const ENTRY_OVERHEAD: usize = 64;

fn entry_size(id: &str, location: &[u8]) -> usize {
    ENTRY_OVERHEAD + id.len() + location.len()
}

impl PendingIds {
    /// The location of a pending `id`.
    pub(super) fn get(&self, id: &str) -> Option<&[u8]> {
        self.entries
            .get(id)
            .or_else(|| self.writing.as_ref()?.get(id))
            .map(Vec::as_slice)
    }

    pub(super) fn put(&mut self, id: String, location: Vec<u8>) {
        self.bytes += entry_size(&id, &location);
        let size = ENTRY_OVERHEAD + id.len();
        if let Some(old) = self.entries.insert(id, location) {
            self.bytes -= size + old.len();
        }
    }

    /// Hands every entry to a checkpoint, which writes them and then says how that went
    /// ([`written`](Self::written)). The caller holds the store's `chunk_writes` until then.
    pub(super) fn take_for_writing(&mut self) -> Arc<Pending> {
        let taken = Arc::new(std::mem::take(&mut self.entries));
        self.writing = Some(Arc::clone(&taken));
        self.writing_bytes = std::mem::take(&mut self.bytes);
        taken
    }

    /// The checkpoint's write of the entries it took ended: written, they go; not, they are
    /// pending again (an entry put since for the same id wins).
    pub(super) fn written(&mut self, written: bool) {
        let Some(writing) = self.writing.take() else {
            return;
        };
        self.writing_bytes = 0;
        if written {
            return;
        }
        let writing = Arc::try_unwrap(writing).unwrap_or_else(|shared| Pending::clone(&shared));
        for (id, location) in writing {
            if !self.entries.contains_key(&id) {
                self.put(id, location);
            }
        }
    }

    /// Lets go of a deleted conversation's entries. The deletion holds `chunk_writes`, so no
    /// checkpoint is writing meanwhile.
    pub(super) fn remove_conversation(&mut self, conversation: &str) {
        debug_assert!(self.writing.is_none(), "a deletion during an index write");
        let prefix = keys::message_prefix(conversation);
        let bytes = &mut self.bytes;
        self.entries.retain(|id, location| {
            let keep = !location.starts_with(&prefix);
            if !keep {
                *bytes -= entry_size(id, location);
            }
            keep
        });
    }

    /// Roughly the memory the entries take.
    pub(super) fn bytes(&self) -> usize {
        self.bytes + self.writing_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temporary() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .expect("a database");
        (dir, db)
    }

    #[test]
    fn a_uuid_v7_s_bucket_is_its_millisecond() {
        let id = uuid::Uuid::now_v7().to_string();
        assert_eq!(bucket_of(id.as_bytes()), &id.as_bytes()[..13]);
        assert_eq!(&id[8..9], "-");
        assert_eq!(bucket_of(b"short"), b"short");
    }

    #[test]
    fn entries_are_found_added_and_removed_by_bucket() {
        let (_dir, db) = temporary();
        let index = IdIndex::open(&db).expect("open");
        let location = |seq| keys::message_id_value("c", seq, seq + 100);
        let ids = [
            "0190a8b4-1c2d-7000-8000-000000000001",
            "0190a8b4-1c2d-7000-8000-000000000002",
            "0190a8b4-1c2e-7000-8000-000000000003",
            "x",
        ];
        let entries: Vec<(&str, Vec<u8>)> = ids
            .iter()
            .zip(1..)
            .map(|(id, seq)| (*id, location(seq)))
            .collect();
        index
            .add(entries.iter().map(|(id, at)| (*id, at.as_slice())), || {
                Ok(())
            })
            .expect("added");
        assert_eq!(index.tree.len(), 3, "one record per bucket");
        for (id, at) in &entries {
            assert_eq!(index.get(id).expect("read").as_ref(), Some(at));
        }
        assert_eq!(
            index.get("0190a8b4-1c2d-7000-8000-000000000009").unwrap(),
            None
        );
        index.remove([ids[0], ids[3]], || Ok(())).expect("removed");
        assert_eq!(index.get(ids[0]).unwrap(), None);
        assert_eq!(index.get(ids[3]).unwrap(), None);
        assert_eq!(index.get(ids[1]).unwrap(), Some(location(2)));
        assert_eq!(index.len(), 2);
        assert_eq!(index.tree.len(), 2, "the emptied bucket went");
    }

    #[test]
    fn an_index_of_the_earlier_layout_is_folded_into_buckets_on_open() {
        let (_dir, db) = temporary();
        let old = db.open_tree(UNBUCKETED_TREE).expect("old tree");
        let ids = ["0190a8b4-1c2d-7000-8000-00000000000a", "legacy-id"];
        for (seq, id) in (1..).zip(ids) {
            old.insert(id, keys::message_id_value("c", seq, seq))
                .unwrap();
        }
        drop(old);
        let index = IdIndex::open(&db).expect("open");
        assert!(!db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == UNBUCKETED_TREE.as_bytes()));
        for (seq, id) in (1..).zip(ids) {
            assert_eq!(
                index.get(id).unwrap(),
                Some(keys::message_id_value("c", seq, seq))
            );
        }
    }

    #[test]
    fn a_malformed_bucket_is_corrupt_not_a_panic() {
        for raw in [
            &b"\x00"[..],
            b"\x00\x00\x00\x05ab",
            b"\x00\x00\x00\x01a\x00\x00\x00\x09b",
            b"\xff\xff\xff\xffa",
        ] {
            assert!(decode_bucket(b"k", raw).is_err(), "{raw:?}");
        }
        let mut entries = Entries::new();
        entries.insert(b"id".to_vec(), b"where".to_vec());
        // An id no edge makes, from a record written into the log by other means.
        entries.insert(vec![b'x'; 70_000], b"there".to_vec());
        assert_eq!(
            decode_bucket(b"k", &encode_bucket(&entries)).unwrap(),
            entries
        );
    }

    #[test]
    fn pending_entries_go_once_written_or_with_their_conversation() {
        let mut pending = PendingIds::default();
        pending.put("a".into(), keys::message_id_value("c", 1, 1));
        pending.put("b".into(), keys::message_id_value("d", 1, 2));
        let taken = pending.take_for_writing();
        assert_eq!(taken.len(), 2);
        assert!(
            pending.get("a").is_some(),
            "found while it is being written"
        );
        pending.put("e".into(), keys::message_id_value("c", 2, 3));
        pending.written(true);
        assert!(pending.get("a").is_none() && pending.get("b").is_none());
        assert!(pending.get("e").is_some());
        pending.remove_conversation("c");
        assert!(pending.get("e").is_none());
        assert_eq!(pending.bytes(), 0);
    }

    #[test]
    fn entries_whose_write_failed_are_pending_again() {
        let mut pending = PendingIds::default();
        pending.put("a".into(), keys::message_id_value("c", 1, 1));
        let before = pending.bytes();
        let _taken = pending.take_for_writing();
        assert_eq!(pending.bytes(), before, "counted while being written");
        pending.put("b".into(), keys::message_id_value("c", 2, 2));
        pending.written(false);
        assert_eq!(
            pending.get("a"),
            Some(&keys::message_id_value("c", 1, 1)[..])
        );
        assert!(pending.get("b").is_some());
        pending.remove_conversation("c");
        assert_eq!(pending.bytes(), 0);
    }
}
