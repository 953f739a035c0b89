//! ListOffsets (v1–v7): earliest (-2), latest (-1) or the first offset appended at or after a
//! timestamp, per partition, answered as Kafka does: with that record's timestamp, or offset and
//! timestamp -1 when no record is that new; the timestamp answered for earliest and latest is
//! -1. Leader epochs are -1 (see `metadata`). "Max timestamp" (-3) is answered as latest.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::access::Session;
use super::metadata::log_error_code;
use super::produce::{existing_partition, to_i64};
use super::Broker;
use crate::log::ReadLimits;

/// Kafka's "earliest" timestamp.
const EARLIEST: i64 = -2;

/// Answers a ListOffsets request.
pub(super) fn handle(
    broker: &Broker,
    session: &Session,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let found = if session.may_consume(name) {
                        offset_of(broker, name, p.partition_index, p.timestamp)
                    } else {
                        Err(ResponseError::TopicAuthorizationFailed)
                    };
                    partition_answer(p.partition_index, found)
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// What ListOffsets answers for one partition: an offset and its timestamp (-1 for both when
/// no record is as new as the asked timestamp).
struct Found {
    offset: i64,
    timestamp: i64,
}

fn offset_of(
    broker: &Broker,
    topic: &str,
    index: i32,
    timestamp: i64,
) -> Result<Found, ResponseError> {
    let partition = existing_partition(broker, topic, index)?;
    let log = &broker.log;
    let (low, high) = log
        .watermarks(topic, partition)
        .map_err(|e| log_error_code(&e))?;
    let mark = |offset| Found {
        offset: to_i64(offset),
        timestamp: -1,
    };
    match timestamp {
        EARLIEST => Ok(mark(low)),
        t if t < 0 => Ok(mark(high)),
        t => {
            let offset = log
                .offset_for_time(topic, partition, t)
                .map_err(|e| log_error_code(&e))?;
            let first = ReadLimits {
                max_records: 1,
                ..ReadLimits::default()
            };
            let record = log
                .read(topic, partition, offset, first)
                .map_err(|e| log_error_code(&e))?
                .into_iter()
                .next();
            Ok(record.map_or(
                Found {
                    offset: -1,
                    timestamp: -1,
                },
                |r| Found {
                    offset: to_i64(r.offset),
                    timestamp: r.timestamp_ms,
                },
            ))
        }
    }
}

fn partition_answer(
    index: i32,
    found: Result<Found, ResponseError>,
) -> ListOffsetsPartitionResponse {
    let answer = ListOffsetsPartitionResponse::default()
        .with_partition_index(index)
        .with_leader_epoch(-1);
    match found {
        Ok(found) => answer
            .with_offset(found.offset)
            .with_timestamp(found.timestamp),
        Err(code) => answer
            .with_error_code(code.code())
            .with_offset(-1)
            .with_timestamp(-1),
    }
}
