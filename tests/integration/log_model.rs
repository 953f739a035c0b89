//! Proves that the log behaves like a plain in-memory model under random sequences of appends,
//! reads, commits, resets, retention runs and reopens: offsets stay dense, keys keep their
//! partition and order, reads return exactly the model's records, retention leaves no hole and
//! only moves forward, commits never regress, and a reopen restores the same state. Two smaller
//! checks ride along: `group_names` is the sorted set of committing groups, and retention racing
//! concurrent appends never leaves the low watermark above the high one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tidings::log::partition_for_key;
use tidings::log::{
    Header, Log, LogConfig, LogError, ReadLimits, Record, ResetTo, StoredRecord, TopicConfig,
};

const TOPIC: &str = "model";
const GROUPS: [&str; 2] = ["g0", "g1"];
const KEYS: [&str; 3] = ["alice", "bob", "carol"];

type Check<T = ()> = Result<T, TestCaseError>;

/// One record an operation appends; its value is made unique when it is applied.
#[derive(Debug, Clone)]
struct NewRecord {
    key: Option<usize>,
    header: bool,
    padding: usize,
}

#[derive(Debug, Clone, Copy)]
enum ResetPick {
    Earliest,
    Latest,
    Offset(u64),
    /// Before every record (expect low) or after every record (expect high).
    Timestamp {
        future: bool,
    },
}

/// Partition and offset fields are raw picks, reduced modulo the current range when applied.
#[derive(Debug, Clone)]
enum Op {
    Append(Vec<NewRecord>),
    AppendTo(u32, Vec<NewRecord>),
    Read {
        partition: u32,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
    },
    Commit {
        group: usize,
        partition: u32,
        offset: u64,
    },
    Reset(usize, ResetPick),
    RetainBytes(u64),
    RetainTimeProtected,
    RetainTimeAll,
    DeleteAndRecreate,
    Reopen,
}

fn new_record() -> impl Strategy<Value = NewRecord> {
    (
        prop::option::weighted(0.7, 0..KEYS.len()),
        prop::bool::weighted(0.2),
        0usize..120,
    )
        .prop_map(|(key, header, padding)| NewRecord {
            key,
            header,
            padding,
        })
}

fn op() -> impl Strategy<Value = Op> {
    let reset = prop_oneof![
        Just(ResetPick::Earliest),
        Just(ResetPick::Latest),
        any::<u64>().prop_map(ResetPick::Offset),
        any::<bool>().prop_map(|future| ResetPick::Timestamp { future }),
    ];
    prop_oneof![
        8 => prop::collection::vec(new_record(), 1..6).prop_map(Op::Append),
        2 => (any::<u32>(), prop::collection::vec(new_record(), 1..4))
            .prop_map(|(p, records)| Op::AppendTo(p, records)),
        4 => (any::<u32>(), any::<u64>(), 0usize..8, 0usize..600).prop_map(
            |(partition, offset, max_records, max_bytes)| Op::Read {
                partition,
                offset,
                max_records,
                max_bytes,
            }
        ),
        4 => (0..GROUPS.len(), any::<u32>(), any::<u64>()).prop_map(
            |(group, partition, offset)| Op::Commit {
                group,
                partition,
                offset,
            }
        ),
        1 => (0..GROUPS.len(), reset).prop_map(|(g, to)| Op::Reset(g, to)),
        2 => (150u64..2_500).prop_map(Op::RetainBytes),
        1 => Just(Op::RetainTimeProtected),
        1 => Just(Op::RetainTimeAll),
        1 => Just(Op::DeleteAndRecreate),
        2 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelRecord {
    key: Option<Vec<u8>>,
    headers: Vec<Header>,
    value: Vec<u8>,
    /// Global append sequence number (values are unique and carry it).
    seq: u64,
    /// Placed by its key (`append`), not by an explicit partition (`append_to`).
    routed_by_key: bool,
}

impl ModelRecord {
    fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.len())
                .sum::<usize>()
            + self.value.len()
    }
}

#[derive(Debug, Default)]
struct PartitionModel {
    /// Every record ever appended; the index is the offset.
    records: Vec<ModelRecord>,
    /// First retained offset, as last observed (retention is checked, not predicted).
    low: u64,
    /// Base offsets of the batches: one per append call touching the partition.
    batch_starts: Vec<u64>,
}

impl PartitionModel {
    fn high(&self) -> u64 {
        self.records.len() as u64
    }
}

struct Model {
    partitions: Vec<PartitionModel>,
    committed: BTreeMap<(usize, u32), u64>,
    next_seq: u64,
}

fn ok<T>(what: &str, result: Result<T, LogError>) -> Check<T> {
    result.map_err(|e| TestCaseError::fail(format!("{what}: {e} ({e:?})")))
}

fn open(dir: &Path) -> Check<Log> {
    let mut config = LogConfig::new(dir);
    // Only `enforce_retention` may move a low watermark during a case.
    config.retention_interval = Duration::from_secs(3600);
    config.cache_bytes = 8 * 1024 * 1024;
    ok("open", Log::open(config))
}

fn topic_config(partitions: u32) -> TopicConfig {
    TopicConfig::with_partitions(partitions)
}

fn build(
    model: &mut Model,
    new: &[NewRecord],
    routed_by_key: bool,
) -> (Vec<Record>, Vec<ModelRecord>) {
    new.iter()
        .map(|n| {
            let seq = model.next_seq;
            model.next_seq += 1;
            let mut value = format!("v{seq}|").into_bytes();
            value.extend(std::iter::repeat_n(b'a' + (seq % 26) as u8, n.padding));
            let mut record = match n.key {
                Some(k) => Record::keyed(KEYS[k], value.clone()),
                None => Record::new(value.clone()),
            };
            if n.header {
                record = record.with_header("h", seq.to_string());
            }
            let expected = ModelRecord {
                key: record.key.clone(),
                headers: record.headers.clone(),
                value,
                seq,
                routed_by_key: routed_by_key && n.key.is_some(),
            };
            (record, expected)
        })
        .unzip()
}

async fn apply_append(log: &Log, model: &mut Model, to: Option<u32>, new: &[NewRecord]) -> Check {
    let count = model.partitions.len() as u32;
    let (records, expected) = build(model, new, to.is_none());
    let acks = match to {
        Some(p) => ok("append_to", log.append_to(TOPIC, p % count, records).await)?,
        None => ok("append", log.append(TOPIC, records).await)?,
    };
    prop_assert_eq!(acks.len(), expected.len());
    let mut touched = Vec::new();
    for (ack, record) in acks.iter().zip(expected) {
        prop_assert!(ack.partition < count, "ack {:?}", ack);
        if let Some(p) = to {
            prop_assert_eq!(ack.partition, p % count);
        } else if let Some(key) = &record.key {
            prop_assert_eq!(ack.partition, partition_for_key(key, count), "key routing");
        }
        let partition = &mut model.partitions[ack.partition as usize];
        prop_assert_eq!(ack.offset, partition.high(), "offsets are dense from 0");
        if !touched.contains(&ack.partition) {
            touched.push(ack.partition);
            partition.batch_starts.push(ack.offset);
        }
        partition.records.push(record);
    }
    Ok(())
}

/// Records a read must return: from `offset`, at most `max_records`, within `max_bytes` except
/// that the first record always comes.
fn expected_read(
    partition: &PartitionModel,
    offset: u64,
    max_records: usize,
    max_bytes: usize,
) -> &[ModelRecord] {
    let rest = &partition.records[offset as usize..];
    let (mut count, mut bytes) = (0, 0);
    for record in rest {
        if count >= max_records || (count > 0 && bytes + record.size() > max_bytes) {
            break;
        }
        bytes += record.size();
        count += 1;
    }
    &rest[..count]
}

fn same_records(p: u32, from: u64, got: &[StoredRecord], want: &[ModelRecord]) -> Check {
    prop_assert_eq!(
        got.len(),
        want.len(),
        "record count read from {}@{}",
        p,
        from
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        prop_assert_eq!(g.partition, p);
        prop_assert_eq!(g.offset, from + i as u64, "offsets are dense");
        prop_assert_eq!(&g.key, &w.key, "key at {}@{}", p, g.offset);
        prop_assert_eq!(&g.headers, &w.headers, "headers at {}@{}", p, g.offset);
        prop_assert_eq!(&g.value, &w.value, "value at {}@{}", p, g.offset);
    }
    Ok(())
}

fn apply_read(log: &Log, model: &Model, op: &Op) -> Check {
    let Op::Read {
        partition,
        offset,
        max_records,
        max_bytes,
    } = *op
    else {
        unreachable!("apply_read takes reads only")
    };
    let p = partition % model.partitions.len() as u32;
    let part = &model.partitions[p as usize];
    let (low, high) = (part.low, part.high());
    let offset = offset % (high + 3);
    let limits = ReadLimits {
        max_records,
        max_bytes,
    };
    let result = log.read(TOPIC, p, offset, limits);
    if offset < low || offset > high {
        match result {
            Err(LogError::OffsetOutOfRange {
                offset: o,
                earliest,
                latest,
                ..
            }) => {
                prop_assert_eq!((o, earliest, latest), (offset, low, high));
            }
            other => prop_assert!(
                false,
                "read {}@{} of {}..{}: {:?}",
                p,
                offset,
                low,
                high,
                other
            ),
        }
        return Ok(());
    }
    let got = ok("read", result)?;
    prop_assert!(got.iter().all(|r| r.offset < high), "read at or past high");
    same_records(
        p,
        offset,
        &got,
        expected_read(part, offset, max_records, max_bytes),
    )
}

fn apply_commit(log: &Log, model: &mut Model, group: usize, partition: u32, pick: u64) -> Check {
    let p = partition % model.partitions.len() as u32;
    let part = &model.partitions[p as usize];
    let (low, high) = (part.low, part.high());
    let offset = pick % (high + 2);
    let current = model.committed.get(&(group, p)).copied();
    let result = log.commit_offset(GROUPS[group], TOPIC, p, offset);
    if offset > high {
        match result {
            Err(LogError::OffsetOutOfRange {
                earliest, latest, ..
            }) => prop_assert_eq!((earliest, latest), (low, high)),
            other => prop_assert!(false, "commit past high {}: {:?}", offset, other),
        }
    } else if let Some(committed) = current.filter(|c| offset < *c) {
        match result {
            Err(LogError::CommitRegression {
                offset: o,
                committed: c,
                ..
            }) => prop_assert_eq!((o, c), (offset, committed)),
            other => prop_assert!(false, "backwards commit {}: {:?}", offset, other),
        }
    } else {
        ok("commit", result)?;
        model.committed.insert((group, p), offset);
    }
    Ok(())
}

fn apply_reset(log: &Log, model: &mut Model, group: usize, to: ResetPick) -> Check {
    let (to, expected): (ResetTo, Vec<(u32, u64)>) = {
        let parts = model.partitions.iter().enumerate();
        match to {
            ResetPick::Earliest => (
                ResetTo::Earliest,
                parts.map(|(p, m)| (p as u32, m.low)).collect(),
            ),
            ResetPick::Latest => (
                ResetTo::Latest,
                parts.map(|(p, m)| (p as u32, m.high())).collect(),
            ),
            ResetPick::Offset(pick) => {
                let max = model.partitions.iter().map(PartitionModel::high).max();
                let offset = pick % (max.unwrap_or(0) + 4);
                let expected = parts
                    .map(|(p, m)| (p as u32, offset.clamp(m.low, m.high())))
                    .collect();
                (ResetTo::Offset(offset), expected)
            }
            ResetPick::Timestamp { future } => {
                let hour_ms = 3_600_000;
                let (to, expected) = if future {
                    (
                        now_ms() + hour_ms,
                        parts.map(|(p, m)| (p as u32, m.high())).collect(),
                    )
                } else {
                    (
                        now_ms() - hour_ms,
                        parts.map(|(p, m)| (p as u32, m.low)).collect(),
                    )
                };
                (ResetTo::Timestamp(to), expected)
            }
        }
    };
    let moved = ok("reset", log.reset_offsets(GROUPS[group], TOPIC, to))?;
    prop_assert_eq!(&moved, &expected);
    for (p, offset) in moved {
        model.committed.insert((group, p), offset);
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Deleting a topic forgets its records and every group's offsets on it; a topic of the same
/// name starts again from offset 0.
async fn apply_delete_and_recreate(log: &Log, model: &mut Model) -> Check {
    let count = model.partitions.len() as u32;
    ok("delete", log.delete_topic(TOPIC).await)?;
    prop_assert!(log.topic_names().is_empty());
    prop_assert!(matches!(
        log.watermarks(TOPIC, 0),
        Err(LogError::UnknownTopic(_))
    ));
    ok(
        "recreate",
        log.create_topic(TOPIC, topic_config(count)).await,
    )?;
    model.partitions = (0..count).map(|_| PartitionModel::default()).collect();
    model.committed.clear();
    Ok(())
}

/// Runs retention with `config` in force, then switches retention off again; returns the
/// watermarks and stored bytes before and after, per partition, after checking what holds for
/// any retention run.
async fn retain(log: &Log, model: &mut Model, config: TopicConfig) -> Check<Vec<RetentionStep>> {
    let count = model.partitions.len() as u32;
    let before = ok("describe", log.describe_topic(TOPIC))?;
    ok("alter", log.alter_topic(TOPIC, config).await)?;
    let moved = ok("enforce_retention", log.enforce_retention().await)?;
    ok(
        "alter back",
        log.alter_topic(TOPIC, topic_config(count)).await,
    )?;
    let after = ok("describe", log.describe_topic(TOPIC))?;
    let mut steps = Vec::new();
    for (b, a) in before.partitions.iter().zip(&after.partitions) {
        let part = &mut model.partitions[a.partition as usize];
        prop_assert_eq!(b.low, part.low);
        prop_assert_eq!(a.high, b.high, "retention changed the high watermark");
        prop_assert!(a.low >= b.low, "low went back: {:?} -> {:?}", b, a);
        prop_assert!(a.low <= a.high, "low past high: {:?}", a);
        prop_assert!(
            a.low == a.high || part.batch_starts.contains(&a.low),
            "low {} is not a batch boundary of {:?}",
            a.low,
            part.batch_starts
        );
        prop_assert_eq!(a.bytes == 0, a.low == a.high, "bytes {:?}", a);
        part.low = a.low;
        steps.push(RetentionStep {
            before: *b,
            after: *a,
        });
    }
    let changed = steps.iter().filter(|s| s.after.low != s.before.low).count();
    prop_assert_eq!(moved, changed as u64, "enforce_retention's count");
    Ok(steps)
}

struct RetentionStep {
    before: tidings::log::PartitionInfo,
    after: tidings::log::PartitionInfo,
}

async fn apply_retain_bytes(log: &Log, model: &mut Model, limit: u64) -> Check {
    let mut config = topic_config(model.partitions.len() as u32);
    config.retention_bytes = Some(limit);
    for step in retain(log, model, config).await? {
        let (b, a) = (step.before, step.after);
        if b.bytes <= limit {
            prop_assert_eq!(a.low, b.low, "retention deleted below its bound");
        }
        let single_batch = model.partitions[a.partition as usize]
            .batch_starts
            .last()
            .is_some_and(|last| *last == a.low);
        prop_assert!(
            a.bytes <= limit || single_batch,
            "{} bytes kept over a bound of {}: {:?}",
            a.bytes,
            limit,
            a
        );
    }
    Ok(())
}

/// Every batch is older than 1 ms after a short sleep, so time retention may delete all of them
/// except what protected group g0 has not consumed. (The log stamps batches with the wall clock,
/// so a paused tokio clock cannot stand in for the sleep.)
async fn apply_retain_time(log: &Log, model: &mut Model, protect: bool) -> Check {
    let mut config = topic_config(model.partitions.len() as u32);
    config.retention_ms = Some(1);
    if protect {
        config.protected_groups = vec![GROUPS[0].to_owned()];
    }
    std::thread::sleep(Duration::from_millis(3));
    for step in retain(log, model, config).await? {
        let (b, a) = (step.before, step.after);
        if !protect {
            prop_assert_eq!(a.low, a.high, "everything expired: {:?}", a);
            continue;
        }
        let floor = model.committed.get(&(0, a.partition)).copied().unwrap_or(0);
        prop_assert!(
            a.low <= b.low.max(floor),
            "time retention passed protected group g0 at {}: {:?} -> {:?}",
            floor,
            b,
            a
        );
    }
    Ok(())
}

/// Compares everything observable with the model.
fn check_state(log: &Log, model: &Model) -> Check {
    prop_assert_eq!(log.topic_names(), vec![TOPIC.to_owned()]);
    let info = ok("describe", log.describe_topic(TOPIC))?;
    prop_assert_eq!(info.partitions.len(), model.partitions.len());
    for (p, part) in model.partitions.iter().enumerate() {
        let p = p as u32;
        let (low, high) = (part.low, part.high());
        prop_assert_eq!(ok("watermarks", log.watermarks(TOPIC, p))?, (low, high));
        prop_assert_eq!(
            (
                info.partitions[p as usize].low,
                info.partitions[p as usize].high
            ),
            (low, high)
        );
        check_records(log, p, part)?;
        if low > 0 {
            let below = log.read(TOPIC, p, low - 1, ReadLimits::default());
            prop_assert!(
                matches!(below, Err(LogError::OffsetOutOfRange { earliest, latest, .. })
                    if earliest == low && latest == high),
                "read below low {}: {:?}",
                low,
                below
            );
        }
        let past = log.read(TOPIC, p, high + 1, ReadLimits::default());
        prop_assert!(
            matches!(past, Err(LogError::OffsetOutOfRange { earliest, latest, .. })
                if earliest == low && latest == high),
            "read past high {}: {:?}",
            high,
            past
        );
    }
    check_groups(log, model)
}

/// The retained records are exactly the model's, contiguous from low to high, with per-key
/// order and partition preserved and timestamps never going back.
fn check_records(log: &Log, p: u32, part: &PartitionModel) -> Check {
    let (low, high) = (part.low, part.high());
    let mut all = Vec::new();
    let mut next = low;
    while next < high {
        let chunk = ok("read", log.read(TOPIC, p, next, ReadLimits::records(7)))?;
        prop_assert!(
            !chunk.is_empty(),
            "empty read at {}@{} below high {}",
            p,
            next,
            high
        );
        next += chunk.len() as u64;
        all.extend(chunk);
    }
    prop_assert!(ok(
        "read at high",
        log.read(TOPIC, p, high, ReadLimits::default())
    )?
    .is_empty());
    same_records(p, low, &all, &part.records[low as usize..])?;
    prop_assert!(all
        .windows(2)
        .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms));
    let count = log
        .describe_topic(TOPIC)
        .map_or(0, |t| t.partitions.len() as u32);
    for key in KEYS {
        let keyed: Vec<&ModelRecord> = part.records[low as usize..]
            .iter()
            .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
            .collect();
        prop_assert!(
            keyed.windows(2).all(|w| w[0].seq < w[1].seq),
            "{} out of order",
            key
        );
        if keyed.iter().any(|r| r.routed_by_key) {
            prop_assert_eq!(partition_for_key(key.as_bytes(), count), p);
        }
    }
    Ok(())
}

fn check_groups(log: &Log, model: &Model) -> Check {
    for (g, group) in GROUPS.iter().enumerate() {
        let lag = ok("group_lag", log.group_lag(group, TOPIC))?;
        for (p, part) in model.partitions.iter().enumerate() {
            let p = p as u32;
            let committed = model.committed.get(&(g, p)).copied();
            prop_assert_eq!(
                ok("committed", log.committed_offset(group, TOPIC, p))?,
                committed,
                "{} on {}",
                group,
                p
            );
            let from = committed.unwrap_or(part.low).max(part.low);
            let l = lag[p as usize];
            prop_assert_eq!(
                (l.partition, l.committed, l.low, l.high, l.lag),
                (p, committed, part.low, part.high(), part.high() - from)
            );
        }
    }
    let mut groups: Vec<String> = model
        .committed
        .keys()
        .map(|(g, _)| GROUPS[*g].to_owned())
        .collect();
    groups.dedup();
    prop_assert_eq!(ok("group_names", log.group_names())?, groups);
    Ok(())
}

async fn run_case(partitions: u32, ops: Vec<Op>) -> Check {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut log = open(dir.path())?;
    ok(
        "create",
        log.create_topic(TOPIC, topic_config(partitions)).await,
    )?;
    let mut model = Model {
        partitions: (0..partitions).map(|_| PartitionModel::default()).collect(),
        committed: BTreeMap::new(),
        next_seq: 0,
    };
    for op in &ops {
        match op {
            Op::Append(new) => apply_append(&log, &mut model, None, new).await?,
            Op::AppendTo(p, new) => apply_append(&log, &mut model, Some(*p), new).await?,
            Op::Read { .. } => apply_read(&log, &model, op)?,
            Op::Commit {
                group,
                partition,
                offset,
            } => apply_commit(&log, &mut model, *group, *partition, *offset)?,
            Op::Reset(group, to) => apply_reset(&log, &mut model, *group, *to)?,
            Op::RetainBytes(limit) => apply_retain_bytes(&log, &mut model, *limit).await?,
            Op::RetainTimeProtected => apply_retain_time(&log, &mut model, true).await?,
            Op::RetainTimeAll => apply_retain_time(&log, &mut model, false).await?,
            Op::DeleteAndRecreate => apply_delete_and_recreate(&log, &mut model).await?,
            Op::Reopen => {
                drop(log);
                log = open(dir.path())?;
            }
        }
        check_state(&log, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        // A failure prints its minimal operation list; no regression file is written.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_log_matches_a_simple_model(
        partitions in 1u32..=4,
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(run_case(partitions, ops))?;
    }
}

/// The model of `group_names` is the sorted set of groups that committed.
fn committing_groups_case(groups: Vec<String>) -> Check {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let log = open(dir.path())?;
    runtime.block_on(async {
        ok("create", log.create_topic(TOPIC, topic_config(1)).await)?;
        ok("append", log.append(TOPIC, vec![Record::new("x")]).await).map(drop)
    })?;
    for group in &groups {
        ok("commit", log.commit_offset(group, TOPIC, 0, 1))?;
    }
    let expected: std::collections::BTreeSet<String> = groups.into_iter().collect();
    let expected: Vec<String> = expected.into_iter().collect();
    prop_assert_eq!(ok("group_names", log.group_names())?, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn group_names_are_the_sorted_set_of_committing_groups(
        groups in prop::collection::vec("[ab][-.ab]{0,2}", 1..6)
    ) {
        committing_groups_case(groups)?;
    }
}

/// Under concurrent appends, retention never moves the low watermark past the high watermark.
#[test]
fn retention_during_concurrent_appends_keeps_low_at_or_below_high() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path()).expect("open");
    let mut config = topic_config(1);
    config.retention_bytes = Some(1);
    runtime
        .block_on(log.create_topic(TOPIC, config))
        .expect("create");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    log.append_blocking(TOPIC, vec![Record::new(vec![7u8; 100])])
                        .expect("append");
                }
            })
        })
        .collect();
    let watcher = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut worst = None;
            while !stop.load(Ordering::Relaxed) {
                let (low, high) = log.watermarks(TOPIC, 0).expect("watermarks");
                if low > high {
                    worst = Some((low, high));
                }
            }
            worst
        })
    };
    for _ in 0..200 {
        runtime
            .block_on(log.enforce_retention())
            .expect("retention");
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("writer");
    }
    let worst = watcher.join().expect("watcher");
    assert_eq!(worst, None, "low passed high");
}
