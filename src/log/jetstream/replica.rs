//! A node's local replica of one partition: the stream's true watermarks, a bounded tail of its
//! most recent records in offset order (fed by one ordered consumer, `feed`), and the watch of
//! its high watermark.
//!
//! The tail is a cache the node can always rebuild from the stream, kept within a byte budget
//! (`cluster.replicaCacheBytes` per partition): the oldest records are dropped as new ones
//! arrive. The log's synchronous calls (`read`, `watermarks`, `subscribe`, `offset_for_time`)
//! answer from it without waiting on the network when they can; a read or a time lookup below
//! the tail is answered [`Lookup::Below`], and the caller asks the stream (`cold`). It does not
//! talk to NATS itself and decides nothing about durability: a record is here only after
//! JetStream stored it on a quorum and delivered it back.

use std::collections::VecDeque;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{watch, Notify};

use super::wire::WireRecord;
use crate::log::{LogError, ReadLimits, Result, StoredRecord};

/// How many places where a read from the stream stopped are remembered, with the timestamp it
/// reached, so that the next read from there continues the same non-decreasing timestamps.
const REMEMBERED_FLOORS: usize = 32;

/// An answer from the tail, or the range below it that only the stream holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lookup<T> {
    Here(T),
    /// Ask the stream about offsets `from..until` (`until` is where the tail starts).
    Below {
        from: u64,
        until: u64,
    },
}

/// One partition's records on this node.
#[derive(Debug)]
pub(super) struct Replica {
    topic: String,
    partition: u32,
    /// The partition's stream on the cluster.
    stream: String,
    /// Most bytes of keys, headers and values the tail holds.
    budget: u64,
    state: RwLock<State>,
    high: watch::Sender<u64>,
    /// Raised by an append that the cluster acknowledged but this replica does not have yet:
    /// the feed checks at once whether its consumer is stuck.
    stalled: Notify,
    /// (next offset, timestamp reached) of recent reads from the stream.
    floors: Mutex<VecDeque<(u64, i64)>>,
    /// Bytes of the stream on the cluster (one copy) when last asked, plus the records
    /// delivered since.
    stream_bytes: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// The stream's low watermark (its first sequence − 1), as of the last retention pass.
    low: u64,
    /// Offset of `records[0]`: where the cached tail starts (≥ `low`).
    cached_from: u64,
    records: VecDeque<StoredRecord>,
    bytes: u64,
    /// Timestamp of the last record, so that stored timestamps never decrease in a partition
    /// even when the appending nodes' clocks disagree.
    last_timestamp_ms: i64,
}

impl State {
    fn high(&self) -> u64 {
        self.cached_from + self.records.len() as u64
    }

    fn drop_oldest(&mut self) {
        if let Some(record) = self.records.pop_front() {
            self.bytes -= record.size() as u64;
        }
        self.cached_from += 1;
    }
}

impl Replica {
    /// An empty replica of the partition whose stream is `stream`, whose retained records start
    /// at offset `low` and whose feed starts at `start` (≥ `low`), keeping at most `budget` bytes.
    pub(super) fn new(
        topic: &str,
        partition: u32,
        stream: &str,
        (low, start): (u64, u64),
        budget: u64,
    ) -> Replica {
        Replica {
            topic: topic.to_owned(),
            partition,
            stream: stream.to_owned(),
            budget,
            state: RwLock::new(State {
                low,
                cached_from: start.max(low),
                records: VecDeque::new(),
                bytes: 0,
                last_timestamp_ms: i64::MIN,
            }),
            high: watch::channel(start.max(low)).0,
            stalled: Notify::new(),
            floors: Mutex::new(VecDeque::new()),
            stream_bytes: AtomicU64::new(0),
        }
    }

    pub(super) fn partition(&self) -> u32 {
        self.partition
    }

    /// The name of the partition's stream.
    pub(super) fn stream(&self) -> &str {
        &self.stream
    }

    /// Adds the record JetStream delivered at `offset`, then drops the oldest records beyond
    /// the budget. A redelivery of an offset already here is ignored; a jump forward (records
    /// expired on the cluster before this node read them) restarts the replica at `offset`, as
    /// the stream's own low watermark moved there.
    pub(super) fn push(&self, offset: u64, wire: WireRecord) {
        let high = {
            let mut state = self.state.write();
            if offset < state.high() {
                return;
            }
            if offset > state.high() {
                state.records.clear();
                state.bytes = 0;
                state.cached_from = offset;
                state.low = state.low.max(offset);
            }
            let timestamp_ms = wire.timestamp_ms.max(state.last_timestamp_ms);
            state.last_timestamp_ms = timestamp_ms;
            let record = wire.into_stored(self.partition, offset, timestamp_ms);
            state.bytes += record.size() as u64;
            self.stream_bytes
                .fetch_add(record.size() as u64, Ordering::Relaxed);
            state.records.push_back(record);
            while state.bytes > self.budget {
                state.drop_oldest();
            }
            state.high()
        };
        self.high.send_replace(high);
    }

    /// Moves the low watermark up to `low` (retention on the cluster deleted the records below
    /// it) and drops them from the tail; true if it moved.
    pub(super) fn trim_to(&self, low: u64) -> bool {
        let mut state = self.state.write();
        if low <= state.low {
            return false;
        }
        state.low = low;
        let high = state.high();
        while state.cached_from < low.min(high) {
            state.drop_oldest();
        }
        if low > high {
            state.cached_from = low;
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

    /// (low, high) watermarks of the stream as this node has them.
    pub(super) fn watermarks(&self) -> (u64, u64) {
        let state = self.state.read();
        (state.low, state.high())
    }

    /// Bytes of keys, headers and values the tail holds (at most the budget).
    pub(super) fn bytes(&self) -> u64 {
        self.state.read().bytes
    }

    /// Bytes the partition's stream holds on the cluster: as JetStream last said, plus the
    /// records delivered since.
    pub(super) fn stream_bytes(&self) -> u64 {
        self.stream_bytes.load(Ordering::Relaxed)
    }

    /// Sets what JetStream says its stream holds now.
    pub(super) fn set_stream_bytes(&self, bytes: u64) {
        self.stream_bytes.store(bytes, Ordering::Relaxed);
    }

    /// A receiver of the high watermark: it moves once the records below it are readable here.
    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.high.subscribe()
    }

    /// The watermarks once the high one reached `offset`, or as they are after `within`: a
    /// position another node has just read up to may be a moment ahead of this node's copy.
    pub(super) async fn watermarks_reaching(&self, offset: u64, within: Duration) -> (u64, u64) {
        let mut high = self.high.subscribe();
        let _ = tokio::time::timeout(within, high.wait_for(|high| *high >= offset)).await;
        self.watermarks()
    }

    /// Records from `offset` on, within `limits` (at least one when any is there), or the
    /// range below the tail to read from the stream.
    pub(super) fn read(
        &self,
        offset: u64,
        limits: ReadLimits,
    ) -> Result<Lookup<Vec<StoredRecord>>> {
        let state = self.state.read();
        if offset < state.low || offset > state.high() {
            return Err(self.out_of_range(offset, state.low, state.high()));
        }
        if offset < state.cached_from {
            return Ok(Lookup::Below {
                from: offset,
                until: state.cached_from,
            });
        }
        let mut bytes = 0;
        let mut out = Vec::new();
        for record in state.records.range((offset - state.cached_from) as usize..) {
            if out.len() >= limits.max_records
                || (!out.is_empty() && bytes + record.size() > limits.max_bytes)
            {
                break;
            }
            bytes += record.size();
            out.push(record.clone());
        }
        Ok(Lookup::Here(out))
    }

    /// The error for a read at `offset` outside `earliest..=latest`.
    pub(super) fn out_of_range(&self, offset: u64, earliest: u64, latest: u64) -> LogError {
        LogError::OffsetOutOfRange {
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
            earliest,
            latest,
        }
    }

    /// The first offset whose record was stored at or after `timestamp_ms`, else the high
    /// watermark; or the range below the tail to search in the stream when the tail's first
    /// record is already that recent. Timestamps never decrease within the replica, so a binary
    /// search finds it.
    pub(super) fn offset_for_time(&self, timestamp_ms: i64) -> Lookup<u64> {
        let state = self.state.read();
        let index = state
            .records
            .partition_point(|record| record.timestamp_ms < timestamp_ms);
        let tail_is_older = state.records.is_empty() && state.last_timestamp_ms < timestamp_ms;
        if index == 0 && state.cached_from > state.low && !tail_is_older {
            return Lookup::Below {
                from: state.low,
                until: state.cached_from,
            };
        }
        Lookup::Here(state.cached_from + index as u64)
    }

    /// The timestamp below which a read from the stream starting at `offset` must not go: where
    /// an earlier read from the stream stopped at `offset`, the timestamp it reached.
    pub(super) fn floor_at(&self, offset: u64) -> i64 {
        let floors = self.floors.lock();
        floors
            .iter()
            .find(|(next, _)| *next == offset)
            .map_or(i64::MIN, |(_, floor)| *floor)
    }

    /// Remembers that a read from the stream stopped before `next` at timestamp `floor`.
    pub(super) fn remember_floor(&self, next: u64, floor: i64) {
        let mut floors = self.floors.lock();
        floors.retain(|(at, _)| *at != next);
        if floors.len() >= REMEMBERED_FLOORS {
            floors.pop_front();
        }
        floors.push_back((next, floor));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Record;

    fn wire(value: &str, timestamp_ms: i64) -> WireRecord {
        WireRecord::new(Record::new(value), timestamp_ms)
    }

    fn replica(budget: u64) -> Replica {
        Replica::new("t", 0, "s", (0, 0), budget)
    }

    fn cached(lookup: Lookup<Vec<StoredRecord>>) -> Vec<StoredRecord> {
        match lookup {
            Lookup::Here(records) => records,
            below => panic!("expected cached records, got {below:?}"),
        }
    }

    #[test]
    fn reads_what_was_pushed_and_ignores_redeliveries() {
        let replica = replica(u64::MAX);
        replica.push(0, wire("a", 5));
        replica.push(1, wire("b", 3));
        replica.push(1, wire("b-again", 9));
        let read = cached(replica.read(0, ReadLimits::default()).unwrap());
        let values: Vec<&[u8]> = read.iter().map(|r| r.value.as_slice()).collect();
        assert_eq!(values, [b"a".as_slice(), b"b"]);
        assert_eq!(read[1].timestamp_ms, 5, "timestamps never go back");
        assert_eq!(replica.watermarks(), (0, 2));
        assert!(replica.read(3, ReadLimits::default()).is_err());
    }

    /// A position ahead of this copy is waited for until the records arrive, at most the
    /// given time (on tokio's paused clock).
    #[tokio::test(start_paused = true)]
    async fn watermarks_reaching_waits_for_records_still_on_their_way() {
        let replica = std::sync::Arc::new(replica(u64::MAX));
        replica.push(0, wire("a", 1));
        let pusher = std::sync::Arc::clone(&replica);
        let arriving = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            pusher.push(1, wire("b", 2));
            pusher.push(2, wire("c", 3));
        });
        let started = tokio::time::Instant::now();
        let within = Duration::from_secs(5);
        assert_eq!(replica.watermarks_reaching(3, within).await, (0, 3));
        assert_eq!(started.elapsed(), Duration::from_millis(30));
        arriving.await.unwrap();
        assert_eq!(replica.watermarks_reaching(9, within).await, (0, 3));
        assert_eq!(started.elapsed(), Duration::from_millis(30) + within);
    }

    #[test]
    fn a_jump_forward_restarts_at_the_new_offset_and_trim_moves_low() {
        let replica = replica(u64::MAX);
        replica.push(0, wire("a", 1));
        replica.push(5, wire("f", 2));
        assert_eq!(replica.watermarks(), (5, 6));
        assert!(replica.trim_to(6));
        assert_eq!(replica.watermarks(), (6, 6));
        assert!(!replica.trim_to(4));
        assert_eq!(replica.offset_for_time(0), Lookup::Here(6));
    }

    #[test]
    fn the_tail_stays_within_the_budget_and_older_reads_are_sent_to_the_stream() {
        let one = Record::new("0123456789").size() as u64;
        let replica = replica(3 * one);
        for offset in 0..10 {
            replica.push(offset, wire("0123456789", offset as i64));
        }
        assert_eq!(replica.bytes(), 3 * one);
        assert_eq!(
            replica.watermarks(),
            (0, 10),
            "the stream's low watermark is kept"
        );
        let tail = cached(replica.read(7, ReadLimits::default()).unwrap());
        assert_eq!(tail.iter().map(|r| r.offset).collect::<Vec<_>>(), [7, 8, 9]);
        assert_eq!(
            replica.read(2, ReadLimits::default()).unwrap(),
            Lookup::Below { from: 2, until: 7 }
        );
        assert_eq!(replica.offset_for_time(8), Lookup::Here(8));
        assert_eq!(
            replica.offset_for_time(3),
            Lookup::Below { from: 0, until: 7 }
        );
        assert_eq!(replica.offset_for_time(100), Lookup::Here(10));
    }

    #[test]
    fn a_replica_started_near_the_end_knows_the_low_watermark_below_its_tail() {
        let replica = Replica::new("t", 0, "s", (4, 90), u64::MAX);
        assert_eq!(replica.watermarks(), (4, 90));
        replica.push(90, wire("x", 1));
        assert_eq!(replica.watermarks(), (4, 91));
        assert_eq!(
            replica.read(4, ReadLimits::default()).unwrap(),
            Lookup::Below { from: 4, until: 90 }
        );
        assert!(replica.read(3, ReadLimits::default()).is_err());
        assert!(replica.trim_to(95));
        assert_eq!(replica.watermarks(), (95, 95));
    }

    #[test]
    fn remembered_floors_are_found_by_the_offset_a_read_stopped_at() {
        let replica = replica(u64::MAX);
        assert_eq!(replica.floor_at(10), i64::MIN);
        replica.remember_floor(10, 77);
        replica.remember_floor(10, 78);
        assert_eq!(replica.floor_at(10), 78);
        for next in 0..REMEMBERED_FLOORS as u64 {
            replica.remember_floor(100 + next, 1);
        }
        assert_eq!(replica.floor_at(10), i64::MIN, "the oldest is forgotten");
    }
}
