//! Kafka on a cluster: every node's Kafka listener is one broker of the cluster, and every
//! Kafka consumer group has one coordinator at a time, the node holding the group's lease.
//!
//! - **Brokers.** A node's broker id is derived from its node id (a 31-bit hash, never 0, so
//!   stable for the node and distinct across nodes but for a 1 in 2^31 clash, which is logged).
//!   Each node registers its advertised Kafka address under `kb_<id>` in the lease bucket
//!   (`{prefix}_group_coordinators`, whose `max_age` is the lease TTL) and renews it every
//!   TTL/3, so a dead node's broker disappears within a TTL; each node reads the others'
//!   registrations on the same tick, and follows the bucket's changes in between, so that a
//!   node registering or leaving shows in every node's Metadata at once. (Clients drop a
//!   broker a Metadata answer leaves out: one node listing itself alone while another lists
//!   both made librdkafka drop the second node mid-request and wait for metadata that never
//!   came.)
//! - **Coordinators.** A Kafka group's lease is the key `k_<base64(group)>` in the same bucket,
//!   holding the coordinator's node id, taken with a create (one winner) by the first node asked
//!   for a group without one, renewed every TTL/3 (revision-checked) while the group lives on
//!   that node, left to lapse when it ends. A node serves a group only within 2/3 of the TTL
//!   after its last successful renewal (timed from before it was sent), else it renews first;
//!   a renewal refused for a changed revision means the lease is lost, so that two nodes never
//!   run one group at once (the leases are kept by `leases`, as the HTTP groups' are).
//!
//! This module knows nothing of the Kafka protocol (that is `kafka`, which asks it who
//! coordinates a group and whether this node may serve one) nor of the HTTP groups.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::kv;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::leases::{HeldLeases, Holder, Renewal};

/// The lease bucket a node shares with the others, as the Kafka listener needs it.
#[derive(Clone)]
pub(crate) struct LeaseBucket {
    /// The bucket (`{prefix}_group_coordinators`).
    pub(crate) store: kv::Store,
    /// This node's id.
    pub(crate) node: String,
    /// The bucket's `max_age`: how long a lease or a registration lives unrenewed.
    pub(crate) ttl: Duration,
}

impl std::fmt::Debug for LeaseBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseBucket")
            .field("node", &self.node)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A Kafka broker as Metadata and FindCoordinator show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrokerAddress {
    /// Its node id in Kafka's terms.
    pub(crate) id: i32,
    /// Host clients connect to.
    pub(crate) host: String,
    /// Port clients connect to.
    pub(crate) port: i32,
}

/// A node's registration, as stored under `kb_<id>`.
#[derive(Debug, Serialize, Deserialize)]
struct Registration {
    node: String,
    host: String,
    port: i32,
}

/// Whether this node may serve a group now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coordinating {
    /// Yes, as before.
    Yes,
    /// Yes, from now on: whatever this node knew of the group from an earlier tenure is stale.
    NewTenure,
    /// Not now: this node's lease could not be renewed in time and its last renewal is stale;
    /// it may still hold it (keep the group, the next renewal tells).
    NotNow,
    /// No: another node holds the lease, or this node lost it (and must drop the group).
    No,
}

/// The Kafka brokers and group leases of a node on a cluster.
pub(crate) struct KafkaBrokers {
    bucket: LeaseBucket,
    me: BrokerAddress,
    /// The Kafka groups' leases this node holds.
    leases: HeldLeases,
    /// The other nodes' brokers, as last read from the bucket or seen change in it.
    others: Mutex<BTreeMap<i32, Known>>,
}

/// Another node's broker as this node last learnt of it.
#[derive(Debug, Clone)]
struct Known {
    /// Its address; `None` once it left (kept until a read of the bucket agrees, so that a
    /// read begun before it left does not bring it back).
    address: Option<BrokerAddress>,
    /// When this was learnt.
    learnt: Instant,
}

impl std::fmt::Debug for KafkaBrokers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBrokers")
            .field("me", &self.me)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// The broker id of a node: FNV-1a of its id, in `1..=i32::MAX`.
pub(crate) fn broker_id(node: &str) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in node.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    i32::try_from(hash & 0x7fff_ffff).unwrap_or(i32::MAX).max(1)
}

fn registration_key(id: i32) -> String {
    format!("kb_{id}")
}

/// A Kafka group's lease key (the HTTP groups' are `g_…`, exclusive work's `x_…`).
fn group_key(group: &str) -> String {
    format!(
        "k_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(group)
    )
}

impl KafkaBrokers {
    /// This node's broker, advertised at `host:port`, on `bucket`.
    pub(crate) fn new(bucket: LeaseBucket, host: String, port: i32) -> KafkaBrokers {
        let me = BrokerAddress {
            id: broker_id(&bucket.node),
            host,
            port,
        };
        let leases = HeldLeases::new(
            bucket.store.clone(),
            bucket.node.clone(),
            bucket.ttl,
            group_key,
            // A renewal that takes longer than the renewal period fails without losing the
            // lease: the group is served again once a renewal gets through (`NotNow`).
            "Kafka group",
            Some(bucket.ttl / 3),
        );
        KafkaBrokers {
            bucket,
            me,
            leases,
            others: Mutex::new(BTreeMap::new()),
        }
    }

    /// This node's broker.
    pub(crate) fn me(&self) -> &BrokerAddress {
        &self.me
    }

    /// How often registrations and leases are renewed: a third of the TTL.
    pub(crate) fn renew_every(&self) -> Duration {
        self.bucket.ttl / 3
    }

    /// Every live broker as last learnt (this one first).
    pub(crate) fn brokers(&self) -> Vec<BrokerAddress> {
        let mut brokers = vec![self.me.clone()];
        brokers.extend(
            self.others
                .lock()
                .values()
                .filter_map(|k| k.address.clone()),
        );
        brokers
    }

    /// Records what this node learnt of broker `id` (`None`: it left).
    fn learn(&self, id: i32, address: Option<BrokerAddress>) {
        let known = Known {
            address,
            learnt: Instant::now(),
        };
        self.others.lock().insert(id, known);
    }

    /// Registers this node's broker (again) and reads the others'; a failure is logged and
    /// the previous view kept until the next tick.
    pub(crate) async fn refresh_brokers(&self) {
        let registration = Registration {
            node: self.bucket.node.clone(),
            host: self.me.host.clone(),
            port: self.me.port,
        };
        let value = Bytes::from(serde_json::to_vec(&registration).expect("serializes"));
        if let Err(error) = self
            .bucket
            .store
            .put(registration_key(self.me.id), value)
            .await
        {
            tracing::warn!(%error, "kafka: registering this node's broker failed");
        }
        let started = Instant::now();
        match self.read_brokers().await {
            Ok(read) => self.merge_read(read, started),
            Err(error) => tracing::debug!(%error, "kafka: reading the brokers failed"),
        }
    }

    /// Takes in the brokers a read of the bucket begun at `started` found live: what changed
    /// since (seen by [`follow_brokers`](Self::follow_brokers)) stands, what the read did not
    /// find and nothing told since is gone (its registration expired).
    fn merge_read(&self, read: BTreeMap<i32, BrokerAddress>, started: Instant) {
        let mut others = self.others.lock();
        for (id, address) in read {
            if others.get(&id).is_some_and(|k| k.learnt > started) {
                continue;
            }
            let known = Known {
                address: Some(address),
                learnt: started,
            };
            others.insert(id, known);
        }
        others.retain(|_, known| known.learnt >= started);
    }

    /// Until `shutdown`: follows the bucket's changes to the brokers' registrations, so that
    /// a node registering or leaving shows here at once rather than at the next refresh. The
    /// watch is opened again after a renewal period if it fails (the refresh goes on).
    pub(crate) async fn follow_brokers(&self, shutdown: &CancellationToken) {
        loop {
            match self.bucket.store.watch_all().await {
                Ok(mut changes) => loop {
                    let change = tokio::select! {
                        () = shutdown.cancelled() => return,
                        change = changes.next() => change,
                    };
                    match change {
                        Some(Ok(entry)) => self.take_change(&entry),
                        Some(Err(error)) => {
                            tracing::debug!(%error, "kafka: watching the brokers failed");
                            break;
                        }
                        None => break,
                    }
                },
                Err(error) => tracing::debug!(%error, "kafka: watching the brokers failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.renew_every()) => {}
            }
        }
    }

    /// One change in the bucket: a broker registered (again) or left; other keys are leases.
    fn take_change(&self, entry: &kv::Entry) {
        let Some(id) = entry.key.strip_prefix("kb_").and_then(|id| id.parse().ok()) else {
            return;
        };
        if id == self.me.id {
            return;
        }
        if entry.operation != kv::Operation::Put {
            self.learn(id, None);
            return;
        }
        match serde_json::from_slice::<Registration>(&entry.value) {
            Ok(registration) => self.learn(
                id,
                Some(BrokerAddress {
                    id,
                    host: registration.host,
                    port: registration.port,
                }),
            ),
            Err(error) => tracing::debug!(id, %error, "kafka: an unreadable broker registration"),
        }
    }

    async fn read_brokers(&self) -> Result<BTreeMap<i32, BrokerAddress>, String> {
        let mut keys = self.bucket.store.keys().await.map_err(|e| e.to_string())?;
        let mut others = BTreeMap::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| e.to_string())?;
            let Some(id) = key.strip_prefix("kb_").and_then(|id| id.parse().ok()) else {
                continue;
            };
            // This node's own entry is read too: that is where a clash of ids shows.
            let broker = self.read_broker(id).await?;
            if let Some(broker) = broker.filter(|_| id != self.me.id) {
                others.insert(id, broker);
            }
        }
        Ok(others)
    }

    /// Broker `id`'s registration, if it is live.
    async fn read_broker(&self, id: i32) -> Result<Option<BrokerAddress>, String> {
        let Some(value) = self
            .bucket
            .store
            .get(registration_key(id))
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let registration: Registration =
            serde_json::from_slice(&value).map_err(|e| format!("broker {id}: {e}"))?;
        if registration.node != self.bucket.node && id == self.me.id {
            tracing::error!(
                node = %registration.node,
                id,
                "kafka: another node has this node's broker id; give one a different cluster.nodeId"
            );
        }
        Ok(Some(BrokerAddress {
            id,
            host: registration.host,
            port: registration.port,
        }))
    }

    /// FindCoordinator: the broker of the node holding `group`'s lease; this one if nobody
    /// does (it takes the lease). An error says why no live coordinator can be named now (its
    /// node died and the lease has not expired yet, or NATS cannot be reached).
    pub(crate) async fn find(&self, group: &str) -> Result<BrokerAddress, String> {
        for _ in 0..3 {
            if self.leases.fresh(group) {
                return Ok(self.me.clone());
            }
            let holder = self
                .leases
                .holder(group)
                .await
                .map_err(|e| format!("reading the lease: {e}"))?;
            match holder {
                Holder::Node(holder) => return self.broker_of(&holder).await,
                Holder::Me { .. } | Holder::Nobody => {
                    if self.serves(group).await {
                        return Ok(self.me.clone());
                    }
                }
            }
        }
        Err("its lease keeps changing".to_owned())
    }

    async fn serves(&self, group: &str) -> bool {
        matches!(
            self.coordinates(group).await,
            Coordinating::Yes | Coordinating::NewTenure
        )
    }

    /// The live broker of node `holder`, remembered for Metadata (a client looks the
    /// coordinator up among the brokers it knows).
    async fn broker_of(&self, holder: &str) -> Result<BrokerAddress, String> {
        let id = broker_id(holder);
        let broker = self
            .read_broker(id)
            .await?
            .ok_or_else(|| format!("its coordinator {holder} has no live Kafka listener"))?;
        self.learn(id, Some(broker.clone()));
        Ok(broker)
    }

    /// Whether this node may serve `group` now: its lease is fresh, or renewed now, or free
    /// and taken now.
    pub(crate) async fn coordinates(&self, group: &str) -> Coordinating {
        if self.leases.fresh(group) {
            return Coordinating::Yes;
        }
        let _turn = self.leases.write_turn().await;
        if self.leases.fresh(group) {
            return Coordinating::Yes;
        }
        if let Some(revision) = self.leases.revision(group) {
            return match self.leases.renew(group, revision).await {
                Renewal::Renewed => Coordinating::Yes,
                Renewal::Failed => Coordinating::NotNow,
                Renewal::Lost => Coordinating::No,
            };
        }
        self.take_or_resume(group).await
    }

    /// For a group this node does not hold: takes a free lease, or resumes one the bucket
    /// still gives to this node (it went idle here and was forgotten).
    async fn take_or_resume(&self, group: &str) -> Coordinating {
        let holder = match self.leases.holder(group).await {
            Ok(holder) => holder,
            Err(error) => {
                tracing::debug!(group, %error, "kafka: reading a group lease failed");
                return Coordinating::No;
            }
        };
        match holder {
            Holder::Me { revision } => match self.leases.renew(group, revision).await {
                Renewal::Renewed => Coordinating::NewTenure,
                Renewal::Failed | Renewal::Lost => Coordinating::No,
            },
            Holder::Node(_) => Coordinating::No,
            Holder::Nobody => match self.leases.take(group).await {
                Ok(true) => Coordinating::NewTenure,
                Ok(false) => Coordinating::No,
                Err(error) => {
                    tracing::debug!(group, %error, "kafka: taking a group lease failed");
                    Coordinating::No
                }
            },
        }
    }

    /// Renews the leases of the groups in `live` (sorted) this node holds, lets the others
    /// lapse (after one tick of grace: see [`HeldLeases::sweep`]); returns the groups whose
    /// lease was lost (to be dropped).
    pub(crate) async fn renew_held(&self, live: &[String]) -> Vec<String> {
        let _turn = self.leases.write_turn().await;
        let mut lost = Vec::new();
        for (group, revision) in self.leases.sweep(live) {
            if self.leases.renew(&group, revision).await == Renewal::Lost {
                lost.push(group);
            }
        }
        lost
    }

    /// On a graceful stop: the held leases and the registration are deleted, so that the
    /// other nodes take over at once rather than after a TTL.
    pub(crate) async fn leave(&self) {
        self.leases.release_all().await;
        if let Err(error) = self.bucket.store.delete(registration_key(self.me.id)).await {
            tracing::debug!(%error, "kafka: unregistering this node's broker failed");
        }
    }

    /// Groups this node holds the lease of (for tests).
    #[cfg(test)]
    pub(crate) fn holding(&self) -> Vec<String> {
        self.leases.names()
    }
}
/// The lease bucket of `prefix` on `client` as node `node` would open it (TTL 5 s, one
/// replica), for the Kafka listener's tests.
#[cfg(test)]
pub(crate) async fn test_bucket(
    client: &async_nats::Client,
    prefix: &str,
    node: &str,
) -> LeaseBucket {
    let config = super::groups::GroupsConfig {
        prefix: prefix.to_owned(),
        replicas: 1,
        ..super::groups::GroupsConfig::new(node)
    };
    LeaseBucket {
        store: super::groups::open_bucket(client, &config)
            .await
            .expect("the lease bucket opens"),
        node: node.to_owned(),
        ttl: config.lease_ttl,
    }
}

#[cfg(test)]
#[path = "kafka_brokers_tests.rs"]
mod tests;
