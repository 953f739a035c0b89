//! The loop every pipeline consumer shares: follow one partition's high watermark and hand each
//! new range to the consumer's step, without timers or polling.
//!
//! On shutdown the consumer catches up to the high watermark of that moment and then returns, so
//! whatever was appended before the signal is handled before the server stops. What a step does
//! (apply to the store, produce notifications, deliver) is the consumer's business; [`read_ready`]
//! is how each step reads.

use tokio_util::sync::CancellationToken;

use super::Result;
use crate::log::{Log, LogError, ReadLimits, StoredRecord};

/// A consumer of one partition, driven by [`follow`].
pub(super) trait PartitionConsumer {
    /// The next offset the consumer has not handled yet.
    fn next_offset(&self) -> u64;

    /// Handles records from [`next_offset`](Self::next_offset) on, not past `goal`, and moves
    /// the next offset forward.
    async fn step(&mut self, goal: u64) -> Result<()>;
}

/// Runs `consumer` on `topic`/`partition` until `shutdown` is cancelled (then catches up to the
/// high watermark of that moment) or the log closes.
pub(super) async fn follow(
    log: &Log,
    topic: &str,
    partition: u32,
    consumer: &mut impl PartitionConsumer,
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut high = log.subscribe(topic, partition)?;
    // On cancel: the high watermark at that moment, which the consumer catches up to.
    let mut last_target: Option<u64> = None;
    loop {
        let now = *high.borrow_and_update();
        if last_target.is_none() && shutdown.is_cancelled() {
            last_target = Some(now);
        }
        let goal = last_target.unwrap_or(now);
        if consumer.next_offset() < goal {
            consumer.step(goal).await?;
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

/// Reads the records of `topic`/`partition` from `*next` on, within `limits` and not past
/// `goal`. If retention deleted records before `consumer` (named in the error log) got to them,
/// `*next` jumps to the earliest retained offset and the answer is empty: those records are
/// gone, and the consumer goes on from there.
pub(super) fn read_ready(
    log: &Log,
    (topic, partition): (&str, u32),
    next: &mut u64,
    goal: u64,
    limits: ReadLimits,
    consumer: &str,
) -> Result<Vec<StoredRecord>> {
    let wanted = usize::try_from(goal.saturating_sub(*next)).unwrap_or(usize::MAX);
    let limits = ReadLimits {
        max_records: limits.max_records.min(wanted),
        ..limits
    };
    match log.read(topic, partition, *next, limits) {
        Ok(records) => Ok(records),
        Err(LogError::OffsetOutOfRange { earliest, .. }) if earliest > *next => {
            tracing::error!(
                topic,
                partition,
                from = *next,
                to = earliest,
                consumer,
                "records deleted by retention before the consumer read them"
            );
            *next = earliest;
            Ok(Vec::new())
        }
        Err(e) => Err(e.into()),
    }
}
