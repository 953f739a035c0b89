//! Which Kafka APIs and versions this broker speaks, and the ApiVersions answer that
//! advertises exactly those (clients use whatever is listed, so nothing else is listed).
//!
//! Caps that matter to real clients: Produce and Fetch stop at v12 (from v13 they name topics by
//! UUID); OffsetForLeaderEpoch and ConsumerGroupHeartbeat are not listed (librdkafka then skips
//! offset validation, and every client uses the classic group protocol). An ApiVersions request of
//! a version beyond ours is answered with `UNSUPPORTED_VERSION` in a v0 body listing our ranges
//! (KIP-511). This module does not decode requests (see `dispatch`).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::ResponseError;

/// Every API served, with the versions served (always within what the codec crate knows).
pub(super) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::DescribeConfigs, 1, 4),
];

/// The served version range of `key`, if it is served at all.
pub(super) fn served(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(api, _, _)| *api == key)
        .map(|(_, min, max)| (*min, *max))
}

/// Whether `version` of `key` is served.
pub(super) fn is_served(key: ApiKey, version: i16) -> bool {
    served(key).is_some_and(|(min, max)| (min..=max).contains(&version))
}

/// The ApiVersions answer: every served API, or `UNSUPPORTED_VERSION` with the same list when
/// the request's own version is beyond ours (then encoded as v0, KIP-511).
pub(super) fn api_versions(request_version: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect();
    let error_code = if is_served(ApiKey::ApiVersions, request_version) {
        0
    } else {
        ResponseError::UnsupportedVersion.code()
    };
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    use super::*;

    #[test]
    fn every_served_range_is_within_what_the_codecs_know() {
        let known = |key: ApiKey| match key {
            ApiKey::Produce => ProduceRequest::VERSIONS,
            ApiKey::Fetch => FetchRequest::VERSIONS,
            ApiKey::ListOffsets => ListOffsetsRequest::VERSIONS,
            ApiKey::Metadata => MetadataRequest::VERSIONS,
            ApiKey::OffsetCommit => OffsetCommitRequest::VERSIONS,
            ApiKey::OffsetFetch => OffsetFetchRequest::VERSIONS,
            ApiKey::FindCoordinator => FindCoordinatorRequest::VERSIONS,
            ApiKey::JoinGroup => JoinGroupRequest::VERSIONS,
            ApiKey::Heartbeat => HeartbeatRequest::VERSIONS,
            ApiKey::LeaveGroup => LeaveGroupRequest::VERSIONS,
            ApiKey::SyncGroup => SyncGroupRequest::VERSIONS,
            ApiKey::DescribeGroups => DescribeGroupsRequest::VERSIONS,
            ApiKey::ListGroups => ListGroupsRequest::VERSIONS,
            ApiKey::ApiVersions => ApiVersionsRequest::VERSIONS,
            ApiKey::InitProducerId => InitProducerIdRequest::VERSIONS,
            ApiKey::SaslHandshake => SaslHandshakeRequest::VERSIONS,
            ApiKey::SaslAuthenticate => SaslAuthenticateRequest::VERSIONS,
            ApiKey::CreateTopics => CreateTopicsRequest::VERSIONS,
            ApiKey::DeleteTopics => DeleteTopicsRequest::VERSIONS,
            ApiKey::DescribeConfigs => DescribeConfigsRequest::VERSIONS,
            other => panic!("{other:?} is served but not checked here"),
        };
        for (key, min, max) in SUPPORTED {
            let range = known(*key);
            assert!(
                range.min <= *min && *max <= range.max,
                "{key:?} {min}..{max}"
            );
        }
    }

    #[test]
    fn topic_ids_leader_epochs_and_the_new_group_protocol_are_not_advertised() {
        assert_eq!(served(ApiKey::Produce).map(|r| r.1), Some(9));
        assert!(served(ApiKey::Fetch).is_some_and(|r| r.1 <= 12));
        assert_eq!(served(ApiKey::OffsetForLeaderEpoch), None);
        assert_eq!(served(ApiKey::ConsumerGroupHeartbeat), None);
    }

    #[test]
    fn a_too_new_api_versions_request_is_answered_unsupported_with_our_ranges() {
        let answer = api_versions(99);
        assert_eq!(answer.error_code, ResponseError::UnsupportedVersion.code());
        assert_eq!(answer.api_keys.len(), SUPPORTED.len());
        assert_eq!(api_versions(3).error_code, 0);
    }
}
