//! ListOffsets (v1–v7): earliest (-2), latest (-1) or the first offset appended at or after a
//! timestamp, per partition. The timestamp answered for earliest and latest is -1, as Kafka
//! does; leader epochs are -1 (see `metadata`). "Max timestamp" (-3) is answered as latest.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::access::Session;
use super::metadata::log_error_code;
use super::produce::{existing_partition, to_i64};
use super::Broker;

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
                    partition_answer(p.partition_index, p.timestamp, found)
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn offset_of(
    broker: &Broker,
    topic: &str,
    index: i32,
    timestamp: i64,
) -> Result<u64, ResponseError> {
    let partition = existing_partition(broker, topic, index)?;
    let (low, high) = broker
        .log
        .watermarks(topic, partition)
        .map_err(|e| log_error_code(&e))?;
    match timestamp {
        EARLIEST => Ok(low),
        t if t < 0 => Ok(high),
        t => broker
            .log
            .offset_for_time(topic, partition, t)
            .map_err(|e| log_error_code(&e)),
    }
}

fn partition_answer(
    index: i32,
    asked: i64,
    found: Result<u64, ResponseError>,
) -> ListOffsetsPartitionResponse {
    let answer = ListOffsetsPartitionResponse::default()
        .with_partition_index(index)
        .with_leader_epoch(-1);
    match found {
        Ok(offset) => answer
            .with_offset(to_i64(offset))
            .with_timestamp(if asked >= 0 { asked } else { -1 }),
        Err(code) => answer
            .with_error_code(code.code())
            .with_offset(-1)
            .with_timestamp(-1),
    }
}
