//! What the HTTP routes call for consumer groups, on one node or on a cluster: [`Groups`] is the
//! in-memory [`Coordinator`] alone (without `--cluster`: the same calls as before, no await
//! point that waits) or [`ClusterGroups`]; plus the two cluster questions the routes ask
//! besides the coordinator calls: which groups are live, and may this node reset a group's
//! offsets now.

use std::sync::Arc;

use super::{unavailable, ClusterGroups, GroupsError, Route};
use crate::bus::coordinator::Joined;
use crate::bus::{BusError, Coordinator, Lease, MemberView, Subscription, TopicPartition};
use crate::cluster::groups_wire::group_of_lease_key;

/// The consumer-group coordination of this node.
#[derive(Debug, Clone)]
pub(crate) enum Groups {
    /// One node: the in-memory coordinator.
    Local(Arc<Coordinator>),
    /// A node of a cluster: each group on its coordinator node.
    Cluster(ClusterGroups),
}

impl Groups {
    /// `Coordinator::join`.
    pub(crate) async fn join(
        &self,
        group: &str,
        owner: &str,
        subscription: Subscription,
        topics: &[(String, u32)],
    ) -> Result<Joined, GroupsError> {
        match self {
            Groups::Local(local) => Ok(local.join(group, owner, subscription, topics)?),
            Groups::Cluster(cluster) => cluster.join(group, owner, subscription, topics).await,
        }
    }

    /// `Coordinator::leave`.
    pub(crate) async fn leave(
        &self,
        group: &str,
        member: &str,
        owner: &str,
        topics: &[(String, u32)],
    ) -> Result<(), GroupsError> {
        match self {
            Groups::Local(local) => Ok(local.leave(group, member, owner, topics)?),
            Groups::Cluster(cluster) => cluster.leave(group, member, owner, topics).await,
        }
    }

    /// `Coordinator::lease`.
    pub(crate) async fn lease(
        &self,
        group: &str,
        member: &str,
        owner: &str,
        topics: &[(String, u32)],
    ) -> Result<Lease, GroupsError> {
        match self {
            Groups::Local(local) => Ok(local.lease(group, member, owner, topics)?),
            Groups::Cluster(cluster) => cluster.lease(group, member, owner, topics).await,
        }
    }

    /// `Coordinator::advance`.
    pub(crate) async fn advance(
        &self,
        group: &str,
        member: &str,
        generation: u64,
        positions: &[(TopicPartition, u64)],
    ) -> Result<(), GroupsError> {
        match self {
            Groups::Local(local) => {
                local.advance(group, member, generation, positions);
                Ok(())
            }
            Groups::Cluster(cluster) => cluster.advance(group, member, generation, positions).await,
        }
    }

    /// `Coordinator::check_owner`.
    pub(crate) async fn check_owner(
        &self,
        group: &str,
        member_of: (&str, &str),
        partitions: &[TopicPartition],
        topics: &[(String, u32)],
    ) -> Result<(), GroupsError> {
        match self {
            Groups::Local(local) => Ok(local.check_owner(group, member_of, partitions, topics)?),
            Groups::Cluster(cluster) => {
                cluster
                    .check_owner(group, member_of, partitions, topics)
                    .await
            }
        }
    }

    /// `Coordinator::describe`.
    pub(crate) async fn describe(
        &self,
        group: &str,
        topics: &[(String, u32)],
    ) -> Result<Vec<MemberView>, GroupsError> {
        match self {
            Groups::Local(local) => Ok(local.describe(group, topics)),
            Groups::Cluster(cluster) => cluster.describe(group, topics).await,
        }
    }

    /// Groups with live members, sorted (on a cluster: the groups with a coordinator lease,
    /// which includes, for one lease TTL, a group whose last member just left).
    pub(crate) async fn groups(&self) -> Result<Vec<String>, GroupsError> {
        match self {
            Groups::Local(local) => Ok(local.groups()),
            Groups::Cluster(cluster) => cluster.groups().await,
        }
    }

    /// The coordinator to run `Coordinator::while_inactive` on for `group` (an offset reset):
    /// this node's own. On a cluster this node first becomes the group's coordinator, so that
    /// every join of the group waits on that coordinator's lock meanwhile; a group coordinated
    /// by another node is refused: `ActiveGroup` if it has members, else unavailable until its
    /// idle lease lapses (one TTL).
    pub(crate) async fn for_reset(
        &self,
        group: &str,
        topics: &[(String, u32)],
    ) -> Result<Arc<Coordinator>, GroupsError> {
        match self {
            Groups::Local(local) => Ok(local.clone()),
            Groups::Cluster(cluster) => cluster.claim_for_reset(group, topics).await,
        }
    }
}

impl ClusterGroups {
    /// The groups that have a coordinator lease now, sorted.
    pub(crate) async fn groups(&self) -> Result<Vec<String>, GroupsError> {
        self.inner
            .leases
            .all_names(group_of_lease_key)
            .await
            .map_err(|e| unavailable("*", &format!("listing: {e}")))
    }

    /// This node's coordinator, once this node coordinates `group` (see [`Groups::for_reset`]).
    async fn claim_for_reset(
        &self,
        group: &str,
        topics: &[(String, u32)],
    ) -> Result<Arc<Coordinator>, GroupsError> {
        match self.route(group).await? {
            Route::Here if self.still_coordinating(group).await => Ok(self.inner.local.clone()),
            Route::Here => Err(unavailable(group, "its coordinator is changing")),
            Route::To(node) => {
                let members = self.describe(group, topics).await?.len();
                if members > 0 {
                    return Err(GroupsError::Bus(BusError::ActiveGroup {
                        group: group.to_owned(),
                        members,
                    }));
                }
                Err(unavailable(
                    group,
                    &format!("node {node} still holds its idle coordinator lease; retry shortly"),
                ))
            }
        }
    }
}
