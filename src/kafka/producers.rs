//! Idempotent producers: InitProducerId hands out producer ids, and each (producer, topic,
//! partition) keeps its epoch and the sequence ranges and first offsets of its last five
//! batches, so that a batch sent again (a retry after a lost answer) is answered with the
//! offsets it got the first time instead of being appended twice, and a batch that skips
//! sequences is refused with `OUT_OF_ORDER_SEQUENCE_NUMBER`.
//!
//! The ranges live in memory. Producer ids are the allocation time in milliseconds times 1024
//! plus a counter, so a restarted server never hands out an id it gave before without
//! persisting anything; after a restart the first batch of a known producer is taken as it
//! comes (its earlier ranges are gone). Transactions are refused: a `transactional_id` gets
//! `TRANSACTIONAL_ID_AUTHORIZATION_FAILED`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use super::records::ProducerInfo;

/// Batches remembered per (producer, partition), as Kafka does.
const REMEMBERED_BATCHES: usize = 5;

/// One remembered batch: its first and last sequence and the offset of its first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SentBatch {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: u64,
}

/// What the sequence check says about a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// New and in order: append it, then [`Sequences::record`] it.
    Append,
    /// Sent before: answer this first offset, append nothing.
    Duplicate(u64),
    /// Refused with this error.
    Refuse(ResponseError),
}

/// The sequences of one producer on one partition.
#[derive(Debug, Default)]
pub(super) struct Sequences {
    epoch: i16,
    batches: VecDeque<SentBatch>,
}

impl Sequences {
    /// Whether `batch` is new and in order, a duplicate, or refused.
    pub(super) fn check(&self, batch: &ProducerInfo) -> Verdict {
        if self.batches.is_empty() || batch.producer_epoch > self.epoch {
            // Unknown here (first batch, or state lost in a restart) or a new epoch: the
            // sequence starts where the producer says.
            return Verdict::Append;
        }
        if batch.producer_epoch < self.epoch {
            return Verdict::Refuse(ResponseError::InvalidProducerEpoch);
        }
        let last_sequence = last_sequence_of(batch);
        if let Some(sent) = self
            .batches
            .iter()
            .find(|b| b.first_sequence == batch.base_sequence && b.last_sequence == last_sequence)
        {
            return Verdict::Duplicate(sent.base_offset);
        }
        let expected = self
            .batches
            .back()
            .map_or(0, |b| b.last_sequence.wrapping_add(1));
        if batch.base_sequence == expected {
            Verdict::Append
        } else {
            Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
        }
    }

    /// Remembers an appended batch (the last five are kept).
    pub(super) fn record(&mut self, batch: &ProducerInfo, base_offset: u64) {
        if batch.producer_epoch != self.epoch {
            self.epoch = batch.producer_epoch;
            self.batches.clear();
        }
        self.batches.push_back(SentBatch {
            first_sequence: batch.base_sequence,
            last_sequence: last_sequence_of(batch),
            base_offset,
        });
        while self.batches.len() > REMEMBERED_BATCHES {
            self.batches.pop_front();
        }
    }
}

fn last_sequence_of(batch: &ProducerInfo) -> i32 {
    batch
        .base_sequence
        .wrapping_add(batch.record_count.saturating_sub(1))
}

/// (producer id, topic, partition).
type SequenceKey = (i64, String, u32);

/// Every idempotent producer's sequences, one async lock per (producer, partition) so that a
/// check and its append are one step while other partitions go on.
#[derive(Debug)]
pub(super) struct Producers {
    next_id: AtomicI64,
    sequences: Mutex<HashMap<SequenceKey, Arc<tokio::sync::Mutex<Sequences>>>>,
}

impl Producers {
    pub(super) fn new() -> Producers {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
        Producers {
            next_id: AtomicI64::new(now_ms.saturating_mul(1024)),
            sequences: Mutex::new(HashMap::new()),
        }
    }

    /// The lock of one producer's sequences on one partition.
    pub(super) fn sequences(
        &self,
        producer_id: i64,
        topic: &str,
        partition: u32,
    ) -> Arc<tokio::sync::Mutex<Sequences>> {
        let key = (producer_id, topic.to_owned(), partition);
        Arc::clone(self.sequences.lock().entry(key).or_default())
    }

    /// InitProducerId: a new id at epoch 0, or (KIP-360) the same id at the next epoch.
    pub(super) fn init(&self, request: &InitProducerIdRequest) -> InitProducerIdResponse {
        // Clients without transactions send null; an empty id means none too.
        if request
            .transactional_id
            .as_ref()
            .is_some_and(|id| !id.0.is_empty())
        {
            return InitProducerIdResponse::default()
                .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
        }
        let (id, epoch) = if request.producer_id.0 >= 0 && request.producer_epoch >= 0 {
            (
                request.producer_id.0,
                request.producer_epoch.saturating_add(1),
            )
        } else {
            (self.next_id.fetch_add(1, Ordering::Relaxed), 0)
        };
        InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(epoch: i16, base_sequence: i32, count: i32) -> ProducerInfo {
        ProducerInfo {
            producer_id: 7,
            producer_epoch: epoch,
            base_sequence,
            record_count: count,
        }
    }

    #[test]
    fn a_resent_batch_is_answered_with_its_first_offset() {
        let mut seq = Sequences::default();
        assert_eq!(seq.check(&batch(0, 0, 10)), Verdict::Append);
        seq.record(&batch(0, 0, 10), 100);
        assert_eq!(seq.check(&batch(0, 10, 5)), Verdict::Append);
        seq.record(&batch(0, 10, 5), 110);
        assert_eq!(seq.check(&batch(0, 0, 10)), Verdict::Duplicate(100));
        assert_eq!(seq.check(&batch(0, 10, 5)), Verdict::Duplicate(110));
    }

    #[test]
    fn a_gap_is_out_of_order_and_an_old_epoch_is_fenced() {
        let mut seq = Sequences::default();
        seq.record(&batch(1, 0, 10), 0);
        assert_eq!(
            seq.check(&batch(1, 11, 1)),
            Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            seq.check(&batch(0, 10, 1)),
            Verdict::Refuse(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(
            seq.check(&batch(2, 0, 1)),
            Verdict::Append,
            "a new epoch restarts"
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut seq = Sequences::default();
        for i in 0..6 {
            seq.record(&batch(0, i, 1), u64::try_from(i).expect("small"));
        }
        assert_eq!(
            seq.check(&batch(0, 0, 1)),
            Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber),
            "the first batch is forgotten"
        );
        assert_eq!(seq.check(&batch(0, 1, 1)), Verdict::Duplicate(1));
    }

    #[test]
    fn transactional_producers_are_refused() {
        let producers = Producers::new();
        let request = InitProducerIdRequest::default().with_transactional_id(Some(
            kafka_protocol::messages::TransactionalId(
                kafka_protocol::protocol::StrBytes::from_static_str("tx"),
            ),
        ));
        assert_eq!(
            producers.init(&request).error_code,
            ResponseError::TransactionalIdAuthorizationFailed.code()
        );
        let plain = InitProducerIdRequest::default()
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let first = producers.init(&plain);
        let second = producers.init(&plain);
        assert_ne!(first.producer_id, second.producer_id);
        assert_eq!(first.producer_epoch, 0);
    }
}
