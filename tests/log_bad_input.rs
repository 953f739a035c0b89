//! Proves that bad input to the log — names, partition counts, offsets, record sizes, group
//! names, foreign or corrupt data directories, a directory already in use — gets a typed error
//! whose message names what was wrong, changes nothing, and never panics.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, PoisonError, RwLock, RwLockWriteGuard};
use std::time::Duration;

use tidings::log::{
    Log, LogConfig, LogError, ReadLimits, Record, ResetTo, TopicConfig, TopicInfo, MAX_PARTITIONS,
};
use tokio::runtime::Runtime;

const TOPIC: &str = "chat";
const GROUP: &str = "readers";
const LOCK_HOLDER_TEST: &str = "lock_holder_child";
const LOCK_HOLDER_ENV: &str = "TIDINGS_LOCK_HOLDER_DIR";

/// A child forked while this process has a `Log` open shares the directory lock until the child
/// execs, so a test that closes a log and expects its directory free at once must not overlap a
/// spawn: spawns hold this lock shared, such tests hold it exclusively (as `tests/cli_admin.rs`).
static SPAWNING: RwLock<()> = RwLock::new(());

fn no_spawns() -> RwLockWriteGuard<'static, ()> {
    SPAWNING.write().unwrap_or_else(PoisonError::into_inner)
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn config(dir: &Path) -> LogConfig {
    LogConfig::new(dir)
}

/// A log with topic `chat` (2 partitions, 3 records each) and group `readers` at 2 on partition 0.
fn seeded(rt: &Runtime, config: LogConfig) -> Log {
    let log = Log::open(config).unwrap();
    rt.block_on(async {
        log.create_topic(TOPIC, TopicConfig::with_partitions(2))
            .await
            .unwrap();
        for partition in 0..2 {
            let records = (0..3).map(|i| Record::new(format!("m{i}"))).collect();
            log.append_to(TOPIC, partition, records).await.unwrap();
        }
    });
    log.commit_offset(GROUP, TOPIC, 0, 2).unwrap();
    log
}

/// Everything a bad call must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    topics: Vec<TopicInfo>,
    groups: Vec<String>,
    offsets: BTreeMap<(String, String, u32), Option<u64>>,
}

fn snapshot(log: &Log) -> Snapshot {
    let topics: Vec<TopicInfo> = log
        .topic_names()
        .iter()
        .map(|name| log.describe_topic(name).unwrap())
        .collect();
    let groups = log.group_names().unwrap();
    let mut offsets = BTreeMap::new();
    for group in &groups {
        for topic in &topics {
            for p in &topic.partitions {
                let committed = log
                    .committed_offset(group, &topic.name, p.partition)
                    .unwrap();
                offsets.insert((group.clone(), topic.name.clone(), p.partition), committed);
            }
        }
    }
    Snapshot {
        topics,
        groups,
        offsets,
    }
}

/// A log and the state every refused call must leave it in.
struct Guard<'a> {
    log: &'a Log,
    before: Snapshot,
}

impl<'a> Guard<'a> {
    fn new(log: &'a Log) -> Self {
        Guard {
            log,
            before: snapshot(log),
        }
    }

    fn expect<F: Fn(&LogError) -> bool>(&self, is: F, mentions: &[&str]) -> Refusal<'_, 'a, F> {
        Refusal {
            guard: self,
            is,
            mentions: mentions.iter().map(|m| m.to_string()).collect(),
        }
    }

    /// Asserts `result` is the expected error, its message mentions each of `mentions`, and the
    /// log is unchanged.
    #[track_caller]
    fn refused<T: std::fmt::Debug>(
        &self,
        result: Result<T, LogError>,
        expected: impl Fn(&LogError) -> bool,
        mentions: &[&str],
    ) {
        let error = match result {
            Err(error) => error,
            Ok(value) => panic!("accepted, returning {value:?}"),
        };
        assert!(expected(&error), "unexpected error {error:?}");
        let message = error.to_string();
        for word in mentions {
            assert!(
                message.contains(word),
                "{message:?} does not mention {word:?}"
            );
        }
        let after = snapshot(self.log);
        assert_eq!(after, self.before, "state changed after {error:?}");
    }
}

/// An expected refusal: which error, and words its message must contain.
struct Refusal<'g, 'a, F> {
    guard: &'g Guard<'a>,
    is: F,
    mentions: Vec<String>,
}

impl<F: Fn(&LogError) -> bool> Refusal<'_, '_, F> {
    #[track_caller]
    fn check<T: std::fmt::Debug>(&self, result: Result<T, LogError>) {
        let mentions: Vec<&str> = self.mentions.iter().map(String::as_str).collect();
        self.guard.refused(result, &self.is, &mentions);
    }
}

fn bad_names() -> Vec<String> {
    ["", ".", "..", "a/b", "spa ce", "ünï", "semi;colon", "tab\t"]
        .into_iter()
        .map(String::from)
        .chain(["x".repeat(250)])
        .collect()
}

#[test]
fn invalid_topic_names_are_refused_by_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = seeded(&rt, config(dir.path()));
    let g = Guard::new(&log);
    for name in bad_names() {
        let quoted = format!("{name:?}");
        let invalid = g.expect(
            |e| matches!(e, LogError::InvalidTopicName { name: n, .. } if *n == name),
            &["invalid topic name", &quoted],
        );
        let config = TopicConfig::with_partitions(1);
        invalid.check(rt.block_on(log.create_topic(&name, config)));
        let record = || vec![Record::new("x")];
        invalid.check(rt.block_on(log.append(&name, record())));
        invalid.check(rt.block_on(log.append_to(&name, 0, record())));
        invalid.check(log.append_blocking(&name, record()));
        invalid.check(log.read(&name, 0, 0, ReadLimits::default()));
        invalid.check(log.watermarks(&name, 0));
        invalid.check(log.describe_topic(&name));
        invalid.check(rt.block_on(log.delete_topic(&name)));
        invalid.check(log.commit_offset(GROUP, &name, 0, 0));
        invalid.check(log.committed_offset(GROUP, &name, 0));
        invalid.check(log.reset_offsets(GROUP, &name, ResetTo::Earliest));
        invalid.check(log.group_lag(GROUP, &name));
        invalid.check(log.subscribe(&name, 0));
        let wait = log.wait_for(&name, 0, 0, Duration::from_millis(1));
        invalid.check(rt.block_on(wait));
    }
}

#[test]
fn alter_topic_refuses_an_invalid_topic_name() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = seeded(&rt, config(dir.path()));
    let g = Guard::new(&log);
    for name in bad_names() {
        let config = TopicConfig::with_partitions(1);
        g.refused(
            rt.block_on(log.alter_topic(&name, config)),
            |e| matches!(e, LogError::InvalidTopicName { .. }),
            &["invalid topic name"],
        );
    }
}

#[test]
fn partition_counts_out_of_range_and_shrinking_are_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = seeded(&rt, config(dir.path()));
    let g = Guard::new(&log);
    let invalid = |e: &LogError| matches!(e, LogError::InvalidConfig(_));
    let too_many = (MAX_PARTITIONS + 1).to_string();
    for (partitions, shown) in [(0, "got 0"), (MAX_PARTITIONS + 1, too_many.as_str())] {
        let config = TopicConfig::with_partitions(partitions);
        let created = rt.block_on(log.create_topic("fresh", config.clone()));
        g.refused(created, invalid, &["partitions", shown]);
        let altered = rt.block_on(log.alter_topic(TOPIC, config));
        g.refused(altered, invalid, &["partitions", shown]);
    }
    let shrink = rt.block_on(log.alter_topic(TOPIC, TopicConfig::with_partitions(1)));
    g.refused(shrink, invalid, &[TOPIC, "has 2 partitions", "not removed"]);

    let mut zero_ms = TopicConfig::with_partitions(2);
    zero_ms.retention_ms = Some(0);
    let altered = rt.block_on(log.alter_topic(TOPIC, zero_ms));
    g.refused(altered, invalid, &["retentionMs"]);
    let mut zero_bytes = TopicConfig::with_partitions(2);
    zero_bytes.retention_bytes = Some(0);
    let created = rt.block_on(log.create_topic("fresh", zero_bytes));
    g.refused(created, invalid, &["retentionBytes"]);
    let mut bad_group = TopicConfig::with_partitions(2);
    bad_group.protected_groups = vec!["no/slash".into()];
    let altered = rt.block_on(log.alter_topic(TOPIC, bad_group));
    let invalid_group = |e: &LogError| matches!(e, LogError::InvalidGroupName { .. });
    g.refused(altered, invalid_group, &["no/slash"]);
}

#[test]
fn creating_an_existing_topic_is_refused_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = seeded(&rt, config(dir.path()));
    let g = Guard::new(&log);
    let again = rt.block_on(log.create_topic(TOPIC, TopicConfig::with_partitions(3)));
    let exists = |e: &LogError| matches!(e, LogError::TopicExists(name) if name == TOPIC);
    g.refused(again, exists, &["\"chat\" already exists"]);
    let read = log.read(TOPIC, 1, 0, ReadLimits::default()).unwrap();
    assert_eq!(read.len(), 3, "records survive a refused re-creation");
}

#[test]
fn unknown_topics_and_partitions_are_refused_without_auto_create() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = seeded(
        &rt,
        LogConfig {
            auto_create_topics: false,
            ..config(dir.path())
        },
    );
    let g = Guard::new(&log);
    let unknown = g.expect(
        |e| matches!(e, LogError::UnknownTopic(name) if name == "nope"),
        &["topic \"nope\" does not exist"],
    );
    let record = || vec![Record::new("x")];
    unknown.check(rt.block_on(log.append("nope", record())));
    unknown.check(rt.block_on(log.append_to("nope", 0, record())));
    unknown.check(log.append_blocking("nope", record()));
    unknown.check(log.read("nope", 0, 0, ReadLimits::default()));
    unknown.check(log.watermarks("nope", 0));
    unknown.check(log.describe_topic("nope"));
    let altered = rt.block_on(log.alter_topic("nope", TopicConfig::with_partitions(1)));
    unknown.check(altered);
    unknown.check(rt.block_on(log.delete_topic("nope")));
    unknown.check(log.commit_offset(GROUP, "nope", 0, 0));
    unknown.check(log.committed_offset(GROUP, "nope", 0));
    unknown.check(log.reset_offsets(GROUP, "nope", ResetTo::Latest));
    unknown.check(log.group_lag(GROUP, "nope"));

    let no_partition = g.expect(
        |e| {
            matches!(
                e,
                LogError::UnknownPartition {
                    partition: 5,
                    partitions: 2,
                    ..
                }
            )
        },
        &["\"chat\" has no partition 5 (it has 2)"],
    );
    no_partition.check(rt.block_on(log.append_to(TOPIC, 5, record())));
    no_partition.check(log.read(TOPIC, 5, 0, ReadLimits::default()));
    no_partition.check(log.watermarks(TOPIC, 5));
    no_partition.check(log.commit_offset(GROUP, TOPIC, 5, 0));
    no_partition.check(log.committed_offset(GROUP, TOPIC, 5));
    no_partition.check(log.subscribe(TOPIC, 5));
}

#[test]
fn auto_create_makes_a_one_partition_topic_on_first_append() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = seeded(&rt, config(dir.path()));
    let acks = rt
        .block_on(log.append("fresh", vec![Record::keyed("k", "v")]))
        .unwrap();
    assert_eq!((acks[0].partition, acks[0].offset), (0, 0));
    let info = log.describe_topic("fresh").unwrap();
    assert_eq!(info.config, TopicConfig::with_partitions(1));
    assert_eq!(info.partitions.len(), 1);
    assert_eq!((info.partitions[0].low, info.partitions[0].high), (0, 1));
    assert_eq!(
        log.topic_names(),
        vec![TOPIC.to_owned(), "fresh".to_owned()]
    );
}

#[test]
fn a_refused_append_to_a_missing_partition_creates_no_topic() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = seeded(&rt, config(dir.path()));
    let g = Guard::new(&log);
    let appended = rt.block_on(log.append_to("fresh", 3, vec![Record::new("x")]));
    g.refused(
        appended,
        |e| matches!(e, LogError::UnknownPartition { partition: 3, .. }),
        &["\"fresh\" has no partition 3"],
    );
}

#[test]
fn offsets_past_the_high_watermark_are_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = seeded(&rt, config(dir.path()));
    let g = Guard::new(&log);
    assert!(log
        .read(TOPIC, 0, 3, ReadLimits::default())
        .unwrap()
        .is_empty());
    for offset in [4, 1000, u64::MAX] {
        let shown = format!("offset {offset} ");
        let out_of_range = g.expect(
            |e| {
                matches!(e, LogError::OffsetOutOfRange { offset: o, earliest: 0, latest: 3, .. }
                    if *o == offset)
            },
            &[&shown, "chat/0", "0..3"],
        );
        let read = log.read(TOPIC, 0, offset, ReadLimits::default());
        out_of_range.check(read);
        let committed = log.commit_offset(GROUP, TOPIC, 0, offset);
        out_of_range.check(committed);
        let fresh_group = log.commit_offset("newcomers", TOPIC, 0, offset);
        out_of_range.check(fresh_group);
    }
    let regression = log.commit_offset(GROUP, TOPIC, 0, 1);
    g.refused(
        regression,
        |e| {
            matches!(
                e,
                LogError::CommitRegression {
                    offset: 1,
                    committed: 2,
                    ..
                }
            )
        },
        &["\"readers\"", "chat/0", "back from 2", "reset"],
    );
}

#[test]
fn oversized_and_empty_appends_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = seeded(
        &rt,
        LogConfig {
            max_record_bytes: 1000,
            ..config(dir.path())
        },
    );
    let g = Guard::new(&log);
    let too_large = g.expect(
        |e| {
            matches!(
                e,
                LogError::RecordTooLarge {
                    size: 1001,
                    limit: 1000
                }
            )
        },
        &["1001 bytes", "limit of 1000"],
    );
    let oversized = [
        Record::new(vec![0u8; 1001]),
        Record::keyed(vec![1u8; 500], vec![0u8; 501]),
        Record::new(vec![0u8; 1000]).with_header("h", vec![]),
    ];
    for big in oversized {
        let batch = vec![Record::new("fine"), big, Record::new("also fine")];
        too_large.check(rt.block_on(log.append(TOPIC, batch.clone())));
        too_large.check(rt.block_on(log.append_to(TOPIC, 1, batch.clone())));
        too_large.check(log.append_blocking(TOPIC, batch));
    }
    let empty = g.expect(
        |e| matches!(e, LogError::EmptyAppend),
        &["at least one record"],
    );
    empty.check(rt.block_on(log.append(TOPIC, vec![])));
    empty.check(rt.block_on(log.append_to(TOPIC, 0, vec![])));
    empty.check(log.append_blocking(TOPIC, vec![]));

    let exactly = rt
        .block_on(log.append_to(
            TOPIC,
            1,
            vec![Record::keyed(vec![1u8; 400], vec![0u8; 600])],
        ))
        .expect("a record of exactly the limit is accepted");
    assert_eq!((exactly[0].partition, exactly[0].offset), (1, 3));
}

#[test]
fn invalid_group_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = seeded(&rt, config(dir.path()));
    let g = Guard::new(&log);
    for group in bad_names() {
        let quoted = format!("{group:?}");
        let invalid = g.expect(
            |e| matches!(e, LogError::InvalidGroupName { name, .. } if *name == group),
            &["invalid consumer group name", &quoted],
        );
        invalid.check(log.commit_offset(&group, TOPIC, 0, 1));
        invalid.check(log.committed_offset(&group, TOPIC, 0));
        invalid.check(log.reset_offsets(&group, TOPIC, ResetTo::Earliest));
        invalid.check(log.group_lag(&group, TOPIC));
        invalid.check(log.group_topics(&group));
    }
}

/// Every file under `dir` with its contents.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(tree(&path));
            files.insert(path, Vec::new());
        } else {
            let content = std::fs::read(&path).unwrap();
            files.insert(path, content);
        }
    }
    files
}

#[test]
fn a_foreign_directory_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "my notes").unwrap();
    std::fs::create_dir(dir.path().join("photos")).unwrap();
    let before = tree(dir.path());
    let error = Log::open(config(dir.path())).unwrap_err();
    assert!(
        matches!(&error, LogError::ForeignDirectory { path, .. } if path == dir.path()),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("is not a Tidings data directory"),
        "{message}"
    );
    assert!(message.contains("no FORMAT file"), "{message}");
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert_eq!(
        tree(dir.path()),
        before,
        "the foreign directory was modified"
    );
}

#[test]
fn a_format_file_of_another_version_is_refused() {
    let message = refused_with_format("tidings-data 3\n");
    assert!(message.contains("tidings-data 3"), "{message}");
    assert!(message.contains("tidings-data 2"), "{message}");
}

/// A directory of format 1 (made by an earlier 0.x version, with the chat store inside the
/// log's engine) is refused untouched, with a message that says so.
#[test]
fn a_directory_of_an_earlier_0x_version_is_refused_with_a_clear_error() {
    let message = refused_with_format("tidings-data 1\n");
    assert!(
        message.contains("made by an earlier 0.x version"),
        "{message}"
    );
    assert!(message.contains("cannot open it"), "{message}");
}

/// Makes a data directory, rewrites its `FORMAT` to `format`, and opens it again: the open
/// must be refused as a foreign directory and change nothing. Returns the refusal's message.
fn refused_with_format(format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    drop(Log::open(config(dir.path())).unwrap());
    std::fs::write(dir.path().join("FORMAT"), format).unwrap();
    let before = tree(dir.path());
    let error = Log::open(config(dir.path())).unwrap_err();
    assert!(
        matches!(error, LogError::ForeignDirectory { .. }),
        "{error:?}"
    );
    assert_eq!(tree(dir.path()), before, "a refused directory was modified");
    error.to_string()
}

/// Opens the log on another thread, so that a hang fails the test instead of stalling it.
fn open_with_timeout(config: LogConfig) -> Result<Log, LogError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(Log::open(config)));
    rx.recv_timeout(Duration::from_secs(30))
        .expect("Log::open hangs (or panicked) on a corrupt engine")
}

fn garbage(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Creates a log with records, closes it, overwrites engine files with `damage` and opens it
/// twice (the failed first open must not leave the directory locked).
#[track_caller]
fn assert_damaged_engine_is_refused(damage: &[(&str, Vec<u8>)]) {
    let _no_spawns = no_spawns();
    let dir = tempfile::tempdir().unwrap();
    drop(seeded(&runtime(), config(dir.path())));
    for (name, bytes) in damage {
        std::fs::write(dir.path().join("engine").join(name), bytes).unwrap();
    }
    for attempt in 0..2 {
        match open_with_timeout(config(dir.path())) {
            Err(LogError::Corrupt { .. } | LogError::Storage(_)) => {}
            Err(other) => panic!("attempt {attempt}: {other:?}"),
            Ok(log) => panic!("opened a damaged engine as {:?}", snapshot(&log)),
        }
    }
}

#[test]
fn an_engine_with_garbage_db_and_conf_is_an_error_not_a_panic() {
    assert_damaged_engine_is_refused(&[("db", garbage(64 * 1024)), ("conf", garbage(100))]);
}

#[test]
fn an_engine_with_a_garbage_conf_is_an_error_not_a_panic() {
    assert_damaged_engine_is_refused(&[("conf", garbage(100))]);
}

#[test]
fn an_engine_with_empty_db_and_conf_is_an_error_not_a_panic() {
    assert_damaged_engine_is_refused(&[("db", vec![]), ("conf", vec![])]);
}

#[test]
fn an_engine_with_a_garbage_db_is_an_error_not_a_panic() {
    assert_damaged_engine_is_refused(&[("db", garbage(64 * 1024))]);
}

#[test]
fn a_missing_engine_directory_is_an_error() {
    let _no_spawns = no_spawns();
    let dir = tempfile::tempdir().unwrap();
    drop(seeded(&runtime(), config(dir.path())));
    std::fs::remove_dir_all(dir.path().join("engine")).unwrap();
    match open_with_timeout(config(dir.path())) {
        Err(LogError::Corrupt { .. } | LogError::Storage(_)) => {}
        Err(other) => panic!("{other:?}"),
        Ok(log) => panic!(
            "opened a data directory without its engine as {:?}",
            snapshot(&log)
        ),
    }
}

#[test]
fn a_directory_held_by_another_log_in_this_process_is_locked() {
    let _no_spawns = no_spawns();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = seeded(&rt, config(dir.path()));
    let g = Guard::new(&log);
    let error = Log::open(config(dir.path())).unwrap_err();
    let pid = format!("pid {}", std::process::id());
    assert!(
        matches!(&error, LogError::Locked { path, .. } if path == dir.path()),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("is in use"), "{message}");
    assert!(message.contains(&pid), "{message}");
    assert_eq!(snapshot(&log), g.before);
    let acks = rt
        .block_on(log.append_to(TOPIC, 0, vec![Record::new("still mine")]))
        .expect("the holder keeps working");
    assert_eq!(acks[0].offset, 3);
    drop(log);
    let reopened = Log::open(config(dir.path())).expect("free once the holder is gone");
    assert_eq!(reopened.watermarks(TOPIC, 0).unwrap(), (0, 4));
}

/// The other process of the next test: holds the log open until its stdin closes. Passes at
/// once when run normally.
#[test]
fn lock_holder_child() {
    let Some(dir) = std::env::var_os(LOCK_HOLDER_ENV) else {
        return;
    };
    let log = Log::open(LogConfig::new(dir)).expect("the holder opens the log");
    let mut out = std::io::stdout().lock();
    out.write_all(b"\nHOLDING\n")
        .and_then(|()| out.flush())
        .unwrap();
    let mut rest = String::new();
    let _ = std::io::stdin().read_line(&mut rest);
    drop(log);
}

#[test]
fn a_directory_held_by_another_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    drop(seeded(&runtime(), config(dir.path())));
    let spawning = SPAWNING.read().unwrap_or_else(PoisonError::into_inner);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            LOCK_HOLDER_TEST,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LOCK_HOLDER_ENV, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // `spawn` returns once the child has exec'd and so closed its copy of every descriptor.
    drop(spawning);
    let stdout = child.stdout.take().unwrap();
    let (tx, holding) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if line.is_ok_and(|l| l == "HOLDING") {
                let _ = tx.send(());
            }
        }
    });
    if holding.recv_timeout(Duration::from_secs(20)).is_err() {
        let _ = child.kill();
        panic!("the holder process never opened the log");
    }

    let error = Log::open(config(dir.path())).unwrap_err();
    let holder = format!(", pid {}", child.id());
    assert!(
        matches!(&error, LogError::Locked { path, holder: h }
            if path == dir.path() && *h == holder),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("is in use by another process"),
        "{message}"
    );
    assert!(
        message.contains(&format!("pid {}", child.id())),
        "{message}"
    );

    drop(child.stdin.take());
    assert!(child.wait().unwrap().success(), "the holder failed");
    let log = Log::open(config(dir.path())).expect("free once the holder exited");
    assert_eq!(log.watermarks(TOPIC, 1).unwrap(), (0, 3));
}
