//! The group-commit appender: the one thread that writes the log.
//!
//! Producers on any thread or task send commands over a bounded `crossbeam-channel`. The thread
//! takes the first command, then everything else already waiting (up to `max_group_records`),
//! writes one record batch per partition touched and hands the group to the [`syncer`], which
//! makes it durable with one flush and one `fdatasync` and completes every waiter. Under load the
//! group grows; the number of syncs does not. Topic changes and retention deletes also run here
//! ("exclusive" commands), so they are ordered with appends without any further locking.
//!
//! After a failed write or sync the log is poisoned: every later append is refused, so nothing is
//! ever acknowledged that might not be on disk.
//!
//! [`syncer`]: super::syncer

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, SendError, Sender};
use tokio::sync::oneshot;

use super::batch;
use super::config::TopicConfig;
use super::error::{LogError, Result};
use super::partition::Partition;
use super::record::{Appended, Record};
use super::stats::Counters;
use super::syncer::{PartitionEnd, Stage, Written};
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

/// Where an append's outcome is sent.
pub(crate) type AppendReply = oneshot::Sender<Result<Vec<Appended>>>;

pub(crate) struct AppendRequest {
    pub topic: String,
    pub partition: Option<u32>,
    pub records: Vec<Record>,
    pub reply: AppendReply,
    /// A lingering append (see [`Written::lingering`]).
    pub linger: bool,
}

pub(crate) struct Appender {
    shared: Arc<Shared>,
    rx: Receiver<Command>,
    syncer: Sender<Stage>,
}

/// One partition's share of a group.
struct Slot<'a> {
    partition: Arc<Partition>,
    records: Vec<&'a Record>,
    base_offset: u64,
    end_offset: u64,
}

impl Appender {
    pub(super) fn new(shared: Arc<Shared>, rx: Receiver<Command>, syncer: Sender<Stage>) -> Self {
        Appender { shared, rx, syncer }
    }

    /// Runs until a `Shutdown` command or until every sender is gone; then tells the syncer to
    /// finish.
    pub(super) fn run(self) {
        let mut pending = Vec::new();
        while let Ok(command) = self.rx.recv() {
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
            if stop {
                break;
            }
        }
        let _ = self.syncer.send(Stage::Shutdown);
    }

    /// Queues an append, or commits what is queued and runs the command. True on shutdown.
    fn take(&self, command: Command, pending: &mut Vec<AppendRequest>) -> bool {
        match command {
            Command::Append(request) => pending.push(request),
            Command::Exclusive(work) => {
                self.commit(std::mem::take(pending));
                work(&self.shared);
            }
            Command::Sync(reply) => {
                self.commit(std::mem::take(pending));
                if let Err(SendError(Stage::Barrier(reply))) =
                    self.syncer.send(Stage::Barrier(reply))
                {
                    let _ = reply.send(Err(LogError::Closed));
                }
            }
            Command::Shutdown => return true,
        }
        false
    }

    /// Writes a group and hands the successful appends to the syncer; answers failures at once.
    fn commit(&self, requests: Vec<AppendRequest>) {
        if requests.is_empty() {
            return;
        }
        if let Some(reason) = self.shared.poison_reason() {
            for request in requests {
                let _ = request.reply.send(Err(LogError::Poisoned(reason.clone())));
            }
            return;
        }
        let lingering = requests.iter().all(|request| request.linger);
        let (outcomes, ends) = self.write_group(&requests);
        let mut replies = Vec::with_capacity(requests.len());
        for (request, outcome) in requests.into_iter().zip(outcomes) {
            match outcome {
                Ok(appended) => replies.push((request.reply, appended)),
                Err(e) => {
                    let _ = request.reply.send(Err(e));
                }
            }
        }
        Counters::add(&self.shared.counters.append_requests, replies.len() as u64);
        if let Err(SendError(Stage::Written(written))) = self.syncer.send(Stage::Written(Written {
            replies,
            ends,
            lingering,
        })) {
            for (reply, _) in written.replies {
                let _ = reply.send(Err(LogError::Closed));
            }
        }
    }

    /// Places and writes a group; returns each request's outcome and the new partition ends.
    #[allow(clippy::type_complexity)]
    fn write_group(
        &self,
        requests: &[AppendRequest],
    ) -> (Vec<Result<Vec<Appended>>>, Vec<PartitionEnd>) {
        let mut slots: Vec<Slot<'_>> = Vec::new();
        let mut slot_of: HashMap<*const Partition, usize> = HashMap::new();
        let placements: Vec<Result<Vec<(usize, usize)>>> = requests
            .iter()
            .map(|request| self.place(request, &mut slots, &mut slot_of))
            .collect();

        if let Err(e) = self.write_slots(&mut slots) {
            let reason = e.to_string();
            tracing::error!(error = %reason, "log write failed; refusing further writes");
            self.shared.poison(reason.clone());
            let failed = requests
                .iter()
                .map(|_| Err(LogError::Poisoned(reason.clone())))
                .collect();
            return (failed, Vec::new());
        }
        let outcomes = placements
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
            .collect();
        let ends = slots
            .into_iter()
            .map(|s| (s.partition, s.end_offset))
            .collect();
        (outcomes, ends)
    }

    /// Assigns each record of a request to a slot; returns (slot, index in slot) per record.
    fn place<'a>(
        &self,
        request: &'a AppendRequest,
        slots: &mut Vec<Slot<'a>>,
        slot_of: &mut HashMap<*const Partition, usize>,
    ) -> Result<Vec<(usize, usize)>> {
        let topic = self.resolve_topic(&request.topic, request.partition)?;
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

    /// The topic, created on first use when allowed — but not for an append that the new
    /// topic would refuse anyway (a partition it will not have): a refused append changes
    /// nothing.
    fn resolve_topic(&self, name: &str, partition: Option<u32>) -> Result<Arc<Topic>> {
        if let Some(topic) = self.shared.registry.get(name) {
            return Ok(topic);
        }
        let config = &self.shared.config;
        if !config.auto_create_topics {
            return Err(LogError::UnknownTopic(name.to_owned()));
        }
        if let Some(partition) = partition.filter(|p| *p >= config.default_partitions) {
            return Err(LogError::UnknownPartition {
                topic: name.to_owned(),
                partition,
                partitions: config.default_partitions,
            });
        }
        self.shared.registry.create(
            name,
            TopicConfig::with_partitions(config.default_partitions),
        )
    }

    /// Writes each slot as one or more batches of at most `max_batch_bytes`.
    fn write_slots(&self, slots: &mut [Slot<'_>]) -> Result<()> {
        let now = now_ms();
        let max_bytes = self.shared.config.max_batch_bytes;
        let counters = &self.shared.counters;
        for slot in slots.iter_mut() {
            let mut tail = slot.partition.tail.lock();
            let timestamp = now.max(tail.last_timestamp);
            slot.base_offset = tail.next_offset;
            for chunk in chunks_by_size(&slot.records, max_bytes) {
                let encoded = batch::encode(tail.next_offset, timestamp, tail.next_position, chunk);
                let len = encoded.len() as u64;
                let key = tail.next_offset.to_be_bytes();
                write_fault()?;
                torn_write_fault(&slot.partition.tree, key, &encoded)?;
                slot.partition.tree.insert(key, encoded)?;
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
}

/// Failpoint `log::append::write`: the storage engine refuses a batch (`return` gives `EIO`,
/// `return(enospc)` "no space left on device").
fn write_fault() -> Result<()> {
    fail::fail_point!("log::append::write", |arg| Err(sled::Error::Io(
        super::error::injected_io_error(arg)
    )
    .into()));
    Ok(())
}

/// Failpoint `log::append::torn`: only the first half of a batch reaches the engine, then the
/// write fails — a torn batch at the partition's tail, which recovery must drop. Batches of
/// other partitions written earlier in the same group stay whole.
fn torn_write_fault(tree: &sled::Tree, key: [u8; 8], encoded: &[u8]) -> Result<()> {
    fail::fail_point!("log::append::torn", |arg| {
        tree.insert(key, &encoded[..encoded.len() / 2])?;
        Err(sled::Error::Io(super::error::injected_io_error(arg)).into())
    });
    // Keeps the parameters used where failpoints compile to nothing.
    let _ = (tree, key, encoded);
    Ok(())
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
