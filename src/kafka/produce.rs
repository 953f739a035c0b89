//! Produce: each partition's batches are checked (scopes, the server's own topics, the topic
//! and partition exist, CRC and shape), transcoded into log records and appended to that
//! partition; all partitions of a request are appended concurrently, and the answer goes once
//! every append is durable (acks 1 and all mean the same here: there is one replica). With
//! acks = 0 nothing is answered, as Kafka does.
//!
//! Batches of idempotent producers (a producer id) go through `producers`' sequence check:
//! a resent batch is answered with its first offsets, a gap is `OUT_OF_ORDER_SEQUENCE_NUMBER`.
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
use super::records::{decode_produced, BatchError};
use super::Broker;
use crate::log::Record;

/// Answers (or, with acks = 0, silently handles) a Produce request.
pub(super) async fn handle(broker: &Broker, session: &Session, request: ProduceRequest) -> Handled {
    let transactional = request
        .transactional_id
        .as_ref()
        .is_some_and(|id| !id.0.is_empty());
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
            ));
        }
    }
    let mut outcomes = join_all(work).await.into_iter();
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

/// Checks, decodes and appends one partition's data; its answer.
async fn produce_partition(
    broker: &Broker,
    session: &Session,
    topic: &str,
    data: &PartitionProduceData,
    transactional: bool,
) -> PartitionProduceResponse {
    let index = data.index;
    if transactional {
        return refused(index, ResponseError::TransactionalIdAuthorizationFailed);
    }
    if !session.may_produce(topic) {
        return refused(index, ResponseError::TopicAuthorizationFailed);
    }
    let partition = match existing_partition(broker, topic, index) {
        Ok(partition) => partition,
        Err(code) => return refused(index, code),
    };
    let Some(bytes) = &data.records else {
        return refused(index, ResponseError::CorruptMessage);
    };
    let (records, producer) = match decode_produced(bytes) {
        Ok(decoded) => decoded,
        Err(BatchError::Corrupt(reason)) => {
            tracing::debug!(topic, partition, reason = %reason, "kafka: corrupt batch refused");
            return refused(index, ResponseError::CorruptMessage);
        }
        Err(BatchError::Transactional) => {
            return refused(index, ResponseError::TransactionalIdAuthorizationFailed)
        }
    };
    if producer.producer_id < 0 {
        return append(broker, topic, partition, records).await.0;
    }
    // Idempotent: the check, the append and remembering it are one step per partition.
    let sequences = broker
        .producers
        .sequences(producer.producer_id, topic, partition);
    let mut sequences = sequences.lock().await;
    match sequences.check(&producer) {
        Verdict::Append => {
            let (answer, base) = append(broker, topic, partition, records).await;
            if let Some(base) = base {
                sequences.record(&producer, base);
            }
            answer
        }
        Verdict::Duplicate(base) => {
            tracing::debug!(
                topic,
                partition,
                base,
                "kafka: a duplicate batch answered with its first offset"
            );
            accepted(broker, topic, partition, base)
        }
        Verdict::Refuse(code) => refused(index, code),
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
