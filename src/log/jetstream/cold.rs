//! Reads below a replica's cached tail, answered from the partition's stream on the cluster: a
//! batch of records from an offset (one short-lived consumer, one fetch), and the offset of a
//! time (a binary search of single messages).
//!
//! Records come out exactly as the tail would have held them: the same wire decoding, offsets
//! from the stream sequence, and timestamps kept non-decreasing from the read's start. A read
//! that continues where an earlier one stopped starts from the timestamp that one reached (the
//! replica remembers it), so a reader going through the partition in order sees the same
//! timestamps as a node that held it all. A failure of the cluster is `Unavailable`.
//!
//! It owns no state: what the tail holds and where it starts is the replica's.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures_util::StreamExt;

use super::replica::{Lookup, Replica};
use super::wire::WireRecord;
use super::{unavailable, Inner};
use crate::log::{LogError, ReadLimits, Result, StoredRecord};

/// How long the server keeps a read's consumer if this node could not delete it.
const CONSUMER_IDLE: Duration = Duration::from_secs(10);

/// Pause before a pull that found the read's new consumer not ready is sent again (the whole
/// read is bounded by the request timeout).
const NOT_READY_PAUSE: Duration = Duration::from_millis(20);

/// Why a fetch brought no records.
enum BatchError {
    /// The consumer did not answer yet ("no responders").
    NotReady,
    Failed(LogError),
}

/// Room for the subject and headers JetStream counts in a fetch's byte limit.
const FETCH_OVERHEAD_BYTES: usize = 64 * 1024;

impl Inner {
    /// Records from `from` on, below `until` (where the replica's tail starts), within
    /// `limits`: at least one when `from` is still retained.
    pub(super) async fn read_below_tail(
        &self,
        replica: &Replica,
        from: u64,
        until: u64,
        limits: ReadLimits,
    ) -> Result<Vec<StoredRecord>> {
        let what = || format!("reading stream {} from offset {from}", replica.stream());
        let mut records = self
            .in_time(what, self.fetch(replica, (from, until), limits))
            .await?;
        if records.last().is_some_and(|last| last.offset + 1 == until) {
            records.extend(continue_in_tail(replica, until, limits, &records));
        }
        Ok(records)
    }

    /// `request`, or `Unavailable` once the request timeout passed.
    async fn in_time<T>(
        &self,
        what: impl FnOnce() -> String,
        request: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.config.request_timeout, request).await {
            Ok(answer) => answer,
            Err(_) => Err(LogError::Unavailable(format!(
                "{}: no answer in time",
                what()
            ))),
        }
    }

    async fn fetch(
        &self,
        replica: &Replica,
        (from, until): (u64, u64),
        limits: ReadLimits,
    ) -> Result<Vec<StoredRecord>> {
        let config = pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from + 1,
            },
            ack_policy: AckPolicy::None,
            inactive_threshold: CONSUMER_IDLE,
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        };
        let failed = |e: &dyn std::fmt::Display| {
            unavailable(format!("reading stream {}", replica.stream()), e)
        };
        let consumer = self
            .js
            .create_consumer_on_stream(config, replica.stream())
            .await
            .map_err(|e| failed(&e))?;
        let wanted = usize::try_from(until - from)
            .unwrap_or(usize::MAX)
            .clamp(1, limits.max_records.max(1));
        let max_bytes = limits.max_bytes.max(self.config.max_record_bytes) + FETCH_OVERHEAD_BYTES;
        let records = loop {
            let batch = consumer
                .fetch()
                .max_messages(wanted)
                .max_bytes(max_bytes)
                .messages()
                .await;
            let collected = match batch {
                Ok(batch) => collect(replica, batch, from, until, limits).await,
                Err(e) => Err(BatchError::Failed(failed(&e))),
            };
            match collected {
                // A consumer just created may not answer its first pull yet.
                Err(BatchError::NotReady) => tokio::time::sleep(NOT_READY_PAUSE).await,
                Err(BatchError::Failed(e)) => break Err(e),
                Ok(records) => break Ok(records),
            }
        };
        self.forget_consumer(replica.stream(), consumer.cached_info().name.clone());
        let records = records?;
        match records.first() {
            Some(first) if first.offset == from => Ok(records),
            // Retention deleted `from` since the replica last looked.
            first => {
                let earliest = first.map_or(until, |record| record.offset);
                Err(replica.out_of_range(from, earliest, replica.watermarks().1))
            }
        }
    }

    /// Deletes a read's consumer without waiting (the server drops it after [`CONSUMER_IDLE`]
    /// anyway).
    fn forget_consumer(&self, stream: &str, name: String) {
        let js = self.js.clone();
        let stream = stream.to_owned();
        tokio::spawn(async move {
            if let Err(error) = js.delete_consumer_from_stream(&name, &stream).await {
                tracing::debug!(stream, %error, "a read's consumer is left to expire");
            }
        });
    }

    /// The first offset whose record was stored at or after `timestamp_ms`, from the replica's
    /// tail or else from the stream.
    pub(super) async fn offset_for_time(
        &self,
        replica: &Replica,
        timestamp_ms: i64,
    ) -> Result<u64> {
        match replica.offset_for_time(timestamp_ms) {
            Lookup::Here(offset) => Ok(offset),
            Lookup::Below { from, until } => {
                self.offset_for_time_below_tail(replica, (from, until), timestamp_ms)
                    .await
            }
        }
    }

    /// The first offset in `from..until` whose record was stored at or after `timestamp_ms`,
    /// else `until`: a binary search of single messages (their timestamps are the appending
    /// nodes' clocks, non-decreasing but for the skew between nodes).
    pub(super) async fn offset_for_time_below_tail(
        &self,
        replica: &Replica,
        (from, until): (u64, u64),
        timestamp_ms: i64,
    ) -> Result<u64> {
        let search = async {
            let stream = self
                .js
                .get_stream_no_info(replica.stream())
                .await
                .map_err(|e| unavailable(format!("stream {}", replica.stream()), e))?;
            let (mut low, mut high) = (from, until);
            while low < high {
                let middle = low + (high - low) / 2;
                let message = stream
                    .get_raw_message(middle + 1)
                    .await
                    .map_err(|e| unavailable(format!("stream {}", replica.stream()), e))?;
                let stored = WireRecord::decode(&message.payload, String::new)
                    .map_or(i64::MIN, |wire| wire.timestamp_ms);
                if stored < timestamp_ms {
                    low = middle + 1;
                } else {
                    high = middle;
                }
            }
            Ok(low)
        };
        let what = || format!("searching stream {} by time", replica.stream());
        self.in_time(what, search).await
    }
}

/// What the replica's tail adds, from `until` on, to `read` (records from the stream that end
/// where the tail starts) within what `limits` leave; nothing if the tail moved on meanwhile.
fn continue_in_tail(
    replica: &Replica,
    until: u64,
    limits: ReadLimits,
    read: &[StoredRecord],
) -> Vec<StoredRecord> {
    let bytes: usize = read.iter().map(StoredRecord::size).sum();
    let left = ReadLimits {
        max_records: limits.max_records.saturating_sub(read.len()),
        max_bytes: limits.max_bytes.saturating_sub(bytes),
    };
    if left.max_records == 0 {
        return Vec::new();
    }
    let mut tail = match replica.read(until, left) {
        Ok(Lookup::Here(tail)) => tail,
        _ => return Vec::new(),
    };
    // The tail gives at least one record, even one beyond the bytes left.
    if tail
        .first()
        .is_some_and(|first| first.size() > left.max_bytes)
    {
        tail.clear();
    }
    tail
}

/// Decodes the fetched messages below `until` into records within `limits`, with
/// non-decreasing timestamps from where an earlier read stopped.
async fn collect(
    replica: &Replica,
    mut batch: pull::Batch,
    from: u64,
    until: u64,
    limits: ReadLimits,
) -> std::result::Result<Vec<StoredRecord>, BatchError> {
    let failed = |e: &dyn std::fmt::Display| {
        BatchError::Failed(unavailable(
            format!("reading stream {}", replica.stream()),
            e,
        ))
    };
    let mut floor = replica.floor_at(from);
    let mut bytes = 0;
    let mut out: Vec<StoredRecord> = Vec::new();
    while let Some(message) = batch.next().await {
        let message = match message {
            Ok(message) => message,
            Err(e) if out.is_empty() && e.to_string().contains(": 503") => {
                return Err(BatchError::NotReady)
            }
            Err(e) => return Err(failed(&e)),
        };
        let sequence = message.info().map_err(|e| failed(&e))?.stream_sequence;
        let offset = sequence - 1;
        if offset >= until {
            break;
        }
        let wire = WireRecord::decode(&message.payload, || {
            format!("{} sequence {sequence}", replica.stream())
        })
        .unwrap_or_else(|error| {
            tracing::error!(%error, "undecodable record in a partition's stream");
            WireRecord::undecodable()
        });
        let timestamp_ms = wire.timestamp_ms.max(floor);
        let record = wire.into_stored(replica.partition(), offset, timestamp_ms);
        if out.len() >= limits.max_records
            || (!out.is_empty() && bytes + record.size() > limits.max_bytes)
        {
            break;
        }
        floor = timestamp_ms;
        bytes += record.size();
        out.push(record);
    }
    if let Some(last) = out.last() {
        replica.remember_floor(last.offset + 1, last.timestamp_ms);
    }
    Ok(out)
}
