//! Fetch (v4–v12): records of each asked partition from its fetch offset, as one v2 batch per
//! partition, within `partition_max_bytes` and the request's `max_bytes` (a partition's first
//! record is sent even when larger, as Kafka does, so a consumer never sticks).
//!
//! Long poll: while fewer than `min_bytes` are ready, the request waits on the partitions' high
//! watermarks (the log wakes it, no polling) until `max_wait_ms` (capped at 30 s) or the server's
//! shutdown. On a cluster an offset past this node's high watermark is waited for the same way
//! before it is called out of range: every node answers as the leader, and a client that moves
//! to another node (its Metadata named that one) may ask for records this node's copy of the
//! shared log has not received yet; `OFFSET_OUT_OF_RANGE` would make it reset its position and
//! read everything again.
//!
//! Fetch sessions are not kept: the answer's `session_id` is 0, which every client takes as
//! "full fetch each time".

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::select_all;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::access::Session;
use super::metadata::log_error_code;
use super::produce::{existing_partition, to_i64};
use super::records::encode_fetched;
use super::Broker;
use crate::log::{Log, LogError, ReadLimits};

/// Longest wait of one fetch, whatever `max_wait_ms` asks.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Most records of one partition in one answer.
const MAX_RECORDS_PER_PARTITION: usize = 10_000;

/// One asked partition, resolved.
#[derive(Debug)]
struct Wanted {
    topic_index: usize,
    partition_index: i32,
    /// The partition and its offset, or why it cannot be read.
    target: Result<(String, u32, u64), ResponseError>,
    max_bytes: usize,
}

/// Answers a Fetch request, waiting as its `max_wait_ms` / `min_bytes` ask.
pub(super) async fn handle(
    broker: &Broker,
    session: &Session,
    request: FetchRequest,
) -> FetchResponse {
    let wanted = resolve(broker, session, &request);
    let mut watermarks = subscribe(&broker.log, &wanted);
    let wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0)).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let max_bytes = usize::try_from(request.max_bytes)
        .unwrap_or(usize::MAX)
        .max(1);
    loop {
        for receiver in &mut watermarks {
            receiver.borrow_and_update();
        }
        let last_round = Instant::now() >= deadline || broker.shutdown.is_cancelled();
        let past_high_waits = broker.cluster.is_some() && !last_round;
        let (partitions, ready) = read_all(&broker.log, &wanted, max_bytes, past_high_waits).await;
        let any_error = partitions.iter().any(|(_, p)| p.error_code != 0);
        if ready >= min_bytes.max(1) || last_round || any_error || watermarks.is_empty() {
            return answer(&request, partitions);
        }
        wait_for_any(&mut watermarks, deadline, broker).await;
    }
}

fn resolve(broker: &Broker, session: &Session, request: &FetchRequest) -> Vec<Wanted> {
    let mut wanted = Vec::new();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let name = topic.topic.0.as_str();
        for partition in &topic.partitions {
            let target = if session.may_consume(name) {
                existing_partition(broker, name, partition.partition).and_then(|p| {
                    u64::try_from(partition.fetch_offset)
                        .map(|offset| (name.to_owned(), p, offset))
                        .map_err(|_| ResponseError::OffsetOutOfRange)
                })
            } else {
                Err(ResponseError::TopicAuthorizationFailed)
            };
            wanted.push(Wanted {
                topic_index,
                partition_index: partition.partition,
                target,
                max_bytes: usize::try_from(partition.partition_max_bytes)
                    .unwrap_or(0)
                    .max(1),
            });
        }
    }
    wanted
}

fn subscribe(log: &Log, wanted: &[Wanted]) -> Vec<watch::Receiver<u64>> {
    wanted
        .iter()
        .filter_map(|w| w.target.as_ref().ok())
        .filter_map(|(topic, partition, _)| log.subscribe(topic, *partition).ok())
        .collect()
}

/// Waits until a watched high watermark moves, the deadline, or shutdown.
async fn wait_for_any(watermarks: &mut [watch::Receiver<u64>], deadline: Instant, broker: &Broker) {
    let changes = select_all(watermarks.iter_mut().map(|r| Box::pin(r.changed())));
    tokio::select! {
        _ = changes => {}
        () = tokio::time::sleep_until(deadline) => {}
        () = broker.shutdown.cancelled() => {}
    }
}

/// Reads every wanted partition off the async threads; the answers and the record bytes ready.
/// With `past_high_waits`, an offset past the high watermark reads as nothing yet rather than
/// out of range.
async fn read_all(
    log: &Log,
    wanted: &[Wanted],
    max_bytes: usize,
    past_high_waits: bool,
) -> (Vec<(usize, PartitionData)>, usize) {
    let plan: Vec<_> = wanted
        .iter()
        .map(|w| {
            (
                w.topic_index,
                w.partition_index,
                w.target.clone(),
                w.max_bytes,
            )
        })
        .collect();
    let log = log.clone();
    let read = tokio::task::spawn_blocking(move || {
        let mut budget = max_bytes;
        let mut ready = 0;
        let answers = plan
            .into_iter()
            .map(|(topic_index, index, target, partition_max)| {
                let max = partition_max.min(budget.max(1));
                let data = read_partition(&log, index, target, max, past_high_waits);
                let bytes = data.records.as_ref().map_or(0, Bytes::len);
                budget = budget.saturating_sub(bytes);
                ready += bytes;
                (topic_index, data)
            })
            .collect();
        (answers, ready)
    })
    .await;
    read.unwrap_or_else(|e| {
        tracing::error!(error = %e, "kafka: a fetch read failed");
        (Vec::new(), 0)
    })
}

fn read_partition(
    log: &Log,
    index: i32,
    target: Result<(String, u32, u64), ResponseError>,
    max_bytes: usize,
    past_high_waits: bool,
) -> PartitionData {
    let (topic, partition, offset) = match target {
        Ok(target) => target,
        Err(code) => return partition_error(index, code, None),
    };
    let (low, high) = match log.watermarks(&topic, partition) {
        Ok(marks) => marks,
        Err(e) => return partition_error(index, log_error_code(&e), None),
    };
    let limits = ReadLimits {
        max_records: MAX_RECORDS_PER_PARTITION,
        max_bytes,
    };
    let records = match log.read(&topic, partition, offset, limits) {
        Ok(records) => records,
        Err(LogError::OffsetOutOfRange { .. }) if past_high_waits && offset > high => Vec::new(),
        Err(LogError::OffsetOutOfRange { .. }) => {
            return partition_error(index, ResponseError::OffsetOutOfRange, Some((low, high)))
        }
        Err(e) => return partition_error(index, log_error_code(&e), Some((low, high))),
    };
    let high = records.last().map_or(high, |r| high.max(r.offset + 1));
    match encode_fetched(records) {
        Ok(batch) => PartitionData::default()
            .with_partition_index(index)
            .with_high_watermark(to_i64(high))
            .with_last_stable_offset(to_i64(high))
            .with_log_start_offset(to_i64(low))
            .with_aborted_transactions(Some(Vec::new()))
            .with_records(Some(batch)),
        Err(e) => {
            tracing::error!(topic, partition, error = %e, "kafka: cannot encode fetched records");
            partition_error(index, ResponseError::UnknownServerError, Some((low, high)))
        }
    }
}

fn partition_error(index: i32, code: ResponseError, marks: Option<(u64, u64)>) -> PartitionData {
    let (low, high) = marks.map_or((-1, -1), |(low, high)| (to_i64(low), to_i64(high)));
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(code.code())
        .with_high_watermark(high)
        .with_last_stable_offset(high)
        .with_log_start_offset(low)
        .with_aborted_transactions(Some(Vec::new()))
        .with_records(Some(Bytes::new()))
}

fn answer(request: &FetchRequest, partitions: Vec<(usize, PartitionData)>) -> FetchResponse {
    let mut topics: Vec<FetchableTopicResponse> = request
        .topics
        .iter()
        .map(|t| FetchableTopicResponse::default().with_topic(t.topic.clone()))
        .collect();
    for (topic_index, data) in partitions {
        if let Some(topic) = topics.get_mut(topic_index) {
            topic.partitions.push(data);
        }
    }
    FetchResponse::default()
        .with_session_id(0)
        .with_responses(topics)
}
