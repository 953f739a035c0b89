//! HTTP consumer groups across nodes: each group has one coordinator node at a time, chosen by a
//! lease in a replicated JetStream key-value bucket; the other nodes forward that group's calls
//! to it over NATS request/reply.
//!
//! The lease of a group is its key in the bucket (`{prefix}_group_coordinators`), holding the
//! coordinator's node id; the bucket's `max_age` is the lease TTL, so a lease nobody renews
//! disappears by itself. The first node that has a call for a group with no lease creates the
//! key (create fails if it exists: one winner) and runs the group on its own
//! [`Coordinator`] (membership, round-robin assignment, expiry: unchanged); it renews every
//! TTL/3 with a revision-checked update while the group has live members, and lets a lease
//! that two renewal ticks in a row found idle lapse (the leases this node holds are kept by
//! `leases`, shared with the Kafka groups).
//! A node serves a group only while its lease was renewed less than 2/3 TTL ago (measured from
//! before the renewal was sent), else it renews first or answers `NotCoordinator`, so two nodes
//! never both serve a group while their clocks run at the same rate. When the coordinator dies
//! its lease expires; the next call anywhere creates a new one, and the new coordinator knows no
//! members: they get 404 and rejoin, as after a rebalance. Committed offsets are in the shared
//! log, so no progress is lost.
//!
//! This module does not touch the single-node path: without `--cluster` the HTTP routes call
//! the [`Coordinator`] directly, as before.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::groups_wire::{bucket, calls_subject, lease_key, Answer, Call, Topics};
use super::leases::{HeldLeases, Holder, Renewal};
use crate::bus::coordinator::Joined;
use crate::bus::{BusError, Coordinator, Lease, MemberView, Subscription, TopicPartition};

/// How group coordination runs across nodes.
#[derive(Debug, Clone)]
pub(crate) struct GroupsConfig {
    /// This node's id (a subject token, unique in the cluster).
    pub node_id: String,
    /// First token of the subjects and of the bucket name.
    pub prefix: String,
    /// Lifetime of a coordinator lease without renewal: how long a dead coordinator's groups
    /// wait before another node takes them over.
    pub lease_ttl: Duration,
    /// Replicas of the lease bucket (3 on a three-node JetStream cluster).
    pub replicas: usize,
    /// How long a forwarded call may take.
    pub call_timeout: Duration,
}

impl GroupsConfig {
    /// The defaults: leases of 5 s, 3 replicas, calls answered within 5 s.
    pub(crate) fn new(node_id: &str) -> GroupsConfig {
        GroupsConfig {
            node_id: node_id.to_owned(),
            prefix: "tidings".to_owned(),
            lease_ttl: Duration::from_secs(5),
            replicas: 3,
            call_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a group call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GroupsError {
    /// The coordinator refused it, as on one node.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The group's coordinator cannot be found or reached now (it died and its lease has not
    /// expired yet, NATS is unreachable, the quorum is lost): try again shortly (503).
    #[error("the coordinator of consumer group {group:?} is unavailable: {reason}")]
    Unavailable {
        /// The group.
        group: String,
        /// Why.
        reason: String,
    },
}

/// Why the group coordination did not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GroupsStartError {
    /// The lease bucket could not be opened or created.
    #[error("opening the coordinator lease bucket {bucket}: {reason}")]
    Bucket {
        /// Its name.
        bucket: String,
        /// Why.
        reason: String,
    },
    /// NATS refused the subscription for forwarded calls.
    #[error("subscribing to the group calls: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
}

/// Where a group's calls go.
enum Route {
    Here,
    To(String),
}

struct Inner {
    local: Arc<Coordinator>,
    client: async_nats::Client,
    /// The leases of the groups this node coordinates.
    leases: HeldLeases,
    config: GroupsConfig,
}

/// The consumer groups of a node in a cluster; cheap to clone.
#[derive(Clone)]
pub(crate) struct ClusterGroups {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ClusterGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterGroups")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Opens (or creates) the lease bucket, starts answering the calls other nodes forward here and
/// renewing this node's leases, until `shutdown`. `local` is this node's coordinator, which
/// runs the groups this node coordinates.
pub(crate) async fn start(
    client: async_nats::Client,
    local: Arc<Coordinator>,
    config: GroupsConfig,
    shutdown: CancellationToken,
) -> Result<(ClusterGroups, JoinHandle<()>), GroupsStartError> {
    let bucket = open_bucket(&client, &config).await?;
    let leases = HeldLeases::new(
        bucket,
        config.node_id.clone(),
        config.lease_ttl,
        lease_key,
        // No deadline: a call waits for its renewal rather than count a slow one as lost
        // (which ends the group's tenure here).
        "HTTP consumer group",
        None,
    );
    let calls = client
        .subscribe(calls_subject(&config.prefix, &config.node_id))
        .await?;
    let groups = ClusterGroups {
        inner: Arc::new(Inner {
            local,
            client,
            leases,
            config,
        }),
    };
    let task = tokio::spawn(groups.clone().serve(calls, shutdown));
    Ok((groups, task))
}

pub(super) async fn open_bucket(
    client: &async_nats::Client,
    config: &GroupsConfig,
) -> Result<kv::Store, GroupsStartError> {
    let jetstream = async_nats::jetstream::new(client.clone());
    let name = bucket(&config.prefix);
    let open = || async {
        match jetstream.get_key_value(name.clone()).await {
            Ok(store) => Ok(store),
            Err(_) => create_bucket(&jetstream, &name, config).await,
        }
    };
    crate::log::retry_while_cluster_forms(open)
        .await
        .map_err(|error| GroupsStartError::Bucket {
            bucket: name.clone(),
            reason: error.to_string(),
        })
}

async fn create_bucket(
    jetstream: &async_nats::jetstream::Context,
    name: &str,
    config: &GroupsConfig,
) -> Result<kv::Store, async_nats::jetstream::context::CreateKeyValueError> {
    let bucket_config = kv::Config {
        bucket: name.to_owned(),
        description:
            "Tidings: the leases of group coordinators and exclusive work, the Kafka brokers"
                .to_owned(),
        history: 1,
        max_age: config.lease_ttl,
        num_replicas: config.replicas,
        storage: async_nats::jetstream::stream::StorageType::File,
        ..kv::Config::default()
    };
    jetstream.create_key_value(bucket_config).await
}

impl ClusterGroups {
    /// `Coordinator::join`, on the group's coordinator.
    pub(crate) async fn join(
        &self,
        group: &str,
        owner: &str,
        subscription: Subscription,
        topics: &[(String, u32)],
    ) -> Result<Joined, GroupsError> {
        let call = Call::Join {
            group: group.to_owned(),
            owner: owner.to_owned(),
            subscription,
            topics: topics.to_vec(),
        };
        match self.call(call).await? {
            Answer::Joined(joined) => Ok(joined),
            other => Err(unexpected(group, &other)),
        }
    }

    /// `Coordinator::leave`, on the group's coordinator.
    pub(crate) async fn leave(
        &self,
        group: &str,
        member: &str,
        owner: &str,
        topics: &[(String, u32)],
    ) -> Result<(), GroupsError> {
        let call = Call::Leave {
            group: group.to_owned(),
            member: member.to_owned(),
            owner: owner.to_owned(),
            topics: topics.to_vec(),
        };
        self.done(group, call).await
    }

    /// `Coordinator::lease`, on the group's coordinator.
    pub(crate) async fn lease(
        &self,
        group: &str,
        member: &str,
        owner: &str,
        topics: &[(String, u32)],
    ) -> Result<Lease, GroupsError> {
        let call = Call::Lease {
            group: group.to_owned(),
            member: member.to_owned(),
            owner: owner.to_owned(),
            topics: topics.to_vec(),
        };
        match self.call(call).await? {
            Answer::Lease(lease) => Ok(lease),
            other => Err(unexpected(group, &other)),
        }
    }

    /// `Coordinator::advance`, on the group's coordinator.
    pub(crate) async fn advance(
        &self,
        group: &str,
        member: &str,
        generation: u64,
        positions: &[(TopicPartition, u64)],
    ) -> Result<(), GroupsError> {
        let call = Call::Advance {
            group: group.to_owned(),
            member: member.to_owned(),
            generation,
            positions: positions.to_vec(),
        };
        self.done(group, call).await
    }

    /// `Coordinator::check_owner`, on the group's coordinator.
    pub(crate) async fn check_owner(
        &self,
        group: &str,
        (member, owner): (&str, &str),
        partitions: &[TopicPartition],
        topics: &[(String, u32)],
    ) -> Result<(), GroupsError> {
        let call = Call::CheckOwner {
            group: group.to_owned(),
            member: member.to_owned(),
            owner: owner.to_owned(),
            partitions: partitions.to_vec(),
            topics: topics.to_vec(),
        };
        self.done(group, call).await
    }

    /// `Coordinator::describe`, on the group's coordinator.
    pub(crate) async fn describe(
        &self,
        group: &str,
        topics: &[(String, u32)],
    ) -> Result<Vec<MemberView>, GroupsError> {
        let call = Call::Describe {
            group: group.to_owned(),
            topics: Topics::from(topics),
        };
        match self.call(call).await? {
            Answer::Members(members) => Ok(members),
            other => Err(unexpected(group, &other)),
        }
    }

    async fn done(&self, group: &str, call: Call) -> Result<(), GroupsError> {
        match self.call(call).await? {
            Answer::Done => Ok(()),
            other => Err(unexpected(group, &other)),
        }
    }

    /// Runs `call` on the group's coordinator, here or forwarded; a coordinator that moved is
    /// looked up again (a few times: a lease changes hands at most once per TTL).
    async fn call(&self, call: Call) -> Result<Answer, GroupsError> {
        let group = call.group().to_owned();
        for _ in 0..3 {
            let answer = match self.route(&group).await? {
                Route::Here if self.still_coordinating(&group).await => {
                    call.clone().run_on(&self.inner.local)
                }
                Route::Here => continue,
                Route::To(node) => self.forward(&node, &call).await?,
            };
            match answer {
                Answer::NotCoordinator => continue,
                Answer::Refused(error) => return Err(GroupsError::Bus(error)),
                answer => return Ok(answer),
            }
        }
        Err(unavailable(&group, "its coordinator is changing"))
    }

    /// Who coordinates `group`: this node if it holds a fresh lease, else the bucket says,
    /// else this node takes the lease.
    async fn route(&self, group: &str) -> Result<Route, GroupsError> {
        let leases = &self.inner.leases;
        for _ in 0..3 {
            if leases.fresh(group) {
                return Ok(Route::Here);
            }
            let holder = leases
                .holder(group)
                .await
                .map_err(|e| unavailable(group, &format!("reading its lease: {e}")))?;
            match holder {
                // This node holds it in the bucket but let it go idle: renew to resume.
                Holder::Me { revision } => {
                    let _turn = leases.write_turn().await;
                    if leases.fresh(group) || self.renew_from(group, revision).await {
                        return Ok(Route::Here);
                    }
                }
                Holder::Node(node) => return Ok(Route::To(node)),
                Holder::Nobody => {
                    if self.take(group).await? {
                        return Ok(Route::Here);
                    }
                }
            }
        }
        Err(unavailable(group, "its lease keeps changing"))
    }

    /// Takes the group's free lease for this node; false if another node was first.
    async fn take(&self, group: &str) -> Result<bool, GroupsError> {
        let _turn = self.inner.leases.write_turn().await;
        match self.inner.leases.take(group).await {
            Ok(true) => {
                // A new tenure: whatever this node knew of the group from an earlier one is
                // stale (its members have rejoined elsewhere since).
                self.inner.local.forget(group);
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(error) => Err(unavailable(group, &format!("taking its lease: {error}"))),
        }
    }

    /// Whether this node may serve `group` now: its lease is fresh, or a renewal succeeds.
    async fn still_coordinating(&self, group: &str) -> bool {
        let leases = &self.inner.leases;
        if leases.fresh(group) {
            return true;
        }
        let _turn = leases.write_turn().await;
        if leases.fresh(group) {
            return true;
        }
        match leases.revision(group) {
            Some(revision) => self.renew_from(group, revision).await,
            None => false,
        }
    }

    /// Renews the lease of `group` from `revision`; call it within the leases' write turn. A
    /// renewal that fails for any reason ends this node's tenure: the lease is let go, and so
    /// is what this node knew of the group (its members rejoin wherever the lease goes).
    async fn renew_from(&self, group: &str, revision: u64) -> bool {
        if self.inner.leases.renew(group, revision).await == Renewal::Renewed {
            return true;
        }
        self.inner.leases.forget(group);
        self.inner.local.forget(group);
        false
    }

    async fn forward(&self, node: &str, call: &Call) -> Result<Answer, GroupsError> {
        let group = call.group();
        let subject = calls_subject(&self.inner.config.prefix, node);
        let payload = Bytes::from(serde_json::to_vec(call).expect("a group call serializes"));
        let request = self.inner.client.request(subject, payload);
        let reply = tokio::time::timeout(self.inner.config.call_timeout, request)
            .await
            .map_err(|_| unavailable(group, &format!("node {node} did not answer in time")))?
            .map_err(|e| unavailable(group, &format!("forwarding to node {node}: {e}")))?;
        serde_json::from_slice(&reply.payload)
            .map_err(|e| unavailable(group, &format!("node {node} answered unreadably: {e}")))
    }

    /// Answers forwarded calls and renews this node's leases until `shutdown`.
    async fn serve(self, mut calls: async_nats::Subscriber, shutdown: CancellationToken) {
        let mut renewal = tokio::time::interval(self.inner.config.lease_ttl / 3);
        renewal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                message = calls.next() => match message {
                    Some(message) => {
                        tokio::spawn(self.clone().answer(message));
                    }
                    None => return,
                },
                _ = renewal.tick() => self.renew_live().await,
            }
        }
    }

    /// Runs a forwarded call if this node coordinates its group, else says it does not.
    async fn answer(self, message: async_nats::Message) {
        let Some(reply) = message.reply.clone() else {
            return;
        };
        let answer = match serde_json::from_slice::<Call>(&message.payload) {
            Ok(call) if self.still_coordinating(call.group()).await => {
                call.run_on(&self.inner.local)
            }
            Ok(_) => Answer::NotCoordinator,
            Err(error) => {
                tracing::debug!(%error, "an unreadable group call was ignored");
                return;
            }
        };
        let payload = Bytes::from(serde_json::to_vec(&answer).expect("an answer serializes"));
        if let Err(error) = self.inner.client.publish(reply, payload).await {
            tracing::debug!(%error, "answering a forwarded group call failed");
        }
    }

    /// Renews the leases of the groups with live members; lets the others lapse (after one
    /// tick of grace: see [`HeldLeases::sweep`]).
    async fn renew_live(&self) {
        let leases = &self.inner.leases;
        let _turn = leases.write_turn().await;
        for (group, revision) in leases.sweep(&self.inner.local.groups()) {
            self.renew_from(&group, revision).await;
        }
    }

    /// Groups this node coordinates now (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn coordinating(&self) -> Vec<String> {
        self.inner.leases.names()
    }
}

fn unavailable(group: &str, reason: &str) -> GroupsError {
    GroupsError::Unavailable {
        group: group.to_owned(),
        reason: reason.to_owned(),
    }
}

fn unexpected(group: &str, answer: &Answer) -> GroupsError {
    unavailable(group, &format!("the coordinator answered {answer:?}"))
}

#[path = "groups_facade.rs"]
mod facade;
pub(crate) use facade::Groups;

#[cfg(test)]
#[path = "groups_tests.rs"]
mod tests;
