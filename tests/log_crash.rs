//! Proves that a SIGKILL at a random moment during concurrent durable appends loses nothing that
//! was acknowledged: after reopening, every acknowledged record is present exactly once where its
//! acknowledgement said, offsets are dense, no record is torn, each writer's records keep their
//! order, and appending continues at the high watermark.
//!
//! As in sled's `tests/test_crash_recovery.rs`, the test re-runs its own executable as the writer
//! (the test `crash_child_appends_until_killed`, which does nothing unless `CHILD_DIR_ENV` is
//! set), reads the child's acknowledgements from its stdout and kills it.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tidings::log::partition_for_key;
use tidings::log::{Log, LogConfig, ReadLimits, Record, TopicConfig};

const CHILD_TEST: &str = "crash_child_appends_until_killed";
const CHILD_DIR_ENV: &str = "TIDINGS_CRASH_TEST_DIR";
const CHILD_ROUND_ENV: &str = "TIDINGS_CRASH_TEST_ROUND";
const TOPIC: &str = "crash";
const PARTITIONS: u32 = 4;
const WRITERS: u32 = 8;
/// Sequence numbers of round `r` start at `r * ROUND_SEQ_BASE`, so they grow across rounds.
const ROUND_SEQ_BASE: u64 = 10_000_000;
/// The child stops on its own after this long, should the parent never kill it.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

/// Identity of a record: (round, writer, sequence number).
type Id = (u64, u32, u64);

fn key_of(writer: u32) -> String {
    format!("writer-{writer}")
}

/// Records of one append call starting at `seq`: 1 to 3, so multi-record appends are covered.
fn call_size(seq: u64) -> u64 {
    1 + seq % 3
}

/// A value that names its record and carries a padding derived from it, so a torn or mixed-up
/// value cannot decode.
fn encode_value((round, writer, seq): Id) -> Vec<u8> {
    let mut value = format!("r{round} w{writer} s{seq} |").into_bytes();
    let fill = (seq as u8).wrapping_mul(31).wrapping_add(writer as u8);
    value.extend(std::iter::repeat_n(fill, (seq % 200) as usize));
    value
}

fn decode_value(value: &[u8]) -> Option<Id> {
    let text_end = value.iter().position(|b| *b == b'|')?;
    let text = std::str::from_utf8(&value[..text_end]).ok()?;
    let mut fields = text.split_whitespace();
    let round = fields.next()?.strip_prefix('r')?.parse().ok()?;
    let writer = fields.next()?.strip_prefix('w')?.parse().ok()?;
    let seq = fields.next()?.strip_prefix('s')?.parse().ok()?;
    let id = (round, writer, seq);
    (fields.next().is_none() && encode_value(id) == value).then_some(id)
}

/// The writer: run as a child process by the parent test; passes at once when run normally.
#[test]
fn crash_child_appends_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let round: u64 = std::env::var(CHILD_ROUND_ENV)
        .expect("round given")
        .parse()
        .expect("round is a number");
    let log = Log::open(LogConfig::new(dir)).expect("child opens the log");
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut seq = round * ROUND_SEQ_BASE;
                while started.elapsed() < CHILD_LIFETIME {
                    let ids: Vec<Id> = (seq..seq + call_size(seq))
                        .map(|s| (round, writer, s))
                        .collect();
                    let records = ids
                        .iter()
                        .map(|id| Record::keyed(key_of(writer), encode_value(*id)))
                        .collect();
                    let acks = log.append_blocking(TOPIC, records).expect("append");
                    let mut lines = String::new();
                    for (id, ack) in ids.iter().zip(&acks) {
                        lines.push_str(&format!(
                            "ACK {} {} {} {} {}\n",
                            id.0, id.1, id.2, ack.partition, ack.offset
                        ));
                    }
                    let mut out = std::io::stdout().lock();
                    if out
                        .write_all(lines.as_bytes())
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        return; // the parent is gone
                    }
                    seq += ids.len() as u64;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer thread");
    }
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    id: Id,
    partition: u32,
    offset: u64,
}

/// Parses an acknowledgement line; the test harness's own output on the same stream is skipped.
fn parse_ack(line: &str) -> Option<Ack> {
    let line = &line[line.find("ACK ")?..];
    let f: Vec<u64> = line[4..]
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    match f[..] {
        [round, writer, seq, partition, offset] => Some(Ack {
            id: (round, writer as u32, seq),
            partition: partition as u32,
            offset,
        }),
        _ => None,
    }
}

fn spawn_writer(dir: &Path, round: u64) -> Child {
    Command::new(std::env::current_exe().expect("test executable"))
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_ROUND_ENV, round.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the writer child")
}

/// Lets the child write until `kill_after` acknowledgements arrived, kills it with SIGKILL and
/// returns every complete acknowledgement line it wrote before dying.
fn run_round(dir: &Path, round: u64, kill_after: usize, extra_wait: Duration) -> Vec<Ack> {
    let mut child = spawn_writer(dir, round);
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                // A line cut by the kill has no newline; it was never a complete acknowledgement.
                Ok(_) if line.ends_with('\n') => {
                    if lines_tx.send(line).is_err() {
                        return;
                    }
                }
                Ok(_) => return,
            }
        }
    });
    let mut acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acks.len() < kill_after {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => acks.extend(parse_ack(&line)),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let mut stderr = String::new();
                let _ = child
                    .stderr
                    .take()
                    .map(|mut e| e.read_to_string(&mut stderr));
                panic!(
                    "round {round}: the writer gave {} of {kill_after} acks, then \
                     stopped:\n{stderr}",
                    acks.len()
                );
            }
        }
    }
    std::thread::sleep(extra_wait);
    child.kill().expect("SIGKILL the writer");
    let status = child.wait().expect("reap the writer");
    assert!(!status.success(), "the writer exited by itself: {status}");
    reader.join().expect("stdout reader");
    acks.extend(lines.try_iter().filter_map(|line| parse_ack(&line)));
    acks
}

/// Reads a whole partition, checking dense offsets and that every record decodes and sits in
/// its key's partition; returns the records' identities in offset order.
fn read_partition(log: &Log, partition: u32) -> Vec<Id> {
    let (low, high) = log.watermarks(TOPIC, partition).unwrap();
    assert_eq!(low, 0, "no retention configured, yet low is {low}");
    let mut ids = Vec::new();
    let mut next = 0;
    while next < high {
        let records = log
            .read(TOPIC, partition, next, ReadLimits::records(1000))
            .unwrap();
        assert!(
            !records.is_empty(),
            "nothing read at {partition}@{next} < {high}"
        );
        for record in records {
            assert_eq!(record.offset, next, "offsets are dense in {partition}");
            let id = decode_value(&record.value)
                .unwrap_or_else(|| panic!("torn or foreign value at {partition}@{next}"));
            assert_eq!(record.key, Some(key_of(id.1).into_bytes()), "key at {next}");
            assert_eq!(
                partition_for_key(key_of(id.1).as_bytes(), PARTITIONS),
                partition
            );
            ids.push(id);
            next += 1;
        }
    }
    ids
}

/// Reopens the log and checks it against every acknowledgement received so far; returns the
/// high watermarks.
fn verify(dir: &Path, acks: &[Ack], rounds: u64) -> Vec<u64> {
    let log = Log::open(LogConfig::new(dir)).expect("reopen after the crash");
    let mut place: HashMap<Id, (u32, u64)> = HashMap::new();
    let mut highs = Vec::new();
    for partition in 0..PARTITIONS {
        let ids = read_partition(&log, partition);
        let mut last_seq: BTreeMap<u32, u64> = BTreeMap::new();
        for (offset, id) in ids.iter().enumerate() {
            let previous = place.insert(*id, (partition, offset as u64));
            assert!(
                previous.is_none(),
                "{id:?} stored twice: {previous:?} and {partition}@{offset}"
            );
            // Sequence numbers already carry the round, so they grow across rounds too.
            let seq = id.2;
            if let Some(last) = last_seq.insert(id.1, seq) {
                assert!(last < seq, "writer {} went back from {last} to {seq}", id.1);
            }
        }
        highs.push(ids.len() as u64);
    }
    for ack in acks {
        assert_eq!(
            place.get(&ack.id),
            Some(&(ack.partition, ack.offset)),
            "acknowledged record {:?} lost or moved",
            ack
        );
    }
    check_writer_prefixes(&place, acks, rounds);
    highs
}

/// Each writer's records of a round are a gap-free run from the round's first sequence number,
/// covering everything acknowledged plus at most the one append call in flight at the kill.
fn check_writer_prefixes(place: &HashMap<Id, (u32, u64)>, acks: &[Ack], rounds: u64) {
    for round in 0..rounds {
        for writer in 0..WRITERS {
            let base = round * ROUND_SEQ_BASE;
            let stored = (base..).take_while(|s| place.contains_key(&(round, writer, *s)));
            let end = stored.last().map_or(base, |s| s + 1);
            let count = place
                .keys()
                .filter(|(r, w, _)| (*r, *w) == (round, writer))
                .count() as u64;
            assert_eq!(count, end - base, "round {round} writer {writer} has a gap");
            let acked_end = acks
                .iter()
                .filter(|a| (a.id.0, a.id.1) == (round, writer))
                .map(|a| a.id.2 + 1)
                .max()
                .unwrap_or(base);
            assert!(
                end == acked_end || end == acked_end + call_size(acked_end),
                "round {round} writer {writer}: stored up to {end}, acked up to {acked_end}"
            );
        }
    }
}

/// A small, varying seed (printed, to make a failing run's kill points known).
fn seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(LogConfig::new(dir.path())).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime
            .block_on(log.create_topic(TOPIC, TopicConfig::with_partitions(PARTITIONS)))
            .unwrap();
    }
    let seed = seed();
    let kill_points: Vec<(usize, Duration)> = [300, 2_500, 1_000, 4_000, 150]
        .iter()
        .enumerate()
        .map(|(i, base)| {
            let jitter = (seed >> (i * 11)) % 700;
            let wait = Duration::from_micros((seed >> (i * 7)) % 3_000);
            (*base + jitter as usize, wait)
        })
        .collect();
    println!("seed {seed}: kill points {kill_points:?}");

    let mut acks = Vec::new();
    for (round, (kill_after, wait)) in kill_points.iter().enumerate() {
        let round = round as u64;
        let new = run_round(dir.path(), round, *kill_after, *wait);
        assert!(new.len() >= *kill_after);
        acks.extend(new);
        verify(dir.path(), &acks, round + 1);
    }

    let highs = verify(dir.path(), &acks, kill_points.len() as u64);
    let log = Log::open(LogConfig::new(dir.path())).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for partition in 0..PARTITIONS {
        let acks = runtime
            .block_on(log.append_to(TOPIC, partition, vec![Record::new("after")]))
            .expect("append after recovery");
        let high = highs[partition as usize];
        assert_eq!((acks[0].partition, acks[0].offset), (partition, high));
        assert_eq!(log.watermarks(TOPIC, partition).unwrap(), (0, high + 1));
        let read = log
            .read(TOPIC, partition, high, ReadLimits::default())
            .unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].value, b"after");
    }
}
