//! Topic administration for admin tools: CreateTopics (v2–v7), DeleteTopics (v1–v5) and
//! DescribeConfigs (v1–v4, topics: the retention the log keeps; a broker: nothing).
//!
//! Creating needs `events:publish`, deleting needs `admin`; neither ever touches the server's
//! own topics. One broker: a replication factor above 1 is `INVALID_REPLICATION_FACTOR`.
//! Topic configs understood: `retention.ms`, `retention.bytes` (-1: none) and `cleanup.policy`
//! (`delete` only: compaction is not offered); other keys are accepted and ignored, as tools
//! often send broker-tuning keys that mean nothing here.

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::access::Session;
use super::metadata::log_error_code;
use super::Broker;
use crate::log::{TopicConfig, TopicInfo};

/// DescribeConfigs resource type of a topic.
const TOPIC_RESOURCE: i8 = 2;
/// Config source "topic's own setting"; 5 is "default config".
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

/// Answers CreateTopics.
pub(super) async fn create(
    broker: &Broker,
    session: &Session,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        let outcome = match topic_config(broker, topic) {
            _ if !session.may_create(name) => Err(ResponseError::TopicAuthorizationFailed),
            Err(refusal) => Err(refusal),
            Ok(config) if request.validate_only => config
                .validate()
                .map(|()| config.partitions)
                .map_err(|e| log_error_code(&e)),
            Ok(config) => broker
                .log
                .create_topic(name, config)
                .await
                .map(|info| partition_count(&info))
                .map_err(|e| log_error_code(&e)),
        };
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        results.push(match outcome {
            Ok(partitions) => result
                .with_num_partitions(i32::try_from(partitions).unwrap_or(i32::MAX))
                .with_replication_factor(1),
            Err(error) => result.with_error_code(error.code()),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

fn partition_count(info: &TopicInfo) -> u32 {
    u32::try_from(info.partitions.len()).unwrap_or(u32::MAX)
}

/// The log's config of a CreateTopics entry, or why it is refused.
fn topic_config(broker: &Broker, topic: &CreatableTopic) -> Result<TopicConfig, ResponseError> {
    if topic.replication_factor > 1 {
        return Err(ResponseError::InvalidReplicationFactor);
    }
    if !topic.assignments.is_empty() {
        return Err(ResponseError::InvalidRequest);
    }
    let partitions = match topic.num_partitions {
        -1 => broker.default_partitions,
        n => u32::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or(ResponseError::InvalidPartitions)?,
    };
    let mut config = TopicConfig::with_partitions(partitions);
    for entry in &topic.configs {
        let value = entry.value.as_ref().map(|v| v.as_str());
        match (entry.name.as_str(), value) {
            ("retention.ms", Some(v)) => config.retention_ms = limit(v)?,
            ("retention.bytes", Some(v)) => config.retention_bytes = limit(v)?,
            ("cleanup.policy", Some("delete")) => {}
            ("cleanup.policy", _) => return Err(ResponseError::InvalidConfig),
            _ => {}
        }
    }
    Ok(config)
}

/// A retention value: -1 is "no limit", a positive number is the limit.
fn limit(value: &str) -> Result<Option<u64>, ResponseError> {
    match value.trim().parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(n) if n > 0 => Ok(u64::try_from(n).ok()),
        _ => Err(ResponseError::InvalidConfig),
    }
}

/// Answers DeleteTopics (by name; v6's topic ids are not served).
pub(super) async fn delete(
    broker: &Broker,
    session: &Session,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let mut responses = Vec::with_capacity(request.topic_names.len());
    for name in &request.topic_names {
        let topic = name.0.as_str();
        let outcome = if session.may_delete(topic) {
            broker
                .log
                .delete_topic(topic)
                .await
                .map_err(|e| log_error_code(&e))
        } else {
            Err(ResponseError::TopicAuthorizationFailed)
        };
        if outcome.is_ok() {
            tracing::info!(topic, "kafka: topic deleted");
        }
        responses.push(
            DeletableTopicResult::default()
                .with_name(Some(name.clone()))
                .with_error_code(outcome.err().map_or(0, |e| e.code())),
        );
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Answers DescribeConfigs: a topic's retention and cleanup policy; no broker configs.
pub(super) fn describe_configs(
    broker: &Broker,
    session: &Session,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            if resource.resource_type != TOPIC_RESOURCE {
                return result;
            }
            let name = resource.resource_name.as_str();
            if !session.may_describe(name) {
                return result.with_error_code(ResponseError::TopicAuthorizationFailed.code());
            }
            match broker.log.describe_topic(name) {
                Ok(info) => {
                    let wanted = resource.configuration_keys.as_ref();
                    let configs = topic_configs(&info)
                        .into_iter()
                        .filter(|c| wanted.is_none_or(|keys| keys.contains(&c.name)))
                        .collect();
                    result.with_configs(configs)
                }
                Err(e) => result.with_error_code(log_error_code(&e).code()),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn topic_configs(info: &TopicInfo) -> Vec<DescribeConfigsResourceResult> {
    let entry = |name: &'static str, value: Option<u64>| {
        DescribeConfigsResourceResult::default()
            .with_name(StrBytes::from_static_str(name))
            .with_value(Some(StrBytes::from_string(
                value.map_or_else(|| "-1".to_owned(), |v| v.to_string()),
            )))
            .with_config_source(if value.is_some() {
                SOURCE_TOPIC
            } else {
                SOURCE_DEFAULT
            })
    };
    vec![
        entry("retention.ms", info.config.retention_ms),
        entry("retention.bytes", info.config.retention_bytes),
        DescribeConfigsResourceResult::default()
            .with_name(StrBytes::from_static_str("cleanup.policy"))
            .with_value(Some(StrBytes::from_static_str("delete")))
            .with_read_only(true)
            .with_config_source(SOURCE_DEFAULT),
    ]
}
