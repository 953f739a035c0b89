//! The loop every partition consumer of the pipeline runs (the store writer, the fan-out), and
//! its read that survives retention.
//!
//! [`run_until_drained`] wakes on the partition's high watermark (no timers, no polling), has
//! the consumer handle what is ready, and on shutdown drains up to the high watermark of that
//! moment before it returns. [`fetch`] reads from the consumer's position and, when retention
//! deleted records before they were handled, says where the partition now starts. What a step
//! does with the records is the consumer's business.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Result;
use crate::log::{Log, LogError, ReadLimits, StoredRecord};

/// A consumer of one partition.
pub(super) trait PartitionConsumer {
    /// The next offset it will handle.
    fn position(&self) -> u64;

    /// Handles records from [`position`](Self::position) on, not past `goal`, and moves the
    /// position forward.
    async fn step(&mut self, goal: u64) -> Result<()>;
}

/// Runs `consumer` as records arrive (`high` is the partition's high watermark) until
/// `shutdown`; then it handles everything up to the high watermark of that moment and returns.
pub(super) async fn run_until_drained(
    consumer: &mut impl PartitionConsumer,
    mut high: watch::Receiver<u64>,
    shutdown: &CancellationToken,
) -> Result<()> {
    // On cancel: the high watermark at that moment, which the consumer catches up to.
    let mut last_target: Option<u64> = None;
    loop {
        let now = *high.borrow_and_update();
        if last_target.is_none() && shutdown.is_cancelled() {
            last_target = Some(now);
        }
        let goal = last_target.unwrap_or(now);
        if consumer.position() < goal {
            consumer.step(goal).await?;
            // Other tasks run between batches even when a step never waited.
            tokio::task::yield_now().await;
            continue;
        }
        if last_target.is_some() {
            return Ok(());
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {}
            changed = high.changed() => {
                if changed.is_err() {
                    return Ok(()); // the log closed
                }
            }
        }
    }
}

/// What a read from a consumer's position found.
pub(super) enum Fetched {
    /// The records from the position on (possibly none).
    Records(Vec<StoredRecord>),
    /// Retention deleted records from the position on before they were handled; the partition
    /// now starts at `earliest`.
    Deleted {
        /// The first retained offset.
        earliest: u64,
    },
}

/// Reads `limits` worth of records of `topic`/`partition` from `next`.
pub(super) fn fetch(
    log: &Log,
    topic: &str,
    partition: u32,
    next: u64,
    limits: ReadLimits,
) -> std::result::Result<Fetched, LogError> {
    match log.read(topic, partition, next, limits) {
        Ok(records) => Ok(Fetched::Records(records)),
        Err(LogError::OffsetOutOfRange { earliest, .. }) if earliest > next => {
            Ok(Fetched::Deleted { earliest })
        }
        Err(e) => Err(e),
    }
}
