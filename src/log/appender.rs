//! The group-commit appender: the one thread that writes the log.
//!
//! Producers on any thread or task send commands over a bounded `crossbeam-channel`. The thread
//! takes the first command, then everything else already waiting (up to `max_group_records`),
//! writes one record batch per partition touched, makes the group durable with one flush and one
//! `fdatasync`, publishes the new high watermarks and completes every waiter. Under load the
//! group grows; the number of syncs does not. Topic changes and retention deletes also run here
//! ("exclusive" commands), so they are ordered with appends without any further locking.
//!
//! After a failed write or sync the log is poisoned: every later append is refused, so nothing is
//! ever acknowledged that might not be on disk.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::sync::oneshot;

use super::batch;
use super::config::{Durability, TopicConfig};
use super::error::{LogError, Result};
use super::partition::Partition;
use super::record::{Appended, Record};
use super::stats::Counters;
use super::sync::DurableFiles;
use super::topics::Topic;
use super::Shared;

/// Work that must run on the writer thread, ordered with appends.
pub(crate) type Exclusive = Box<dyn FnOnce(&Shared) + Send>;

pub(crate) enum Command {
    Append(AppendRequest),
    Exclusive(Exclusive),
    Sync(oneshot::Sender<Result<()>>),
    Shutdown,
}

pub(crate) struct AppendRequest {
    pub topic: String,
    pub partition: Option<u32>,
    pub records: Vec<Record>,
    pub reply: oneshot::Sender<Result<Vec<Appended>>>,
}

pub(crate) struct Appender {
    shared: Arc<Shared>,
    rx: Receiver<Command>,
    files: DurableFiles,
    /// Written but not yet synced (interval mode): first write time and new high watermarks.
    unsynced_since: Option<Instant>,
    unsynced: Vec<(Arc<Partition>, u64)>,
}

/// One partition's share of a group.
struct Slot<'a> {
    partition: Arc<Partition>,
    records: Vec<&'a Record>,
    base_offset: u64,
    end_offset: u64,
}

enum Wake {
    Command(Command),
    SyncDue,
    Disconnected,
}

impl Appender {
    pub fn new(shared: Arc<Shared>, rx: Receiver<Command>, files: DurableFiles) -> Self {
        Appender {
            shared,
            rx,
            files,
            unsynced_since: None,
            unsynced: Vec::new(),
        }
    }

    /// Runs until a `Shutdown` command or until every sender is gone, then syncs what it wrote.
    pub fn run(mut self) {
        let mut pending = Vec::new();
        loop {
            let command = match self.wait() {
                Wake::Command(command) => command,
                Wake::SyncDue => {
                    self.sync_unsynced();
                    continue;
                }
                Wake::Disconnected => break,
            };
            let mut stop = self.take(command, &mut pending);
            let mut records: usize = pending
                .iter()
                .map(|r: &AppendRequest| r.records.len())
                .sum();
            while !stop && records < self.shared.config.max_group_records {
                let Ok(command) = self.rx.try_recv() else {
                    break;
                };
                if let Command::Append(request) = &command {
                    records += request.records.len();
                }
                stop = self.take(command, &mut pending);
            }
            self.commit(std::mem::take(&mut pending));
            if self.sync_is_due() {
                self.sync_unsynced();
            }
            if stop {
                break;
            }
        }
        self.sync_unsynced();
        if self.shared.poison_reason().is_none() {
            if let Err(e) = self.files.flush_and_sync(&self.shared.db) {
                tracing::error!(error = %e, "final sync of the log failed");
            }
        }
    }

    fn wait(&self) -> Wake {
        let received = match (self.shared.config.durability, self.unsynced_since) {
            (Durability::Interval(every), Some(since)) => self.rx.recv_deadline(since + every),
            _ => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(command) => Wake::Command(command),
            Err(RecvTimeoutError::Timeout) => Wake::SyncDue,
            Err(RecvTimeoutError::Disconnected) => Wake::Disconnected,
        }
    }

    /// Queues an append, or commits what is queued and runs the command. True on shutdown.
    fn take(&mut self, command: Command, pending: &mut Vec<AppendRequest>) -> bool {
        match command {
            Command::Append(request) => pending.push(request),
            Command::Exclusive(work) => {
                self.commit(std::mem::take(pending));
                work(&self.shared);
            }
            Command::Sync(reply) => {
                self.commit(std::mem::take(pending));
                let _ = reply.send(self.sync_everything());
            }
            Command::Shutdown => return true,
        }
        false
    }

    fn commit(&mut self, requests: Vec<AppendRequest>) {
        if requests.is_empty() {
            return;
        }
        if let Some(reason) = self.shared.poison_reason() {
            for request in requests {
                let _ = request.reply.send(Err(LogError::Poisoned(reason.clone())));
            }
            return;
        }
        let outcomes = self.write_group(&requests);
        for (request, outcome) in requests.into_iter().zip(outcomes) {
            if outcome.is_ok() {
                Counters::add(&self.shared.counters.append_requests, 1);
            }
            let _ = request.reply.send(outcome);
        }
    }

    /// Places, writes and (in `always` mode) syncs a group; returns each request's outcome.
    fn write_group(&mut self, requests: &[AppendRequest]) -> Vec<Result<Vec<Appended>>> {
        let mut slots: Vec<Slot<'_>> = Vec::new();
        let mut slot_of: HashMap<*const Partition, usize> = HashMap::new();
        let placements: Vec<Result<Vec<(usize, usize)>>> = requests
            .iter()
            .map(|request| self.place(request, &mut slots, &mut slot_of))
            .collect();

        if let Err(e) = self
            .write_slots(&mut slots)
            .and_then(|()| self.make_durable(&slots))
        {
            let reason = e.to_string();
            tracing::error!(error = %reason, "log write failed; refusing further writes");
            self.shared.poison(reason.clone());
            return requests
                .iter()
                .map(|_| Err(LogError::Poisoned(reason.clone())))
                .collect();
        }
        placements
            .into_iter()
            .map(|placement| {
                placement.map(|positions| {
                    positions
                        .into_iter()
                        .map(|(slot, index)| Appended {
                            partition: slots[slot].partition.id,
                            offset: slots[slot].base_offset + index as u64,
                        })
                        .collect()
                })
            })
            .collect()
    }

    /// Assigns each record of a request to a slot; returns (slot, index in slot) per record.
    fn place<'a>(
        &self,
        request: &'a AppendRequest,
        slots: &mut Vec<Slot<'a>>,
        slot_of: &mut HashMap<*const Partition, usize>,
    ) -> Result<Vec<(usize, usize)>> {
        let topic = self.resolve_topic(&request.topic)?;
        if let Some(p) = request.partition {
            topic.partition(p)?;
        }
        let mut positions = Vec::with_capacity(request.records.len());
        for record in &request.records {
            let id = request
                .partition
                .unwrap_or_else(|| topic.choose_partition(record.key.as_deref()));
            let partition = topic.partition(id)?;
            let slot = *slot_of.entry(Arc::as_ptr(&partition)).or_insert_with(|| {
                slots.push(Slot {
                    partition,
                    records: Vec::new(),
                    base_offset: 0,
                    end_offset: 0,
                });
                slots.len() - 1
            });
            slots[slot].records.push(record);
            positions.push((slot, slots[slot].records.len() - 1));
        }
        Ok(positions)
    }

    fn resolve_topic(&self, name: &str) -> Result<Arc<Topic>> {
        match self.shared.registry.get(name) {
            Some(topic) => Ok(topic),
            None if self.shared.config.auto_create_topics => self.shared.registry.create(
                name,
                TopicConfig::with_partitions(self.shared.config.default_partitions),
            ),
            None => Err(LogError::UnknownTopic(name.to_owned())),
        }
    }

    /// Writes each slot as one or more batches of at most `max_batch_bytes`.
    fn write_slots(&self, slots: &mut [Slot<'_>]) -> Result<()> {
        let now = now_ms();
        let max_bytes = self.shared.config.max_batch_bytes;
        let counters = &self.shared.counters;
        for slot in slots.iter_mut() {
            let mut tail = slot
                .partition
                .tail
                .lock()
                .expect("partition tail lock poisoned");
            let timestamp = now.max(tail.last_timestamp);
            slot.base_offset = tail.next_offset;
            for chunk in chunks_by_size(&slot.records, max_bytes) {
                let encoded = batch::encode(tail.next_offset, timestamp, tail.next_position, chunk);
                let len = encoded.len() as u64;
                slot.partition
                    .tree
                    .insert(tail.next_offset.to_be_bytes(), encoded)?;
                tail.next_offset += chunk.len() as u64;
                tail.next_position += len;
                Counters::add(&counters.batches, 1);
                Counters::add(&counters.bytes, len);
            }
            tail.last_timestamp = timestamp;
            slot.end_offset = tail.next_offset;
            Counters::add(&counters.records, slot.records.len() as u64);
        }
        Counters::add(&counters.groups, 1);
        Ok(())
    }

    /// Syncs now (`always`), later (`interval`) or never, and publishes what readers may see.
    fn make_durable(&mut self, slots: &[Slot<'_>]) -> Result<()> {
        match self.shared.config.durability {
            Durability::Always => {
                self.flush_and_sync()?;
                publish(slots.iter().map(|s| (&s.partition, s.end_offset)));
            }
            Durability::Interval(_) => {
                self.unsynced_since.get_or_insert_with(Instant::now);
                self.unsynced
                    .extend(slots.iter().map(|s| (s.partition.clone(), s.end_offset)));
            }
            Durability::Never => publish(slots.iter().map(|s| (&s.partition, s.end_offset))),
        }
        Ok(())
    }

    fn flush_and_sync(&mut self) -> Result<()> {
        let started = Instant::now();
        self.files.flush_and_sync(&self.shared.db)?;
        let counters = &self.shared.counters;
        Counters::add(&counters.syncs, 1);
        Counters::add(&counters.sync_nanos, started.elapsed().as_nanos() as u64);
        Ok(())
    }

    fn sync_is_due(&self) -> bool {
        match (self.shared.config.durability, self.unsynced_since) {
            (Durability::Interval(every), Some(since)) => since.elapsed() >= every,
            _ => false,
        }
    }

    /// Interval mode: sync what was written and let readers see it.
    fn sync_unsynced(&mut self) {
        if self.unsynced_since.is_none() {
            return;
        }
        if let Err(e) = self.sync_everything() {
            tracing::error!(error = %e, "interval sync failed");
        }
    }

    /// Syncs unconditionally (an explicit `Log::sync`, or an interval tick).
    fn sync_everything(&mut self) -> Result<()> {
        if let Some(reason) = self.shared.poison_reason() {
            return Err(LogError::Poisoned(reason));
        }
        if let Err(e) = self.flush_and_sync() {
            self.shared.poison(e.to_string());
            return Err(e);
        }
        self.unsynced_since = None;
        let unsynced = std::mem::take(&mut self.unsynced);
        publish(unsynced.iter().map(|(p, end)| (p, *end)));
        Ok(())
    }
}

fn publish<'a>(ends: impl Iterator<Item = (&'a Arc<Partition>, u64)>) {
    for (partition, end) in ends {
        partition.publish_high(end);
    }
}

/// Splits records into runs whose encoded size stays near `max_bytes` (a run has at least one).
fn chunks_by_size<'r, 'a>(records: &'r [&'a Record], max_bytes: usize) -> Vec<&'r [&'a Record]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, record) in records.iter().enumerate() {
        let record_size = record.size() + 16;
        if i > start && size + record_size > max_bytes {
            chunks.push(&records[start..i]);
            start = i;
            size = 0;
        }
        size += record_size;
    }
    if start < records.len() {
        chunks.push(&records[start..]);
    }
    chunks
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_the_byte_budget_and_keep_every_record() {
        let small = Record::new(vec![0u8; 100]);
        let big = Record::new(vec![0u8; 5000]);
        let records: Vec<&Record> = vec![&small, &small, &big, &small, &small, &small];
        let chunks = chunks_by_size(&records, 300);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), records.len());
        assert_eq!(chunks.len(), 4, "[s,s] [big] [s,s] [s]");
        assert!(chunks.iter().all(|c| !c.is_empty()));
    }
}
