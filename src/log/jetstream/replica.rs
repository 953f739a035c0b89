//! A node's local replica of one partition: the records JetStream holds for it, in offset order,
//! fed by one ordered consumer (`feed`), and the watch of its high watermark.
//!
//! It is a cache the node can always rebuild from the stream, and what the log's synchronous
//! calls (`read`, `watermarks`, `subscribe`, `offset_for_time`) answer from, so they never wait on
//! the network. It does not talk to NATS itself and decides nothing about durability: a record
//! is here only after JetStream stored it on a quorum and delivered it back.

use std::collections::VecDeque;

use parking_lot::RwLock;
use tokio::sync::{watch, Notify};

use super::wire::WireRecord;
use crate::log::{LogError, ReadLimits, Result, StoredRecord};

/// One partition's records on this node.
#[derive(Debug)]
pub(super) struct Replica {
    topic: String,
    partition: u32,
    state: RwLock<State>,
    high: watch::Sender<u64>,
    /// Raised by an append that the cluster acknowledged but this replica does not have yet:
    /// the feed checks at once whether its consumer is stuck.
    stalled: Notify,
}

#[derive(Debug)]
struct State {
    /// Offset of `records[0]` (the low watermark).
    low: u64,
    records: VecDeque<StoredRecord>,
    bytes: u64,
    /// Timestamp of the last record, so that stored timestamps never decrease in a partition
    /// even when the appending nodes' clocks disagree.
    last_timestamp_ms: i64,
}

impl State {
    fn high(&self) -> u64 {
        self.low + self.records.len() as u64
    }
}

impl Replica {
    /// An empty replica of a partition whose retained records start at offset `low`.
    pub(super) fn new(topic: &str, partition: u32, low: u64) -> Replica {
        Replica {
            topic: topic.to_owned(),
            partition,
            state: RwLock::new(State {
                low,
                records: VecDeque::new(),
                bytes: 0,
                last_timestamp_ms: i64::MIN,
            }),
            high: watch::channel(low).0,
            stalled: Notify::new(),
        }
    }

    /// Adds the record JetStream delivered at `offset`. A redelivery of an offset already here is
    /// ignored; a jump forward (records expired on the cluster before this node read them)
    /// restarts the replica at `offset`, as the stream's own low watermark moved there.
    pub(super) fn push(&self, offset: u64, wire: WireRecord) {
        let high = {
            let mut state = self.state.write();
            if offset < state.high() {
                return;
            }
            if offset > state.high() {
                state.records.clear();
                state.bytes = 0;
                state.low = offset;
            }
            let timestamp_ms = wire.timestamp_ms.max(state.last_timestamp_ms);
            state.last_timestamp_ms = timestamp_ms;
            let record = wire.into_stored(self.partition, offset, timestamp_ms);
            state.bytes += record.size() as u64;
            state.records.push_back(record);
            state.high()
        };
        self.high.send_replace(high);
    }

    /// Drops the records below `low` (retention on the cluster deleted them); true if it moved.
    pub(super) fn trim_to(&self, low: u64) -> bool {
        let mut state = self.state.write();
        if low <= state.low {
            return false;
        }
        let high = state.high();
        while state.low < low.min(high) {
            if let Some(record) = state.records.pop_front() {
                state.bytes -= record.size() as u64;
            }
            state.low += 1;
        }
        if low > high {
            state.low = low;
            drop(state);
            self.high.send_replace(low);
        }
        true
    }

    /// Tells the feed that an acknowledged record is late here.
    pub(super) fn nudge(&self) {
        self.stalled.notify_one();
    }

    /// Resolves when an append said a record is late (see [`nudge`](Self::nudge)).
    pub(super) async fn stalled(&self) {
        self.stalled.notified().await;
    }

    /// (low, high) watermarks as this node has them.
    pub(super) fn watermarks(&self) -> (u64, u64) {
        let state = self.state.read();
        (state.low, state.high())
    }

    /// Bytes of keys, headers and values held.
    pub(super) fn bytes(&self) -> u64 {
        self.state.read().bytes
    }

    /// A receiver of the high watermark: it moves once the records below it are readable here.
    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.high.subscribe()
    }

    /// Records from `offset` on, within `limits` (at least one when any is there).
    pub(super) fn read(&self, offset: u64, limits: ReadLimits) -> Result<Vec<StoredRecord>> {
        let state = self.state.read();
        if offset < state.low || offset > state.high() {
            return Err(LogError::OffsetOutOfRange {
                topic: self.topic.clone(),
                partition: self.partition,
                offset,
                earliest: state.low,
                latest: state.high(),
            });
        }
        let mut bytes = 0;
        let mut out = Vec::new();
        for record in state.records.range((offset - state.low) as usize..) {
            if out.len() >= limits.max_records
                || (!out.is_empty() && bytes + record.size() > limits.max_bytes)
            {
                break;
            }
            bytes += record.size();
            out.push(record.clone());
        }
        Ok(out)
    }

    /// The first offset whose record was stored at or after `timestamp_ms`, else the high
    /// watermark. Timestamps never decrease within the replica, so a binary search finds it.
    pub(super) fn offset_for_time(&self, timestamp_ms: i64) -> u64 {
        let state = self.state.read();
        let index = state
            .records
            .partition_point(|record| record.timestamp_ms < timestamp_ms);
        state.low + index as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Record;

    fn wire(value: &str, timestamp_ms: i64) -> WireRecord {
        WireRecord::new(Record::new(value), timestamp_ms)
    }

    #[test]
    fn reads_what_was_pushed_and_ignores_redeliveries() {
        let replica = Replica::new("t", 0, 0);
        replica.push(0, wire("a", 5));
        replica.push(1, wire("b", 3));
        replica.push(1, wire("b-again", 9));
        let read = replica.read(0, ReadLimits::default()).unwrap();
        let values: Vec<&[u8]> = read.iter().map(|r| r.value.as_slice()).collect();
        assert_eq!(values, [b"a".as_slice(), b"b"]);
        assert_eq!(read[1].timestamp_ms, 5, "timestamps never go back");
        assert_eq!(replica.watermarks(), (0, 2));
        assert!(replica.read(3, ReadLimits::default()).is_err());
    }

    #[test]
    fn a_jump_forward_restarts_at_the_new_offset_and_trim_moves_low() {
        let replica = Replica::new("t", 0, 0);
        replica.push(0, wire("a", 1));
        replica.push(5, wire("f", 2));
        assert_eq!(replica.watermarks(), (5, 6));
        assert!(replica.trim_to(6));
        assert_eq!(replica.watermarks(), (6, 6));
        assert!(!replica.trim_to(4));
        assert_eq!(replica.offset_for_time(0), 6);
    }
}
