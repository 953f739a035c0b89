//! Idempotent producers: InitProducerId hands out producer ids, and each (producer, topic,
//! partition) keeps its epoch and the sequence ranges and first offsets of its last five
//! batches, so that a batch sent again (a retry after a lost answer) is answered with the
//! offsets it got the first time instead of being appended twice, and a batch that skips
//! sequences is refused with `OUT_OF_ORDER_SEQUENCE_NUMBER`.
//!
//! The ranges live in memory and in `producer_store` (`DATA_DIR/kafka/`): each appended batch
//! is written there and made durable before its answer leaves, and a (producer, partition)
//! first seen after a restart is loaded from it, so a batch retried across a restart is still
//! answered as a duplicate. Producer ids come from a durable counter and are never handed out
//! twice. Transactions are refused: a `transactional_id` gets
//! `TRANSACTIONAL_ID_AUTHORIZATION_FAILED`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use super::producer_store::{ProducerStore, ProducerStoreError, StoredBatch, ID_BLOCK};
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
    fn from_stored(epoch: i16, stored: Vec<StoredBatch>) -> Sequences {
        let batches = stored
            .into_iter()
            .map(|(first_sequence, last_sequence, base_offset)| SentBatch {
                first_sequence,
                last_sequence,
                base_offset,
            })
            .collect();
        Sequences { epoch, batches }
    }

    fn to_stored(&self) -> Vec<StoredBatch> {
        self.batches
            .iter()
            .map(|b| (b.first_sequence, b.last_sequence, b.base_offset))
            .collect()
    }

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
/// check and its append are one step while other partitions go on; and the id counter.
#[derive(Debug)]
pub(super) struct Producers {
    store: ProducerStore,
    /// The next id to hand out and the durable ceiling it must stay below.
    ids: Mutex<(u64, u64)>,
    sequences: Mutex<HashMap<SequenceKey, Arc<tokio::sync::Mutex<Sequences>>>>,
}

impl Producers {
    /// The producers' state kept in `store`; ids continue from its durable ceiling.
    pub(super) fn open(store: ProducerStore) -> Result<Producers, ProducerStoreError> {
        let ceiling = store.id_ceiling()?;
        Ok(Producers {
            store,
            ids: Mutex::new((ceiling, ceiling)),
            sequences: Mutex::new(HashMap::new()),
        })
    }

    /// The lock of one producer's sequences on one partition (loaded from the store the first
    /// time it is asked for after a start).
    pub(super) fn sequences(
        &self,
        producer_id: i64,
        topic: &str,
        partition: u32,
    ) -> Arc<tokio::sync::Mutex<Sequences>> {
        let key = (producer_id, topic.to_owned(), partition);
        let mut sequences = self.sequences.lock();
        let entry = sequences.entry(key).or_insert_with(|| {
            let stored = self.store.load(producer_id, topic, partition);
            let loaded = stored.map_or_else(Sequences::default, |(epoch, batches)| {
                Sequences::from_stored(epoch, batches)
            });
            Arc::new(tokio::sync::Mutex::new(loaded))
        });
        Arc::clone(entry)
    }

    /// Writes a producer's sequences on a partition to the store; durable after [`Self::sync`].
    pub(super) fn remember(
        &self,
        producer_id: i64,
        topic: &str,
        partition: u32,
        sequences: &Sequences,
    ) {
        let stored = sequences.to_stored();
        if let Err(e) = self
            .store
            .save(producer_id, topic, partition, sequences.epoch, &stored)
        {
            // Kept in memory all the same: only a restart would forget this batch.
            tracing::error!(error = %e, "kafka: cannot write a producer's sequences");
        }
    }

    /// Makes the remembered sequences durable (before the answers that rely on them leave).
    pub(super) async fn sync(&self) {
        let store = self.store.clone();
        let synced = tokio::task::spawn_blocking(move || store.flush_and_sync()).await;
        match synced {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "kafka: cannot sync the producers' state"),
            Err(e) => tracing::error!(error = %e, "kafka: the producers' state sync failed"),
        }
    }

    /// A new producer id, never handed out before, also across restarts: a new block of ids is
    /// made durable first (a blocking write, once per [`ID_BLOCK`] ids); `None` if it cannot be.
    fn next_id(&self) -> Option<i64> {
        let mut ids = self.ids.lock();
        let (next, ceiling) = *ids;
        if next >= ceiling {
            let raised = ceiling.saturating_add(ID_BLOCK);
            if let Err(e) = self.store.raise_id_ceiling(raised) {
                tracing::error!(error = %e, "kafka: cannot reserve producer ids");
                return None;
            }
            ids.1 = raised;
        }
        ids.0 = next.saturating_add(1);
        i64::try_from(next).ok()
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
            let Some(id) = self.next_id() else {
                return InitProducerIdResponse::default()
                    .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1);
            };
            (id, 0)
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

    fn producers(dir: &std::path::Path) -> Producers {
        Producers::open(ProducerStore::open(dir).expect("open the store")).expect("open")
    }

    #[test]
    fn producer_ids_are_never_handed_out_twice_across_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = producers(dir.path()).next_id().expect("an id");
        let second = producers(dir.path()).next_id().expect("an id");
        assert!(second > first, "{second} after {first}");
    }

    #[tokio::test]
    async fn remembered_sequences_are_loaded_after_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let before = producers(dir.path());
            let lock = before.sequences(7, "orders", 1);
            let mut seq = lock.lock().await;
            seq.record(&batch(2, 0, 10), 40);
            before.remember(7, "orders", 1, &seq);
            before.sync().await;
        }
        let after = producers(dir.path());
        let lock = after.sequences(7, "orders", 1);
        let seq = lock.lock().await;
        assert_eq!(seq.check(&batch(2, 0, 10)), Verdict::Duplicate(40));
        assert_eq!(seq.check(&batch(2, 10, 1)), Verdict::Append);
    }

    #[test]
    fn transactional_producers_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let producers = producers(dir.path());
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
