//! Consumer groups: committed offsets per (group, topic, partition).
//!
//! A committed offset is the next offset the group will read, as in Kafka. Commits only move
//! forward (a regression is refused with `CommitRegression`, with a compare-and-swap so racing
//! commits cannot regress either); a reset moves them anywhere in the retained range. The tree
//! is the log's own: no other component writes to it (the chat store keeps its applied position
//! in its own database and commits here through [`Log::commit_offset`](super::Log::commit_offset)).
//!
//! Key layout: `group / topic / partition (u32 BE)`; value: offset (u64 BE), followed by the
//! commit's metadata string (UTF-8) when a Kafka client committed one (values written before
//! that are the 8 bytes alone, and read as metadata ""). `/` cannot occur in names, so a
//! group's keys are one prefix.

use super::error::{LogError, Result};
use super::names::validate_group_name;
use super::topics::partition_key;

/// Where a reset moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The first retained offset.
    Earliest,
    /// The high watermark: only records appended from now on.
    Latest,
    /// A given offset (clamped into the retained range).
    Offset(u64),
    /// The first record appended at or after this time (milliseconds since the epoch).
    Timestamp(i64),
    /// The committed offset (the first retained one if none) moved by this many records,
    /// backwards when negative; clamped into the retained range.
    ShiftBy(i64),
}

/// A reset: where to, on which partitions, and whether to write it or only say what it would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetPlan {
    /// Where the offsets go.
    pub to: ResetTo,
    /// The partitions to move; empty means every partition of the topic.
    pub partitions: Vec<u32>,
    /// Compute the new offsets without committing them.
    pub dry_run: bool,
}

impl ResetPlan {
    /// Every partition, committed.
    pub fn all(to: ResetTo) -> ResetPlan {
        ResetPlan {
            to,
            partitions: Vec::new(),
            dry_run: false,
        }
    }
}

/// The offset `to` means on a partition with retained range `low..=high` and the group's
/// `committed` offset; `at_time` finds the offset of a time (only asked for `Timestamp`).
pub(crate) fn reset_target(
    to: ResetTo,
    (low, high): (u64, u64),
    committed: Option<u64>,
    at_time: impl FnOnce(i64) -> Result<u64>,
) -> Result<u64> {
    Ok(match to {
        ResetTo::Earliest => low,
        ResetTo::Latest => high,
        ResetTo::Offset(offset) => offset.clamp(low, high),
        ResetTo::Timestamp(ms) => at_time(ms)?,
        ResetTo::ShiftBy(delta) => {
            let from = committed.unwrap_or(low).clamp(low, high);
            from.saturating_add_signed(delta).clamp(low, high)
        }
    })
}

/// A group's position on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    /// Partition.
    pub partition: u32,
    /// Committed offset (next to read), if the group committed one.
    pub committed: Option<u64>,
    /// First retained offset.
    pub low: u64,
    /// High watermark.
    pub high: u64,
    /// Records the group has yet to read (from its committed offset, or from `low` if none).
    pub lag: u64,
}

fn offset_key(group: &str, topic: &str, partition: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(group.len() + topic.len() + 6);
    key.extend_from_slice(group.as_bytes());
    key.push(b'/');
    key.extend_from_slice(&partition_key(topic, partition));
    key
}

fn decode_offset(raw: &[u8]) -> Result<u64> {
    raw.get(..8)
        .and_then(|head| <[u8; 8]>::try_from(head).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| LogError::Corrupt {
            location: "the offsets tree".into(),
            reason: format!("offset value of {} bytes", raw.len()),
        })
}

pub(crate) struct Groups {
    tree: sled::Tree,
}

impl Groups {
    pub(crate) fn open(db: &sled::Db) -> Result<Groups> {
        Ok(Groups {
            tree: db.open_tree("offsets")?,
        })
    }

    pub(crate) fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>> {
        validate_group_name(group)?;
        self.tree
            .get(offset_key(group, topic, partition))?
            .map(|v| decode_offset(&v))
            .transpose()
    }

    /// Moves the committed offset forward (compare-and-swap, so racing commits cannot regress).
    pub(crate) fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<()> {
        commit_forward(&self.tree, group, topic, partition, offset)
    }

    /// Sets the committed offset unconditionally.
    pub(crate) fn set(&self, group: &str, topic: &str, partition: u32, offset: u64) -> Result<()> {
        validate_group_name(group)?;
        self.tree
            .insert(offset_key(group, topic, partition), &offset.to_be_bytes())?;
        Ok(())
    }

    /// Sets the committed offset and its metadata as a Kafka client commits them: to any offset
    /// (a consumer that seeked back commits below the last one), with the metadata after the
    /// offset's 8 bytes.
    pub(crate) fn set_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
        metadata: &str,
    ) -> Result<()> {
        validate_group_name(group)?;
        commit_fault()?;
        let mut value = offset.to_be_bytes().to_vec();
        value.extend_from_slice(metadata.as_bytes());
        self.tree
            .insert(offset_key(group, topic, partition), value)?;
        Ok(())
    }

    /// The committed offset and its metadata ("" when none was committed with it).
    pub(crate) fn committed_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(u64, String)>> {
        validate_group_name(group)?;
        self.tree
            .get(offset_key(group, topic, partition))?
            .map(|v| {
                let metadata = String::from_utf8_lossy(v.get(8..).unwrap_or_default());
                Ok((decode_offset(&v)?, metadata.into_owned()))
            })
            .transpose()
    }

    /// Every group with at least one committed offset, sorted by name.
    pub(crate) fn list(&self) -> Result<Vec<String>> {
        // Keys sort as `group/…`, and `-` or `.` sort before `/`: collect, then order by name.
        let mut groups = std::collections::BTreeSet::new();
        for item in self.tree.iter() {
            let (key, _) = item?;
            let name = key.split(|b| *b == b'/').next().unwrap_or_default();
            groups.insert(String::from_utf8_lossy(name).into_owned());
        }
        Ok(groups.into_iter().collect())
    }

    /// Topics a group has committed offsets for, sorted.
    pub(crate) fn topics_of(&self, group: &str) -> Result<Vec<String>> {
        validate_group_name(group)?;
        let mut prefix = group.as_bytes().to_vec();
        prefix.push(b'/');
        let mut topics: Vec<String> = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (key, _) = item?;
            let rest = &key[prefix.len()..];
            let topic = String::from_utf8_lossy(&rest[..rest.len().saturating_sub(5)]).into_owned();
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        topics.sort();
        Ok(topics)
    }

    /// Forgets every group's offsets on a deleted topic.
    pub(crate) fn forget_topic(&self, topic: &str) -> Result<()> {
        for group in self.list()? {
            let mut prefix = group.as_bytes().to_vec();
            prefix.push(b'/');
            prefix.extend_from_slice(topic.as_bytes());
            prefix.push(b'/');
            for item in self.tree.scan_prefix(&prefix) {
                let (key, _) = item?;
                if key.len() == prefix.len() + 4 {
                    self.tree.remove(key)?;
                }
            }
        }
        Ok(())
    }
}

/// Moves a group's committed offset forward with a compare-and-swap: a regression is refused
/// with `CommitRegression`, racing commits cannot regress. The caller checks the high watermark.
fn commit_forward(
    tree: &sled::Tree,
    group: &str,
    topic: &str,
    partition: u32,
    offset: u64,
) -> Result<()> {
    validate_group_name(group)?;
    commit_fault()?;
    let key = offset_key(group, topic, partition);
    let mut current = tree.get(&key)?;
    loop {
        if let Some(raw) = &current {
            refuse_regression(raw, group, topic, partition, offset)?;
        }
        match tree.compare_and_swap(&key, current.clone(), Some(&offset.to_be_bytes()))? {
            Ok(()) => return Ok(()),
            Err(conflict) => current = conflict.current,
        }
    }
}

/// Failpoint `log::offsets::commit`: the write of a committed offset fails (`return`: `EIO`,
/// `return(enospc)`: no space).
fn commit_fault() -> Result<()> {
    fail::fail_point!("log::offsets::commit", |arg| Err(sled::Error::Io(
        super::error::injected_io_error(arg)
    )
    .into()));
    Ok(())
}

/// `CommitRegression` if `offset` is below the committed value `raw`.
fn refuse_regression(
    raw: &[u8],
    group: &str,
    topic: &str,
    partition: u32,
    offset: u64,
) -> Result<()> {
    let committed = decode_offset(raw)?;
    if offset < committed {
        return Err(LogError::CommitRegression {
            group: group.into(),
            topic: topic.into(),
            partition,
            offset,
            committed,
        });
    }
    Ok(())
}

#[cfg(test)]
mod reset_tests {
    use super::*;

    fn target(to: ResetTo, committed: Option<u64>) -> u64 {
        reset_target(to, (10, 20), committed, |_| Ok(15)).expect("no time lookup fails here")
    }

    /// Every kind of reset lands inside the retained range 10..=20.
    #[test]
    fn resets_land_in_the_retained_range() {
        assert_eq!(target(ResetTo::Earliest, Some(14)), 10);
        assert_eq!(target(ResetTo::Latest, None), 20);
        assert_eq!(target(ResetTo::Offset(3), None), 10);
        assert_eq!(target(ResetTo::Offset(99), None), 20);
        assert_eq!(target(ResetTo::Timestamp(0), None), 15);
        assert_eq!(target(ResetTo::ShiftBy(-2), Some(14)), 12);
        assert_eq!(target(ResetTo::ShiftBy(3), Some(14)), 17);
        assert_eq!(target(ResetTo::ShiftBy(-50), Some(14)), 10);
        assert_eq!(target(ResetTo::ShiftBy(50), Some(14)), 20);
        assert_eq!(target(ResetTo::ShiftBy(2), None), 12);
        assert_eq!(target(ResetTo::ShiftBy(i64::MIN), Some(3)), 10);
        assert_eq!(target(ResetTo::ShiftBy(i64::MAX), Some(u64::MAX)), 20);
    }
}

#[cfg(test)]
mod decode_tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The first 8 bytes are the offset (metadata may follow); fewer is a typed corrupt
        /// error, never a panic.
        #[test]
        fn offsets_decode_from_the_first_eight_bytes(raw in proptest::collection::vec(any::<u8>(), 0..20)) {
            match decode_offset(&raw) {
                Ok(offset) => {
                    prop_assert!(raw.len() >= 8);
                    prop_assert_eq!(offset.to_be_bytes().to_vec(), raw[..8].to_vec());
                }
                Err(error) => {
                    prop_assert!(raw.len() < 8);
                    prop_assert!(matches!(error, LogError::Corrupt { .. }), "{}", error);
                }
            }
        }

        /// A regression check on a corrupt committed value is an error, not a panic or a pass.
        #[test]
        fn regression_checks_refuse_corrupt_committed_values(
            raw in proptest::collection::vec(any::<u8>(), 0..7),
            offset in any::<u64>(),
        ) {
            prop_assert!(refuse_regression(&raw, "g", "t", 0, offset).is_err());
        }
    }
}
