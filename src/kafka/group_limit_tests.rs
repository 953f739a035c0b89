//! Kafka groups are bounded and cleaned up: a join of a new group over `limits.maxGroups`
//! (counted with the HTTP bus's live groups and every group with committed offsets) is refused
//! with `GROUP_MAX_SIZE_REACHED`, and a group left without members and without committed
//! offsets disappears after its session timeout.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::tests::{call, fixture, Fixture};

/// A new member's JoinGroup (v5) of `group`.
pub(super) async fn join(f: &Fixture, group: &str, session_timeout_ms: i32) -> JoinGroupResponse {
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_session_timeout_ms(session_timeout_ms)
        .with_rebalance_timeout_ms(session_timeout_ms)
        .with_member_id(StrBytes::from_static_str(""))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(b"m"))]);
    call(f, ApiKey::JoinGroup, 5, &request).await
}

async fn listed(f: &Fixture) -> Vec<String> {
    let answer: ListGroupsResponse =
        call(f, ApiKey::ListGroups, 4, &ListGroupsRequest::default()).await;
    answer
        .groups
        .iter()
        .map(|g| g.group_id.0.as_str().to_owned())
        .collect()
}

/// The fixture allows 3 groups and its HTTP bus has one live group, `http-only`.
#[tokio::test]
async fn a_new_group_over_max_groups_is_refused_and_known_groups_still_join() {
    let f = fixture();
    assert_eq!(join(&f, "g1", 10_000).await.error_code, 0);
    assert_eq!(join(&f, "g2", 10_000).await.error_code, 0);
    let refused = join(&f, "g3", 10_000).await;
    assert_eq!(
        refused.error_code,
        ResponseError::GroupMaxSizeReached.code(),
        "http-only, g1 and g2 are three groups"
    );
    assert!(
        !listed(&f).await.contains(&"g3".to_owned()),
        "nothing started"
    );
    let known = join(&f, "http-only", 10_000).await;
    assert_eq!(known.error_code, 0, "a group the bus knows is no new group");
}

/// A group whose only member left ends after that member's session timeout; a group with
/// committed offsets is still listed (from the log) after its members are gone.
#[tokio::test]
async fn an_empty_group_disappears_after_its_session_timeout() {
    let f = fixture();
    let joined = join(&f, "fleeting", 200).await;
    assert_eq!(joined.error_code, 0);
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("fleeting")))
        .with_members(vec![
            MemberIdentity::default().with_member_id(joined.member_id)
        ]);
    let left: LeaveGroupResponse = call(&f, ApiKey::LeaveGroup, 3, &leave).await;
    assert_eq!(left.error_code, 0);
    assert!(
        listed(&f).await.contains(&"fleeting".to_owned()),
        "empty, still there"
    );

    f.log
        .create_topic("t", crate::log::TopicConfig::with_partitions(1))
        .await
        .expect("create");
    f.log.commit_offset("kept", "t", 0, 0).expect("commit");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = listed(&f).await;
    assert!(!after.contains(&"fleeting".to_owned()), "{after:?}");
    assert!(after.contains(&"kept".to_owned()), "{after:?}");
}
