//! Retention on the cluster is JetStream's own (each stream's `max_age` / `max_bytes`); this
//! pass only brings the node's replicas in line with it: it reads each stream's first sequence
//! and drops the replica's records below it, and notes the streams' size for `disk_bytes`.
//!
//! Runs every `retention_interval` until the log shuts down, and on demand
//! (`enforce_retention`). It deletes nothing on the cluster.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{names, unavailable, Inner};
use crate::log::Result;

/// Starts the periodic pass; it stops with the log.
pub(super) fn spawn(inner: &Arc<Inner>) {
    let inner = inner.clone();
    tokio::spawn(async move {
        let stop = inner.shutdown.clone();
        let mut every = tokio::time::interval(inner.config.retention_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {
                    if let Err(error) = inner.enforce_retention().await {
                        tracing::warn!(%error, "could not bring the replicas in line with retention");
                    }
                }
            }
        }
    });
}

impl Inner {
    /// Trims every replica to its stream's retained range; how many partitions moved their low
    /// watermark.
    pub(super) async fn enforce_retention(&self) -> Result<u64> {
        self.check_open()?;
        let mut moved = 0;
        let mut bytes = 0;
        for (_, topic) in self.registry.all() {
            for (partition, replica) in topic.replicas.iter().enumerate() {
                let name = names::stream(
                    &self.config.namespace,
                    &topic.meta.incarnation,
                    partition as u32,
                );
                let stream = self
                    .js
                    .get_stream(&name)
                    .await
                    .map_err(|e| unavailable(format!("stream {name}"), e))?;
                let info = stream.cached_info();
                bytes += info.state.bytes;
                replica.set_stream_bytes(info.state.bytes);
                let low = info.state.first_sequence.max(1) - 1;
                moved += u64::from(replica.trim_to(low));
            }
        }
        self.stream_bytes.store(bytes, Ordering::Relaxed);
        Ok(moved)
    }
}
