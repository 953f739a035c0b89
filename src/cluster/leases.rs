//! The named leases one node holds in the cluster's lease bucket (`{prefix}_group_coordinators`,
//! whose `max_age` is the lease TTL): who holds one, taking a free one (a create: one winner),
//! renewing one (an update checked against the revision this node last wrote, with a deadline),
//! and whether its last renewal is recent enough to act on: within 2/3 of the TTL, timed from
//! before the renewal was sent, so a node never acts on a lease the bucket may have let expire
//! (while the nodes' clocks run at the same rate).
//!
//! The HTTP groups (`groups`) and the Kafka group coordinators (`kafka_brokers`) keep their
//! leases here; what a lease protects, and when to renew it or let it lapse, is theirs. Work run
//! on one node at a time (`groups_exclusive`) holds a single lease per run in its own loop.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::time::Instant;

/// Who holds a lease, as the bucket says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Holder {
    /// Nobody: it is free to take.
    Nobody,
    /// This node, at this revision (perhaps no longer in [`HeldLeases`]: it went idle here).
    Me {
        /// The entry's revision, to renew from.
        revision: u64,
    },
    /// Another node.
    Node(String),
}

/// What a renewal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// Renewed: fresh again.
    Renewed,
    /// The key changed under this node (expired, taken, or renewed by a write this node did not
    /// see answered): the lease is gone for sure and no longer held.
    Lost,
    /// No answer in time, or another error: the lease may still be held, until its last renewal
    /// is stale; the next renewal tells.
    Failed,
}

/// A lease this node holds: its revision, when the write that made it was sent, and whether
/// the last [`sweep`](HeldLeases::sweep) found it idle.
#[derive(Debug, Clone, Copy)]
struct Held {
    revision: u64,
    renewed: Instant,
    idle_at_last_sweep: bool,
}

/// The leases of one kind (one key scheme) this node holds.
pub(crate) struct HeldLeases {
    store: kv::Store,
    node: String,
    ttl: Duration,
    /// The bucket key of a lease's name.
    key: fn(&str) -> String,
    /// What the leases are of, for the log ("Kafka group", "HTTP consumer group").
    what: &'static str,
    /// How long a renewal may take before it counts as failed (`None`: as long as NATS takes).
    renew_deadline: Option<Duration>,
    held: Mutex<HashMap<String, Held>>,
    /// One lease write of this node at a time: two renewals from one revision would make the
    /// second fail and look like a lost lease.
    writes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for HeldLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldLeases")
            .field("node", &self.node)
            .field("ttl", &self.ttl)
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl HeldLeases {
    /// The leases node `node` holds in `store` (whose `max_age` is `ttl`), under the keys `key`
    /// makes of their names; a renewal fails after `renew_deadline` if one is given.
    pub(crate) fn new(
        store: kv::Store,
        node: String,
        ttl: Duration,
        key: fn(&str) -> String,
        what: &'static str,
        renew_deadline: Option<Duration>,
    ) -> HeldLeases {
        HeldLeases {
            store,
            node,
            ttl,
            key,
            what,
            renew_deadline,
            held: Mutex::new(HashMap::new()),
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether this node's lease `name` was renewed recently enough to act on it.
    pub(crate) fn fresh(&self, name: &str) -> bool {
        let act_for = self.ttl * 2 / 3;
        self.held
            .lock()
            .get(name)
            .is_some_and(|held| held.renewed.elapsed() < act_for)
    }

    /// Makes this node's record of lease `name` stale, as if its last renewal were 2/3 of the
    /// TTL earlier than it was; the bucket's entry is untouched.
    #[cfg(test)]
    pub(crate) fn backdate(&self, name: &str) {
        if let Some(held) = self.held.lock().get_mut(name) {
            held.renewed = held
                .renewed
                .checked_sub(self.ttl * 2 / 3)
                .expect("the machine has been up longer than a test TTL");
        }
    }

    /// The revision of this node's lease `name`, if it holds it.
    pub(crate) fn revision(&self, name: &str) -> Option<u64> {
        self.held.lock().get(name).map(|held| held.revision)
    }

    /// The names of the leases this node holds, sorted (for tests).
    #[cfg(test)]
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.held.lock().keys().cloned().collect();
        names.sort();
        names
    }

    /// Stops counting lease `name` as held (it lapses in the bucket unless renewed).
    pub(crate) fn forget(&self, name: &str) {
        self.held.lock().remove(name);
    }

    /// Waits for this node's turn to write a lease. Hold it across a freshness check and the
    /// write it decides on, so that two tasks do not renew from one revision.
    pub(crate) async fn write_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Who holds lease `name`, as the bucket says now.
    pub(crate) async fn holder(&self, name: &str) -> Result<Holder, kv::EntryError> {
        let entry = self.store.entry((self.key)(name)).await?;
        Ok(match entry.filter(|e| e.operation == kv::Operation::Put) {
            None => Holder::Nobody,
            Some(entry) if entry.value.as_ref() == self.node.as_bytes() => Holder::Me {
                revision: entry.revision,
            },
            Some(entry) => Holder::Node(String::from_utf8_lossy(&entry.value).into_owned()),
        })
    }

    /// The names of every lease in the bucket, held here or elsewhere, that `name_of` makes a
    /// name of (the inverse of the key scheme), sorted.
    pub(crate) async fn all_names(
        &self,
        name_of: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, String> {
        let mut keys = self.store.keys().await.map_err(|e| e.to_string())?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.extend(name_of(&key.map_err(|e| e.to_string())?));
        }
        names.sort();
        Ok(names)
    }

    /// Takes the free lease `name`; `Ok(false)` if another node was first.
    pub(crate) async fn take(&self, name: &str) -> Result<bool, kv::CreateError> {
        let before = Instant::now();
        let node = Bytes::from(self.node.clone());
        match self.store.create((self.key)(name), node).await {
            Ok(revision) => {
                self.hold(name, revision, before);
                tracing::info!(lease = name, what = self.what, "this node took the lease");
                Ok(true)
            }
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Renews lease `name` from `revision` (the one this node last wrote or read), within the
    /// renewal deadline if there is one. Call it within a [`write_turn`](Self::write_turn).
    pub(crate) async fn renew(&self, name: &str, revision: u64) -> Renewal {
        let before = Instant::now();
        let node = Bytes::from(self.node.clone());
        let update = self.store.update((self.key)(name), node, revision);
        let updated = match self.renew_deadline {
            Some(deadline) => tokio::time::timeout(deadline, update).await,
            None => Ok(update.await),
        };
        match updated {
            Ok(Ok(revision)) => {
                self.hold(name, revision, before);
                Renewal::Renewed
            }
            Ok(Err(error)) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                tracing::warn!(lease = name, what = self.what, "this node lost the lease");
                self.forget(name);
                Renewal::Lost
            }
            outcome => {
                let error = match outcome {
                    Ok(Err(error)) => error.to_string(),
                    _ => "no answer in time".to_owned(),
                };
                let what = self.what;
                tracing::debug!(lease = name, what, %error, "renewing the lease failed");
                Renewal::Failed
            }
        }
    }

    /// The renewal tick's choice: lets go of the leases that are not in `live` (sorted) now and
    /// were not at the last sweep either, and returns the names and revisions of the live ones,
    /// to renew. A lease gets one sweep of grace because what makes it live comes after it is
    /// taken or checked: a call that has just taken a group's lease adds its member a moment
    /// later, and a sweep in between must not let the lease go under the member. Call it within
    /// a [`write_turn`](Self::write_turn).
    pub(crate) fn sweep(&self, live: &[String]) -> Vec<(String, u64)> {
        let mut to_renew = Vec::new();
        self.held.lock().retain(|name, held| {
            if live.binary_search(name).is_ok() {
                held.idle_at_last_sweep = false;
                to_renew.push((name.clone(), held.revision));
                return true;
            }
            let keep = !held.idle_at_last_sweep;
            held.idle_at_last_sweep = true;
            keep
        });
        to_renew
    }

    /// Deletes every lease this node holds (each only if it is still this node's revision), so
    /// that other nodes take over at once rather than after a TTL.
    pub(crate) async fn release_all(&self) {
        let _turn = self.write_turn().await;
        let held: Vec<(String, Held)> = self.held.lock().drain().collect();
        for (name, held) in held {
            let deleted = self
                .store
                .delete_expect_revision((self.key)(&name), Some(held.revision))
                .await;
            if let Err(error) = deleted {
                let what = self.what;
                tracing::debug!(lease = name, what, %error, "releasing the lease failed");
            }
        }
    }

    /// Records a take or a renewal; a renewal keeps what the last sweep found.
    fn hold(&self, name: &str, revision: u64, renewed: Instant) {
        self.held
            .lock()
            .entry(name.to_owned())
            .and_modify(|held| {
                held.revision = revision;
                held.renewed = renewed;
            })
            .or_insert(Held {
                revision,
                renewed,
                idle_at_last_sweep: false,
            });
    }
}
