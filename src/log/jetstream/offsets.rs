//! Committed group offsets on the cluster: one key per (group, topic, partition) in the
//! replicated offsets bucket, value `{offset, metadata}`.
//!
//! Commits only move forward: a commit reads the key and writes it with a compare-and-set on the
//! revision it read, retrying when another node committed in between, so racing commits on
//! different nodes cannot regress either. Kafka-style commits and resets write any offset in
//! range. Every call is a request to the cluster (these are async; `backend` makes the
//! boundary's synchronous calls wait on them).

use std::collections::BTreeSet;

use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::{names, unavailable, Inner};
use crate::log::groups::reset_target;
use crate::log::{validate_group_name, LogError, PartitionLag, ResetPlan, ResetTo, Result};

/// The header a KV bucket's message names its operation in (absent on a put).
const KV_OPERATION: &str = "KV-Operation";

/// Most compare-and-set rounds a commit tries before it reports the contention.
const MAX_CAS_ROUNDS: u32 = 16;

#[derive(Debug, Serialize, Deserialize)]
struct Committed {
    offset: u64,
    #[serde(default)]
    metadata: String,
}

/// How a commit treats the offset there now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ForwardOnly,
    Anywhere,
}

impl Inner {
    pub(super) async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<()> {
        self.store_offset(group, topic, partition, offset, "", Direction::ForwardOnly)
            .await
    }

    pub(super) async fn commit_offset_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
        metadata: &str,
    ) -> Result<()> {
        self.store_offset(
            group,
            topic,
            partition,
            offset,
            metadata,
            Direction::Anywhere,
        )
        .await
    }

    pub(super) async fn committed_offset_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(u64, String)>> {
        validate_group_name(group)?;
        self.replica(topic, partition)?;
        let key = names::offset_key(group, topic, partition);
        Ok(self
            .read_offset(&key)
            .await?
            .0
            .map(|committed| (committed.offset, committed.metadata)))
    }

    pub(super) async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        plan: &ResetPlan,
    ) -> Result<Vec<(u32, u64)>> {
        validate_group_name(group)?;
        let state = self.topic(topic)?;
        let partitions: Vec<u32> = if plan.partitions.is_empty() {
            (0..state.replicas.len() as u32).collect()
        } else {
            plan.partitions.clone()
        };
        let mut moved = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let replica = self.replica(topic, partition)?;
            let committed = self
                .committed_offset_with_metadata(group, topic, partition)
                .await?
                .map(|(offset, _)| offset);
            let at_time = match plan.to {
                ResetTo::Timestamp(ms) => Some(self.offset_for_time(&replica, ms).await),
                _ => None,
            };
            let target = reset_target(plan.to, replica.watermarks(), committed, |_| {
                at_time.expect("computed above for a reset to a time")
            })?;
            if !plan.dry_run {
                self.store_offset(group, topic, partition, target, "", Direction::Anywhere)
                    .await?;
            }
            moved.push((partition, target));
        }
        Ok(moved)
    }

    pub(super) async fn group_lag(&self, group: &str, topic: &str) -> Result<Vec<PartitionLag>> {
        validate_group_name(group)?;
        let state = self.topic(topic)?;
        let mut lags = Vec::with_capacity(state.replicas.len());
        for (partition, replica) in state.replicas.iter().enumerate() {
            let partition = partition as u32;
            let key = names::offset_key(group, topic, partition);
            let committed = self.read_offset(&key).await?.0.map(|c| c.offset);
            let (low, high) = replica.watermarks();
            let from = committed.unwrap_or(low).max(low);
            lags.push(PartitionLag {
                partition,
                committed,
                low,
                high,
                lag: high.saturating_sub(from),
            });
        }
        Ok(lags)
    }

    pub(super) async fn group_names(&self) -> Result<Vec<String>> {
        let keys = self.offset_keys().await?;
        let groups: BTreeSet<String> = keys.into_iter().map(|(group, _, _)| group).collect();
        Ok(groups.into_iter().collect())
    }

    pub(super) async fn group_topics(&self, group: &str) -> Result<Vec<String>> {
        validate_group_name(group)?;
        let keys = self.offset_keys().await?;
        let topics: BTreeSet<String> = keys
            .into_iter()
            .filter(|(g, _, _)| g == group)
            .map(|(_, topic, _)| topic)
            .collect();
        Ok(topics.into_iter().collect())
    }

    /// Removes every group's offsets on a deleted topic.
    pub(super) async fn delete_group_offsets_of(&self, topic: &str) -> Result<()> {
        for (group, t, partition) in self.offset_keys().await? {
            if t == topic {
                let key = names::offset_key(&group, &t, partition);
                self.offsets_kv
                    .purge(&key)
                    .await
                    .map_err(|e| unavailable("removing a deleted topic's offsets", e))?;
            }
        }
        Ok(())
    }

    async fn store_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
        metadata: &str,
        direction: Direction,
    ) -> Result<()> {
        self.check_open()?;
        validate_group_name(group)?;
        let within = self.config.request_timeout;
        let replica = self.replica(topic, partition)?;
        let (low, high) = replica.watermarks_reaching(offset, within).await;
        if offset > high {
            return Err(LogError::OffsetOutOfRange {
                topic: topic.into(),
                partition,
                offset,
                earliest: low,
                latest: high,
            });
        }
        let key = names::offset_key(group, topic, partition);
        let value = serde_json::to_vec(&Committed {
            offset,
            metadata: metadata.to_owned(),
        })
        .expect("an offset serializes");
        for _ in 0..MAX_CAS_ROUNDS {
            let (current, revision) = self.read_offset(&key).await?;
            if let Some(current) = current.filter(|_| direction == Direction::ForwardOnly) {
                if current.offset > offset {
                    return Err(LogError::CommitRegression {
                        group: group.into(),
                        topic: topic.into(),
                        partition,
                        offset,
                        committed: current.offset,
                    });
                }
            }
            let written = match revision {
                Some(revision) => self
                    .offsets_kv
                    .update(&key, value.clone().into(), revision)
                    .await
                    .map_err(|e| {
                        (
                            e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                            e.to_string(),
                        )
                    }),
                None => self
                    .offsets_kv
                    .create(&key, value.clone().into())
                    .await
                    .map_err(|e| {
                        (
                            e.kind() == kv::CreateErrorKind::AlreadyExists,
                            e.to_string(),
                        )
                    }),
            };
            match written {
                Ok(_) => return Ok(()),
                Err((true, _)) => continue,
                Err((false, error)) => return Err(unavailable("committing an offset", error)),
            }
        }
        Err(LogError::Unavailable(format!(
            "commit on {key} kept racing other commits"
        )))
    }

    /// The committed value of a key (none if never committed or removed) and the revision to
    /// compare-and-set against (none if the key never existed). Read from the bucket stream's
    /// leader, not with a direct get (`Store::entry`): a direct get may be answered by a
    /// replica that has not applied the last write yet, and a commit acknowledged a moment ago
    /// must read back as written (the conformance suite caught one read as the value before).
    async fn read_offset(&self, key: &str) -> Result<(Option<Committed>, Option<u64>)> {
        let subject = format!("{}{key}", self.offsets_kv.prefix);
        let stream = &self.offsets_kv.stream;
        let message = match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => message,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                return Ok((None, None))
            }
            Err(e) => return Err(unavailable("reading a committed offset", e)),
        };
        let operation = message
            .headers
            .get(KV_OPERATION)
            .map_or(Ok(Operation::Put), |op| op.as_str().parse::<Operation>());
        if !matches!(operation, Ok(Operation::Put)) {
            return Ok((None, Some(message.sequence)));
        }
        let committed =
            serde_json::from_slice(&message.payload).map_err(|e| LogError::Corrupt {
                location: format!("offset {key}"),
                reason: e.to_string(),
            })?;
        Ok((Some(committed), Some(message.sequence)))
    }

    async fn offset_keys(&self) -> Result<Vec<(String, String, u32)>> {
        let keys: Vec<String> = self
            .offsets_kv
            .keys()
            .await
            .map_err(|e| unavailable("listing committed offsets", e))?
            .try_collect()
            .await
            .map_err(|e| unavailable("listing committed offsets", e))?;
        Ok(keys
            .iter()
            .filter_map(|key| names::parse_offset_key(key))
            .collect())
    }
}
