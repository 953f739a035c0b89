//! Retention: deleting the oldest whole batches by age and by size, in the background.
//!
//! Planning reads batch headers from the oldest end and stops at the first batch that stays, so
//! a run costs what it deletes, not what the partition holds. Time-based retention never passes
//! the committed offset of a group listed in the topic's `protectedGroups`; size-based retention
//! does (a full disk is worse than a lagging consumer). The deletion itself runs on the appender
//! thread, ordered with appends and topic changes.

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::appender::{now_ms, Command};
use super::batch::BatchHeader;
use super::config::TopicConfig;
use super::error::Result;
use super::partition::Partition;
use super::topics::Topic;
use super::Shared;

/// Where retention would move a partition's low watermark, if anywhere.
pub(crate) fn plan(
    topic: &Topic,
    partition: &Partition,
    config: &TopicConfig,
    protected_floor: Option<u64>,
    now_ms: i64,
) -> Result<Option<u64>> {
    if config.retention_ms.is_none() && config.retention_bytes.is_none() {
        return Ok(None);
    }
    let Some(last) = partition.last_header(&topic.name)? else {
        return Ok(None);
    };
    // Batches the syncer has not yet made durable and visible are not retention's to delete.
    let visible = partition.high();
    let mut new_low = None;
    for header in partition.batch_headers(&topic.name) {
        let header = header?;
        let expired = expired_by_time(&header, config, protected_floor, now_ms)
            || over_size(&header, &last, config);
        if !expired || header.end_offset() > visible {
            break;
        }
        new_low = Some(header.end_offset());
    }
    Ok(new_low.filter(|low| *low > partition.low()))
}

fn expired_by_time(
    header: &BatchHeader,
    config: &TopicConfig,
    floor: Option<u64>,
    now: i64,
) -> bool {
    let old = config
        .retention_ms
        .is_some_and(|ms| header.timestamp_ms < now - ms as i64);
    old && floor.is_none_or(|floor| header.end_offset() <= floor)
}

/// True while the bytes from this batch to the end exceed the size bound.
fn over_size(header: &BatchHeader, last: &BatchHeader, config: &TopicConfig) -> bool {
    config
        .retention_bytes
        .is_some_and(|limit| last.end_position() - header.base_position > limit)
}

/// The lowest committed offset among the topic's protected groups on this partition (a
/// protected group that never committed protects everything).
fn protected_floor(
    shared: &Shared,
    topic: &Topic,
    partition: u32,
    config: &TopicConfig,
) -> Result<Option<u64>> {
    let mut floor: Option<u64> = None;
    for group in &config.protected_groups {
        let committed = shared
            .groups
            .committed(group, &topic.name, partition)?
            .unwrap_or(0);
        floor = Some(floor.map_or(committed, |f| f.min(committed)));
    }
    Ok(floor)
}

/// Plans and applies retention on every partition of every topic, once.
pub(crate) fn enforce(shared: &Shared) -> Result<u64> {
    let now = now_ms();
    let mut moved = 0;
    for topic in shared.registry.list() {
        let config = topic.config();
        for partition in topic.partitions() {
            let floor = protected_floor(shared, &topic, partition.id, &config)?;
            if let Some(low) = plan(&topic, &partition, &config, floor, now)? {
                shared.registry.truncate(&topic, &partition, low)?;
                moved += 1;
            }
        }
    }
    Ok(moved)
}

/// Runs [`enforce`] on the appender thread every `interval` until `stop` fires.
pub(crate) fn spawn(
    commands: Sender<Command>,
    stop: Receiver<()>,
    interval: Duration,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tidings-log-retention".into())
        .spawn(move || loop {
            match stop.recv_timeout(interval) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            let work: super::appender::Exclusive = Box::new(|shared: &Shared| {
                if let Err(e) = enforce(shared) {
                    tracing::error!(error = %e, "retention failed");
                }
            });
            if commands.send(Command::Exclusive(work)).is_err() {
                return;
            }
        })
}
