//! The exactly-once relay of the store writer's events to `messages.sent`.
//!
//! After a batch is applied, its events ([`Store::batch_events`]) are appended to the same
//! partition number of `messages.sent` (same key hash and partition count, so the partition a
//! producer's key would pick too), each with the header `tidings-source-offset`; only then does
//! the writer commit the batch's offset and delete the batch's outbox entries. A crash before
//! the commit replays the batch, which makes its events again: the writer keeps the "relayed up
//! to" source offset in memory ([`Relayed`]) and [`relay`] skips events at or below it. On
//! start, [`recover`] reads that offset from the last event of the partition and deletes the
//! outbox entries at or below it. So a crash at any point neither loses nor duplicates an event.
//!
//! On a log shared by several nodes (`--cluster`), each node's writer applies every command and
//! makes the same events: before relaying, a writer skips what the partition's last event says
//! was relayed already (by any node), and each event carries an idempotency key (source
//! partition, offset and rank) so that two nodes relaying the same batch at once store it once.
//!
//! Limit: if retention emptied the partition of `messages.sent`, recovery cannot tell what was
//! relayed and a replayed batch relays all its events (possibly a duplicate, never a loss).

use super::{Result, EVENTS_TOPIC, SOURCE_OFFSET_HEADER};
use crate::log::{Log, ReadLimits, Record, StoredRecord, IDEMPOTENCY_HEADER};
use crate::store::{OutboxEntry, Store};

/// How far back recovery looks for a record that carries the source-offset header.
const RECOVERY_LOOKBACK: u64 = 1000;

/// The highest source offset whose events are in `messages.sent` (`None`: unknown, nothing
/// relayed yet or the partition was emptied by retention).
pub(super) type Relayed = Option<u64>;

/// Appends the events above `relayed` to their partition of `messages.sent`; moves `relayed`
/// to the last one appended.
pub(super) async fn relay(
    log: &Log,
    partition: u32,
    events: &[OutboxEntry],
    relayed: &mut Relayed,
) -> Result<()> {
    // On a log shared by several nodes (`--cluster`) every node's writer makes the same events;
    // whichever relayed them first, the others skip them.
    let shared = log.is_shared();
    if shared {
        if let Some(elsewhere) = last_relayed_source_offset(log, partition)? {
            *relayed = Some(relayed.map_or(elsewhere, |mine| mine.max(elsewhere)));
        }
    }
    let fresh: Vec<&OutboxEntry> = events
        .iter()
        .filter(|e| relayed.is_none_or(|r| e.source_offset > r))
        .collect();
    if fresh.len() < events.len() && !shared {
        tracing::info!(
            partition,
            skipped = events.len() - fresh.len(),
            "events made again by a replay were relayed already"
        );
    }
    let Some(last) = fresh.iter().map(|e| e.source_offset).max() else {
        return Ok(());
    };
    let mut nth = 0;
    let mut previous = None;
    let records = fresh
        .iter()
        .map(|e| {
            nth = if previous == Some(e.source_offset) {
                nth + 1
            } else {
                0
            };
            previous = Some(e.source_offset);
            let record = Record::keyed(e.conversation_id.as_bytes(), e.payload.clone())
                .with_header(SOURCE_OFFSET_HEADER, e.source_offset.to_string());
            if shared {
                // Two nodes relaying the same batch at once: the cluster log stores it once.
                record.with_header(
                    IDEMPOTENCY_HEADER,
                    format!("{partition}/{}/{nth}", e.source_offset),
                )
            } else {
                record
            }
        })
        .collect();
    // Lingering: a client waits on the command's sync, not on this one.
    log.append_lingering(EVENTS_TOPIC, partition, records)
        .await?;
    *relayed = Some(last);
    Ok(())
}

/// On start: forgets the outbox entries already relayed and returns how far the partition is
/// relayed. The entries left belong to the batch the writer replays next.
pub(super) fn recover(log: &Log, store: &Store, partition: u32) -> Result<Relayed> {
    let last = last_relayed_source_offset(log, partition)?;
    if let Some(relayed) = last {
        let removed = store.remove_events_through(partition, relayed)?;
        if removed > 0 {
            tracing::info!(
                partition,
                removed,
                "outbox entries were relayed before a restart"
            );
        }
    }
    Ok(last)
}

/// The source offset of the newest event of the partition that carries one.
fn last_relayed_source_offset(log: &Log, partition: u32) -> Result<Option<u64>> {
    let (low, high) = log.watermarks(EVENTS_TOPIC, partition)?;
    let mut offset = high;
    while offset > low && high - offset < RECOVERY_LOOKBACK {
        offset -= 1;
        let records = log.read(EVENTS_TOPIC, partition, offset, ReadLimits::records(1))?;
        if let Some(source) = records.first().and_then(source_offset) {
            return Ok(Some(source));
        }
    }
    Ok(None)
}

/// The source offset an event carries (its command's offset in `messages`).
pub(super) fn source_offset(record: &StoredRecord) -> Option<u64> {
    record
        .headers
        .iter()
        .find(|h| h.key == SOURCE_OFFSET_HEADER)
        .and_then(|h| std::str::from_utf8(&h.value).ok())
        .and_then(|s| s.parse().ok())
}
