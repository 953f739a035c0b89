//! Work that must run on one node of the cluster at a time (a `notify` worker of one partition,
//! a sink consumer): it runs while this node holds its lease, a key in the same bucket as the
//! group coordinator leases, and is told to stop as soon as the lease cannot be renewed.
//!
//! [`Exclusive::run`] takes the lease when it is free (create: one winner), runs the work with a
//! stop token, renews the lease every TTL/3 with a revision check, and cancels the token when a
//! renewal fails or when 2/3 of the TTL passed since the last successful one (timed from before
//! it was sent); the work must then finish its step and return before the lease can expire and
//! another node start it. When the work returns on its own the lease is released at once; when
//! the node dies its lease expires after the TTL and another node takes the work over. Work on
//! the log must therefore be safe to resume from the committed offset (the `notify` workers
//! are: their recovery skips what a previous owner appended).

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::kv;
use base64::Engine as _;
use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::groups::{open_bucket, GroupsConfig, GroupsStartError};
use crate::pipeline::{BoxedRun, LeasedWork, WorkLeases};

/// What a renewal did.
enum Renewal {
    /// Renewed: the new revision, and when the renewal was sent.
    Renewed(u64, Instant),
    /// The key changed under this node (expired and taken, or overwritten): lost for sure.
    TakenOver,
    /// No answer or an error: the lease may still be held until its deadline.
    Failed,
}

/// Runs work exclusively across the nodes sharing the lease bucket.
#[derive(Clone)]
pub(crate) struct Exclusive {
    leases: kv::Store,
    node: String,
    ttl: Duration,
}

impl std::fmt::Debug for Exclusive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exclusive")
            .field("node", &self.node)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A lease's key: the work's name in URL-safe base64 (any name is a valid key).
fn work_key(name: &str) -> String {
    format!(
        "x_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name)
    )
}

impl Exclusive {
    /// Opens (or creates) the lease bucket of `config`; leases last `config.lease_ttl`.
    pub(crate) async fn open(
        client: &async_nats::Client,
        config: &GroupsConfig,
    ) -> Result<Exclusive, GroupsStartError> {
        Ok(Exclusive {
            leases: open_bucket(client, config).await?,
            node: config.node_id.clone(),
            ttl: config.lease_ttl,
        })
    }

    /// Runs `work` whenever this node holds the lease `name`, until `shutdown`: each run gets a
    /// token cancelled when the lease is lost (or at shutdown) and must return soon after.
    pub(crate) async fn run<F, Fut>(&self, name: &str, shutdown: CancellationToken, mut work: F)
    where
        F: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        let key = work_key(name);
        while let Some((revision, taken)) = self.acquire(&key, &shutdown).await {
            tracing::info!(work = name, "this node runs the exclusive work");
            let stop = shutdown.child_token();
            let still_held = self
                .hold(&key, (revision, taken), &stop, work(stop.clone()))
                .await;
            if let Some(revision) = still_held {
                self.release(&key, revision).await;
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    }

    /// Waits until this node takes the lease (its revision and when it was taken), or
    /// `None` at shutdown.
    async fn acquire(&self, key: &str, shutdown: &CancellationToken) -> Option<(u64, Instant)> {
        let retry = self.ttl / 3;
        loop {
            let before = Instant::now();
            match self
                .leases
                .create(key, Bytes::from(self.node.clone()))
                .await
            {
                Ok(revision) => return Some((revision, before)),
                Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(error) => tracing::debug!(%error, "taking an exclusive lease failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(retry) => {}
            }
        }
    }

    /// Runs `work` while renewing the lease; returns the lease's revision if it is still held
    /// when the work returned (to release it), `None` if it was lost.
    async fn hold(
        &self,
        key: &str,
        (mut revision, mut renewed): (u64, Instant),
        stop: &CancellationToken,
        work: impl Future<Output = ()>,
    ) -> Option<u64> {
        let serve_for = self.ttl * 2 / 3;
        let mut work = std::pin::pin!(work);
        let mut tick = tokio::time::interval(self.ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut held = true;
        loop {
            tokio::select! {
                () = &mut work => return held.then_some(revision),
                _ = tick.tick(), if held => {
                    match self.renew(key, revision).await {
                        Renewal::Renewed(next, at) => (revision, renewed) = (next, at),
                        Renewal::Failed if renewed.elapsed() < serve_for => {}
                        Renewal::Failed | Renewal::TakenOver => {
                            tracing::warn!(key, "exclusive lease lost: stopping its work");
                            held = false;
                            stop.cancel();
                        }
                    }
                }
            }
        }
    }

    /// One renewal, bounded so a hung request cannot keep the work running past its lease.
    async fn renew(&self, key: &str, revision: u64) -> Renewal {
        let before = Instant::now();
        let update = self
            .leases
            .update(key, Bytes::from(self.node.clone()), revision);
        match tokio::time::timeout(self.ttl / 3, update).await {
            Ok(Ok(next)) => Renewal::Renewed(next, before),
            Ok(Err(error)) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Renewal::TakenOver
            }
            Ok(Err(error)) => {
                tracing::debug!(key, %error, "renewing an exclusive lease failed");
                Renewal::Failed
            }
            Err(_) => Renewal::Failed,
        }
    }

    async fn release(&self, key: &str, revision: u64) {
        if let Err(error) = self
            .leases
            .delete_expect_revision(key, Some(revision))
            .await
        {
            tracing::debug!(key, %error, "releasing an exclusive lease failed; it will expire");
        }
    }
}

/// The server's supervised consumers (`notify`, the sinks) run by lease on a cluster.
impl WorkLeases for Exclusive {
    fn run_exclusive(
        &self,
        name: String,
        shutdown: CancellationToken,
        work: LeasedWork,
    ) -> BoxedRun {
        let exclusive = self.clone();
        Box::pin(async move { exclusive.run(&name, shutdown, work).await })
    }
}

#[cfg(test)]
#[path = "groups_exclusive_tests.rs"]
mod tests;
