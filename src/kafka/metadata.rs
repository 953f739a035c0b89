//! Metadata: the brokers (alone: node 0 at the advertised address; on a cluster: every live
//! node, see `placement`), this broker as the controller and the leader of every partition with
//! replicas and ISR itself, leader epoch -1, and the topics asked for, created on first use when `kafka.autoCreateTopics` allows and the connection may
//! produce (kafkajs producers and many librdkafka programs rely on it).
//!
//! Topics the connection may not see are answered `TOPIC_AUTHORIZATION_FAILED` when named, and
//! left out of an "all topics" answer.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::access::Session;
use super::{placement, Broker};
use crate::log::{LogError, TopicConfig, TopicInfo};

/// The cluster id clients see (one broker, one cluster).
const CLUSTER_ID: &str = "tidings";

/// Answers a Metadata request.
pub(super) async fn handle(
    broker: &Broker,
    session: &Session,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // v0 spelled "all topics" as an empty list; later versions as null.
    let named: Option<Vec<String>> = match request.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => Some(
            topics
                .into_iter()
                .filter_map(|t| t.name.map(|n| n.0.as_str().to_owned()))
                .collect(),
        ),
        _ => None,
    };
    // Before v4 there was no flag: brokers created topics when configured to.
    let may_create = version < 4 || request.allow_auto_topic_creation;
    let me = placement::my_id(broker);
    let topics = match named {
        None => broker
            .log
            .topic_names()
            .into_iter()
            .filter(|name| session.may_describe(name))
            .filter_map(|name| broker.log.describe_topic(&name).ok())
            .map(|info| topic_answer(&info, me))
            .collect(),
        Some(names) => {
            let mut answers = Vec::with_capacity(names.len());
            for name in names {
                answers.push(named_topic(broker, session, &name, may_create).await);
            }
            answers
        }
    };
    let mut answer = MetadataResponse::default()
        .with_brokers(broker_answers(broker))
        .with_controller_id(BrokerId(me))
        .with_topics(topics);
    if version >= 2 {
        answer = answer.with_cluster_id(Some(StrBytes::from_static_str(CLUSTER_ID)));
    }
    answer
}

/// The broker list: this broker, and on a cluster the other live nodes'.
fn broker_answers(broker: &Broker) -> Vec<MetadataResponseBroker> {
    placement::brokers(broker)
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(StrBytes::from_string(b.host))
                .with_port(b.port)
        })
        .collect()
}

/// A topic the client named: described, created, or an error.
async fn named_topic(
    broker: &Broker,
    session: &Session,
    name: &str,
    may_create: bool,
) -> MetadataResponseTopic {
    if !session.may_describe(name) && !session.may_create(name) {
        return topic_error(name, ResponseError::TopicAuthorizationFailed);
    }
    let me = placement::my_id(broker);
    match broker.log.describe_topic(name) {
        Ok(info) => topic_answer(&info, me),
        Err(LogError::UnknownTopic(_)) => {
            let create =
                may_create && broker.settings.auto_create_topics && session.may_create(name);
            if !create {
                return topic_error(name, ResponseError::UnknownTopicOrPartition);
            }
            match create_topic(broker, name).await {
                Ok(info) => topic_answer(&info, me),
                Err(code) => topic_error(name, code),
            }
        }
        Err(e) => topic_error(name, log_error_code(&e)),
    }
}

/// Creates `name` with the log's default partitions; a topic created meanwhile by another
/// client is simply described.
pub(super) async fn create_topic(broker: &Broker, name: &str) -> Result<TopicInfo, ResponseError> {
    let config = TopicConfig::with_partitions(broker.default_partitions);
    match broker.log.create_topic(name, config).await {
        Ok(info) => {
            tracing::info!(topic = name, "kafka: topic created on first use");
            Ok(info)
        }
        Err(LogError::TopicExists(_)) => broker
            .log
            .describe_topic(name)
            .map_err(|e| log_error_code(&e)),
        Err(e) => Err(log_error_code(&e)),
    }
}

/// The Kafka error code for a log error about a topic.
pub(super) fn log_error_code(error: &LogError) -> ResponseError {
    match error {
        LogError::InvalidTopicName { .. } => ResponseError::InvalidTopicException,
        LogError::UnknownTopic(_) | LogError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition
        }
        LogError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        LogError::LimitReached(_) => ResponseError::PolicyViolation,
        LogError::InvalidConfig(_) => ResponseError::InvalidConfig,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::Overloaded => ResponseError::RequestTimedOut,
        LogError::StorageFull { .. } | LogError::NoSpace { .. } | LogError::Poisoned(_) => {
            ResponseError::KafkaStorageError
        }
        _ => ResponseError::UnknownServerError,
    }
}

/// A topic whose every partition `leader` leads (any node serves any partition).
fn topic_answer(info: &TopicInfo, leader: i32) -> MetadataResponseTopic {
    let partitions = info
        .partitions
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(i32::try_from(p.partition).unwrap_or(i32::MAX))
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(-1)
                .with_replica_nodes(vec![BrokerId(leader)])
                .with_isr_nodes(vec![BrokerId(leader)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(info.name.clone()))))
        .with_partitions(partitions)
}

fn topic_error(name: &str, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
}
