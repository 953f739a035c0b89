//! OffsetCommit (v2–v8) and OffsetFetch (v1–v7): a Kafka group's committed offsets are the
//! log's, the same ones HTTP groups and `tidings groups describe` use, so a Kafka group and an
//! HTTP group of the same name share progress and lag shows everywhere.
//!
//! A commit from a group member is checked against the group (member known, generation
//! current); a commit with generation -1 and no member id (a consumer that assigns itself
//! partitions) is taken as is. On a cluster a member's commit is refused with `NOT_COORDINATOR`
//! on a node that does not coordinate its group (the offsets themselves are the shared log's).
//! A commit sets the offset where the client says (below the last one too, after a seek back) and stores its metadata string with it in the log, so that it
//! round-trips through OffsetFetch across restarts. Metadata longer than
//! [`MAX_METADATA_BYTES`] (Kafka's default `offset.metadata.max.bytes`) is refused with
//! `OFFSET_METADATA_TOO_LARGE` and nothing is committed: it is stored per group and partition.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::access::Session;
use super::group::Command;
use super::metadata::log_error_code;
use super::produce::{existing_partition, to_i64};
use super::{placement, Broker};
use crate::log::LogError;

/// Longest metadata string a commit may store, as Kafka's default `offset.metadata.max.bytes`.
pub(super) const MAX_METADATA_BYTES: usize = 4096;

/// Answers an OffsetCommit request.
pub(super) async fn commit(
    broker: &Broker,
    session: &Session,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group = request.group_id.0.as_str().to_owned();
    let member_id = request.member_id.as_str().to_owned();
    let generation = request.generation_id_or_member_epoch;
    let refusal = may_commit(broker, &group, member_id, generation).await;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let outcome = match refusal {
                        Some(error) => Err(error),
                        None => commit_one(
                            broker,
                            session,
                            &group,
                            name,
                            p.partition_index,
                            p.committed_offset,
                            p.committed_metadata.as_ref(),
                        ),
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(outcome.err().map_or(0, |e| e.code()))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// Why a commit of `group` by this member and generation is refused, if it is: a member's
/// commit goes to the group's coordinator (`NOT_COORDINATOR` elsewhere, on a cluster) and is
/// checked there; a commit with no member (generation -1) is taken on any node.
async fn may_commit(
    broker: &Broker,
    group: &str,
    member_id: String,
    generation: i32,
) -> Option<ResponseError> {
    let is_member = !(generation < 0 && member_id.is_empty());
    if is_member {
        if let Some(error) = placement::refusal(broker, group).await {
            return Some(error);
        }
    }
    broker
        .groups
        .ask(group, |reply| Command::MayCommit {
            member_id,
            generation,
            reply,
        })
        .await
        .unwrap_or(Some(ResponseError::CoordinatorNotAvailable))
}

fn commit_one(
    broker: &Broker,
    session: &Session,
    group: &str,
    topic: &str,
    index: i32,
    offset: i64,
    metadata: Option<&StrBytes>,
) -> Result<(), ResponseError> {
    if !session.may_consume(topic) {
        return Err(ResponseError::TopicAuthorizationFailed);
    }
    let partition = existing_partition(broker, topic, index)?;
    let offset = u64::try_from(offset).map_err(|_| ResponseError::InvalidCommitOffsetSize)?;
    let metadata = metadata.map_or("", |text| text.as_str());
    if metadata.len() > MAX_METADATA_BYTES {
        return Err(ResponseError::OffsetMetadataTooLarge);
    }
    match broker
        .log
        .commit_offset_with_metadata(group, topic, partition, offset, metadata)
    {
        Ok(()) => Ok(()),
        Err(LogError::InvalidGroupName { .. }) => Err(ResponseError::InvalidGroupId),
        Err(e) => Err(log_error_code(&e)),
    }
}

/// Answers an OffsetFetch request: the committed offset and metadata of each partition asked
/// (or of every partition the group committed on), -1 where there is none.
pub(super) fn fetch(
    broker: &Broker,
    session: &Session,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let group = request.group_id.0.as_str();
    let asked: Vec<(String, Vec<i32>)> = match request.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes))
            .collect(),
        None => broker
            .log
            .group_topics(group)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|name| {
                let info = broker.log.describe_topic(&name).ok()?;
                let partitions = info
                    .partitions
                    .iter()
                    .map(|p| i32::try_from(p.partition).unwrap_or(i32::MAX))
                    .collect();
                Some((name, partitions))
            })
            .collect(),
    };
    let topics = asked
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|index| fetch_one(broker, session, group, &name, index))
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect();
    let answer = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        return answer.with_error_code(0);
    }
    answer
}

fn fetch_one(
    broker: &Broker,
    session: &Session,
    group: &str,
    topic: &str,
    index: i32,
) -> OffsetFetchResponsePartition {
    let answer = OffsetFetchResponsePartition::default()
        .with_partition_index(index)
        .with_committed_leader_epoch(-1);
    let committed = if session.may_consume(topic) {
        existing_partition(broker, topic, index).and_then(|partition| {
            broker
                .log
                .committed_offset_with_metadata(group, topic, partition)
                .map_err(|e| log_error_code(&e))
        })
    } else {
        Err(ResponseError::TopicAuthorizationFailed)
    };
    match committed {
        Ok(Some((offset, metadata))) => answer
            .with_committed_offset(to_i64(offset))
            .with_metadata(Some(StrBytes::from_string(metadata))),
        Ok(None) => answer
            .with_committed_offset(-1)
            .with_metadata(Some(StrBytes::default())),
        Err(error) => answer
            .with_committed_offset(-1)
            .with_metadata(Some(StrBytes::default()))
            .with_error_code(error.code()),
    }
}
