//! Produce: each partition's batches are checked (scopes, the server's own topics, the topic
//! and partition exist, CRC and shape), transcoded into log records and appended to that
//! partition; all partitions of a request are appended concurrently, and the answer goes once
//! every append is durable (acks 1 and all mean the same here: there is one replica). With
//! acks = 0 nothing is answered, as Kafka does.
//!
//! Batches of idempotent producers (a producer id) go through `producers`' sequence check:
//! a resent batch is answered with its first offsets, a gap is `OUT_OF_ORDER_SEQUENCE_NUMBER`;
//! the sequences of the batches a request appended are durable before its answer leaves, so a
//! retry after a restart is still a duplicate.
//! A request with a `transactional_id` is refused: transactions are not served. Producing to a
//! topic that does not exist is `UNKNOWN_TOPIC_OR_PARTITION` (clients create topics through
//! Metadata first). Nothing of a refused partition is appended.

use futures_util::future::join_all;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::access::Session;
use super::dispatch::Handled;
use super::metadata::log_error_code;
use super::producers::Verdict;
use super::records::{decode_produced, BatchError, DecompressBudget, ProducerInfo};
use super::Broker;
use crate::log::Record;

/// Answers (or, with acks = 0, silently handles) a Produce request.
pub(super) async fn handle(broker: &Broker, session: &Session, request: ProduceRequest) -> Handled {
    let transactional = request
        .transactional_id
        .as_ref()
        .is_some_and(|id| !id.0.is_empty());
    // Every partition is decoded before any is appended: one bound for the whole request.
    let budget = DecompressBudget::per_request();
    let mut work = Vec::new();
    for topic in &request.topic_data {
        let name = topic.name.0.as_str();
        for partition in &topic.partition_data {
            work.push(produce_partition(
                broker,
                session,
                name,
                partition,
                transactional,
                &budget,
            ));
        }
    }
    let outcomes = join_all(work).await;
    if outcomes.iter().any(|(_, remembered)| *remembered) {
        // The sequences of appended idempotent batches are durable before any answer says so.
        broker.producers.sync().await;
    }
    let mut outcomes = outcomes.into_iter().map(|(answer, _)| answer);
    if request.acks == 0 {
        return Handled::Silent;
    }
    let responses = request
        .topic_data
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .iter()
                .map(|_| {
                    outcomes
                        .next()
                        .unwrap_or_else(|| refused(-1, ResponseError::UnknownServerError))
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_partition_responses(partitions)
        })
        .collect();
    Handled::Respond(Box::new(ResponseKind::Produce(
        ProduceResponse::default().with_responses(responses),
    )))
}

/// Checks, decodes and appends one partition's data; its answer, and whether an idempotent
/// producer's sequences were written (to be synced before the answer leaves).
async fn produce_partition(
    broker: &Broker,
    session: &Session,
    topic: &str,
    data: &PartitionProduceData,
    transactional: bool,
    budget: &DecompressBudget,
) -> (PartitionProduceResponse, bool) {
    let (partition, records, producer) =
        match checked_records(broker, session, topic, data, transactional, budget) {
            Ok(checked) => checked,
            Err(code) => return (refused(data.index, code), false),
        };
    if producer.producer_id < 0 {
        return (append(broker, topic, partition, records).await.0, false);
    }
    // Idempotent: the check, the append and remembering it are one step per partition.
    let sequences = broker
        .producers
        .sequences(producer.producer_id, topic, partition);
    let mut sequences = sequences.lock().await;
    match sequences.check(&producer) {
        Verdict::Append => {
            let (answer, base) = append(broker, topic, partition, records).await;
            let Some(base) = base else {
                return (answer, false);
            };
            sequences.record(&producer, base);
            broker
                .producers
                .remember(producer.producer_id, topic, partition, &sequences);
            (answer, true)
        }
        Verdict::Duplicate(base) => {
            tracing::debug!(
                topic,
                partition,
                base,
                "kafka: a duplicate batch answered with its first offset"
            );
            (accepted(broker, topic, partition, base), false)
        }
        Verdict::Refuse(code) => (refused(data.index, code), false),
    }
}

/// The partition, records and producer of one partition's data, or the error refusing it.
fn checked_records(
    broker: &Broker,
    session: &Session,
    topic: &str,
    data: &PartitionProduceData,
    transactional: bool,
    budget: &DecompressBudget,
) -> Result<(u32, Vec<Record>, ProducerInfo), ResponseError> {
    if transactional {
        return Err(ResponseError::TransactionalIdAuthorizationFailed);
    }
    if !session.may_produce(topic) {
        return Err(ResponseError::TopicAuthorizationFailed);
    }
    let partition = existing_partition(broker, topic, data.index)?;
    let Some(bytes) = &data.records else {
        return Err(ResponseError::CorruptMessage);
    };
    match decode_produced(bytes, budget) {
        Ok((records, producer)) => Ok((partition, records, producer)),
        Err(BatchError::Corrupt(reason)) => {
            tracing::debug!(topic, partition, reason = %reason, "kafka: corrupt batch refused");
            Err(ResponseError::CorruptMessage)
        }
        Err(BatchError::Transactional) => Err(ResponseError::TransactionalIdAuthorizationFailed),
    }
}

/// The partition number if `topic` exists and has partition `index`.
pub(super) fn existing_partition(
    broker: &Broker,
    topic: &str,
    index: i32,
) -> Result<u32, ResponseError> {
    let info = broker
        .log
        .describe_topic(topic)
        .map_err(|e| log_error_code(&e))?;
    u32::try_from(index)
        .ok()
        .filter(|p| (*p as usize) < info.partitions.len())
        .ok_or(ResponseError::UnknownTopicOrPartition)
}

/// Appends once durable; the answer, and the first offset when it was appended.
async fn append(
    broker: &Broker,
    topic: &str,
    partition: u32,
    records: Vec<Record>,
) -> (PartitionProduceResponse, Option<u64>) {
    let index = i32::try_from(partition).unwrap_or(i32::MAX);
    if records.is_empty() {
        return (refused(index, ResponseError::CorruptMessage), None);
    }
    match broker.log.append_to(topic, partition, records).await {
        Ok(appended) => match appended.first() {
            Some(first) => (
                accepted(broker, topic, partition, first.offset),
                Some(first.offset),
            ),
            None => (refused(index, ResponseError::UnknownServerError), None),
        },
        Err(e) => {
            tracing::debug!(topic, partition, error = %e, "kafka: append refused");
            (refused(index, log_error_code(&e)), None)
        }
    }
}

fn accepted(broker: &Broker, topic: &str, partition: u32, base: u64) -> PartitionProduceResponse {
    let low = broker
        .log
        .watermarks(topic, partition)
        .map_or(0, |(low, _)| low);
    PartitionProduceResponse::default()
        .with_index(i32::try_from(partition).unwrap_or(i32::MAX))
        .with_base_offset(to_i64(base))
        .with_log_append_time_ms(-1)
        .with_log_start_offset(to_i64(low))
}

fn refused(index: i32, error: ResponseError) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(error.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

/// An offset as Kafka's signed 64-bit field (offsets never reach 2^63).
pub(super) fn to_i64(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}
