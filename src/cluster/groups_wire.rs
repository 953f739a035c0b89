//! The consumer-group calls one node forwards to a group's coordinator on another node, their
//! answers, the subjects they travel on and the lease keys; and running a call on the local
//! [`Coordinator`]. No I/O.

use serde::{Deserialize, Serialize};

use base64::Engine as _;

use crate::bus::coordinator::Joined;
use crate::bus::{BusError, Coordinator, Lease, MemberView, Subscription, TopicPartition};

/// Existing topics with their partition counts, as the caller's log sees them.
pub(crate) type Topics = Vec<(String, u32)>;

/// One call of the HTTP routes on a group's coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub(crate) enum Call {
    /// `Coordinator::join`.
    Join {
        /// The group.
        group: String,
        /// The user joining.
        owner: String,
        /// What it subscribes to.
        subscription: Subscription,
        /// The topics.
        topics: Topics,
    },
    /// `Coordinator::leave`.
    Leave {
        /// The group.
        group: String,
        /// The member.
        member: String,
        /// Its user.
        owner: String,
        /// The topics.
        topics: Topics,
    },
    /// `Coordinator::lease`.
    Lease {
        /// The group.
        group: String,
        /// The member.
        member: String,
        /// Its user.
        owner: String,
        /// The topics.
        topics: Topics,
    },
    /// `Coordinator::advance`.
    Advance {
        /// The group.
        group: String,
        /// The member.
        member: String,
        /// The generation of its lease.
        generation: u64,
        /// Where it read up to.
        positions: Vec<(TopicPartition, u64)>,
    },
    /// `Coordinator::check_owner`.
    CheckOwner {
        /// The group.
        group: String,
        /// The member.
        member: String,
        /// Its user.
        owner: String,
        /// The partitions it must own.
        partitions: Vec<TopicPartition>,
        /// The topics.
        topics: Topics,
    },
    /// `Coordinator::describe`.
    Describe {
        /// The group.
        group: String,
        /// The topics.
        topics: Topics,
    },
}

impl Call {
    /// The group the call is about.
    pub(crate) fn group(&self) -> &str {
        match self {
            Call::Join { group, .. }
            | Call::Leave { group, .. }
            | Call::Lease { group, .. }
            | Call::Advance { group, .. }
            | Call::CheckOwner { group, .. }
            | Call::Describe { group, .. } => group,
        }
    }

    /// Runs the call on the coordinator of this node.
    pub(crate) fn run_on(self, coordinator: &Coordinator) -> Answer {
        let answer = match self {
            Call::Join {
                group,
                owner,
                subscription,
                topics,
            } => coordinator
                .join(&group, &owner, subscription, &topics)
                .map(Answer::Joined),
            Call::Leave {
                group,
                member,
                owner,
                topics,
            } => coordinator
                .leave(&group, &member, &owner, &topics)
                .map(|()| Answer::Done),
            Call::Lease {
                group,
                member,
                owner,
                topics,
            } => coordinator
                .lease(&group, &member, &owner, &topics)
                .map(Answer::Lease),
            Call::Advance {
                group,
                member,
                generation,
                positions,
            } => {
                coordinator.advance(&group, &member, generation, &positions);
                Ok(Answer::Done)
            }
            Call::CheckOwner {
                group,
                member,
                owner,
                partitions,
                topics,
            } => coordinator
                .check_owner(&group, (&member, &owner), &partitions, &topics)
                .map(|()| Answer::Done),
            Call::Describe { group, topics } => {
                Ok(Answer::Members(coordinator.describe(&group, &topics)))
            }
        };
        answer.unwrap_or_else(Answer::Refused)
    }
}

/// A coordinator's answer to a [`Call`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", content = "value", rename_all = "camelCase")]
pub(crate) enum Answer {
    /// To a join.
    Joined(Joined),
    /// To a leave, an advance, an owner check that passed.
    Done,
    /// To a lease.
    Lease(Lease),
    /// To a describe.
    Members(Vec<MemberView>),
    /// The coordinator refused the call.
    Refused(BusError),
    /// The node asked does not (or no longer) coordinate the group: ask again who does.
    NotCoordinator,
}

/// The subject where `node` takes the calls for the groups it coordinates.
pub(crate) fn calls_subject(prefix: &str, node: &str) -> String {
    format!("{prefix}.groups.{node}")
}

/// The lease bucket of a cluster.
pub(crate) fn bucket(prefix: &str) -> String {
    format!("{prefix}_group_coordinators")
}

/// A group's key in the lease bucket: its name in URL-safe base64, since a group name may hold
/// characters a key may not.
pub(crate) fn lease_key(group: &str) -> String {
    format!(
        "g_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(group)
    )
}

/// The group whose lease key `key` is (`None`: not a group's lease key).
pub(crate) fn group_of_lease_key(key: &str) -> Option<String> {
    let encoded = key.strip_prefix("g_")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_and_its_answer_cross_the_wire_and_keys_are_valid_whatever_the_group() {
        let coordinator = Coordinator::default();
        let call = Call::Join {
            group: "billing/eu west".into(),
            owner: "ann".into(),
            subscription: Subscription {
                topics: vec!["orders.#".into()],
                ..Subscription::default()
            },
            topics: vec![("orders.eu".into(), 2)],
        };
        let call: Call = serde_json::from_slice(&serde_json::to_vec(&call).unwrap()).unwrap();
        let answer = call.run_on(&coordinator);
        let answer: Answer = serde_json::from_slice(&serde_json::to_vec(&answer).unwrap()).unwrap();
        let Answer::Joined(joined) = answer else {
            panic!("{answer:?}")
        };
        assert_eq!(joined.assignment.len(), 2);
        let refused = Call::Leave {
            group: "billing/eu west".into(),
            member: "nobody".into(),
            owner: "ann".into(),
            topics: vec![],
        }
        .run_on(&coordinator);
        let json = serde_json::to_vec(&refused).unwrap();
        assert!(matches!(
            serde_json::from_slice(&json).unwrap(),
            Answer::Refused(BusError::UnknownMember { .. })
        ));
        let key = lease_key("billing/eu west");
        assert!(key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(group_of_lease_key(&key).as_deref(), Some("billing/eu west"));
        assert_eq!(group_of_lease_key("k_YQ"), None, "a Kafka group's lease");
    }
}
