//! Appending on the cluster: records published in order on the node's connection, acknowledged
//! once every PubAck is back (the stream's quorum stored them) and the node's replica has them.
//!
//! Owns the choice of partition (as the embedded log: the given one, else the key's hash, else
//! round-robin), `Nats-Msg-Id` for records carrying an idempotency key, and the mapping of
//! publish failures to errors. A record whose idempotency key another node's copy holds "in
//! process" is published again until that copy is stored, and then lands where it did. A failed or timed-out publish is never acknowledged; it may still
//! have been stored (the caller retries, and an idempotency key makes the retry harmless).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;

use super::topics::TopicState;
use super::wire::WireRecord;
use super::{names, unavailable, Inner, IDEMPOTENCY_HEADER};
use crate::log::stats::Counters;
use crate::log::{partition_for_key, Appended, LogError, Record, Result, TopicConfig};

/// How long an acknowledged record may take to reach this node's replica before the feed is
/// asked to check its consumer (normally it arrives within a millisecond or two).
const NUDGE_AFTER: Duration = Duration::from_millis(200);

impl Inner {
    pub(super) async fn append(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<Record>,
    ) -> Result<Vec<Appended>> {
        self.check_open()?;
        self.check_records(&records)?;
        let state = self.topic_for_append(topic).await?;
        let partitions = records
            .iter()
            .map(|record| self.partition_of(topic, &state, partition, record))
            .collect::<Result<Vec<u32>>>()?;
        let count = records.len() as u64;
        let bytes: usize = records.iter().map(Record::size).sum();
        let now = now_ms();
        let mut pending = Vec::with_capacity(records.len());
        for (record, partition) in records.into_iter().zip(partitions) {
            let subject =
                names::subject(&self.config.namespace, &state.meta.incarnation, partition);
            // Kept to publish again if another node's copy is still in flight (see `republish`).
            let again = idempotency_key(&record).map(|_| (subject.clone(), record.clone()));
            let ack = self
                .js
                .send_publish(subject, publication(record, now))
                .await
                .map_err(|e| self.publish_error(topic, &state, e))?;
            pending.push((partition, ack, again));
        }
        let mut appended = Vec::with_capacity(pending.len());
        for (partition, ack, again) in pending {
            let sequence = match (ack.await, again) {
                (Ok(ack), _) => ack.sequence,
                (Err(e), Some(again)) if is_duplicate_in_flight(&e) => self
                    .republish(again, now)
                    .await
                    .map_err(|e| self.publish_error(topic, &state, e))?,
                (Err(e), _) => return Err(self.publish_error(topic, &state, e)),
            };
            appended.push(Appended {
                partition,
                offset: sequence - 1,
            });
        }
        self.wait_until_replicated(&state, &appended).await?;
        Counters::add(&self.counters.append_requests, 1);
        Counters::add(&self.counters.records, count);
        Counters::add(&self.counters.bytes, bytes as u64);
        Ok(appended)
    }

    /// Publishes a record again whose idempotency key another node's copy holds "in process"
    /// (JetStream refuses the second copy until the first is stored): once the first is
    /// stored, the retry is acknowledged as a duplicate with the first copy's sequence, which
    /// is where the record is. Gives up after `request_timeout`.
    async fn republish(
        &self,
        (subject, record): (String, Record),
        now: i64,
    ) -> std::result::Result<u64, PublishError> {
        let deadline = tokio::time::Instant::now() + self.config.request_timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            tokio::time::sleep(pause).await;
            let publish = publication(record.clone(), now);
            let result = match self.js.send_publish(subject.clone(), publish).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match result {
                Ok(ack) => return Ok(ack.sequence),
                Err(e) if is_duplicate_in_flight(&e) && tokio::time::Instant::now() < deadline => {}
                Err(e) => return Err(e),
            }
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// "No responders" (the client's `StreamNotFound`) also means that no leader answers right
    /// now (an election, or no quorum): only a topic gone from the registry is `UnknownTopic`.
    fn publish_error(&self, topic: &str, state: &TopicState, error: PublishError) -> LogError {
        let gone = || {
            self.registry
                .get(topic)
                .is_none_or(|now| now.meta.incarnation != state.meta.incarnation)
        };
        match error.kind() {
            PublishErrorKind::StreamNotFound if gone() => LogError::UnknownTopic(topic.into()),
            PublishErrorKind::MaxAckPending => LogError::Overloaded,
            _ => unavailable(format!("appending to {topic}"), error),
        }
    }

    fn check_records(&self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Err(LogError::EmptyAppend);
        }
        let limit = self.config.max_record_bytes;
        match records.iter().find(|record| record.size() > limit) {
            Some(record) => Err(LogError::RecordTooLarge {
                size: record.size(),
                limit,
            }),
            None => Ok(()),
        }
    }

    /// The topic, created with the default partitions if it is unknown and auto-creation is on
    /// (by this node, or by another one racing it).
    async fn topic_for_append(&self, topic: &str) -> Result<Arc<TopicState>> {
        if let Some(state) = self.registry.get(topic) {
            return Ok(state);
        }
        if !self.config.auto_create_topics {
            return Err(LogError::UnknownTopic(topic.into()));
        }
        let config = TopicConfig::with_partitions(self.config.default_partitions);
        match self.create_topic(topic, config).await {
            Ok(_) | Err(LogError::TopicExists(_)) => self.wait_for_topic(topic).await,
            Err(e) => Err(e),
        }
    }

    fn partition_of(
        &self,
        topic: &str,
        state: &TopicState,
        partition: Option<u32>,
        record: &Record,
    ) -> Result<u32> {
        let partitions = state.replicas.len() as u32;
        match (partition, &record.key) {
            (Some(partition), _) if partition < partitions => Ok(partition),
            (Some(partition), _) => Err(LogError::UnknownPartition {
                topic: topic.into(),
                partition,
                partitions,
            }),
            (None, Some(key)) => Ok(partition_for_key(key, partitions)),
            (None, None) => Ok(self.round_robin.fetch_add(1, Ordering::Relaxed) % partitions),
        }
    }

    /// Read-your-writes: the append resolves once this node's replicas hold every record.
    async fn wait_until_replicated(&self, state: &TopicState, appended: &[Appended]) -> Result<()> {
        for landed in appended {
            let replica = &state.replicas[landed.partition as usize];
            let mut high = replica.subscribe();
            let replicated = tokio::time::timeout(self.config.request_timeout, async {
                let here = |high: &u64| *high > landed.offset;
                let soon = tokio::time::timeout(NUDGE_AFTER, high.wait_for(here))
                    .await
                    .is_ok();
                if !soon {
                    replica.nudge();
                }
                high.wait_for(here).await.map(|_| ())
            });
            let replicated = replicated.await;
            match replicated {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Err(LogError::Closed),
                Err(_) => {
                    return Err(LogError::Unavailable(format!(
                        "{landed:?} is stored on the cluster but did not reach this node in time"
                    )))
                }
            }
        }
        Ok(())
    }
}

/// JetStream's "duplicate message id is in process": a copy with the same `Nats-Msg-Id`
/// (another node's) is being stored right now.
const DUPLICATE_IN_PROCESS: u64 = 10158;

fn is_duplicate_in_flight(error: &PublishError) -> bool {
    super::api_error_code(error) == Some(DUPLICATE_IN_PROCESS)
}

fn idempotency_key(record: &Record) -> Option<String> {
    record
        .headers
        .iter()
        .find(|header| header.key == IDEMPOTENCY_HEADER)
        .map(|header| String::from_utf8_lossy(&header.value).into_owned())
}

/// The message for a record: its encoding, and its idempotency key as `Nats-Msg-Id`.
fn publication(record: Record, now_ms: i64) -> PublishMessage {
    let id = idempotency_key(&record);
    let payload = WireRecord::new(record, now_ms).encode();
    let publish = PublishMessage::build().payload(payload.into());
    match id {
        Some(id) => publish.message_id(id),
        None => publish,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}
