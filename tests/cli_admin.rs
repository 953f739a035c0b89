//! The admin command line (`tidings topics|produce|tail|groups`), run as the real binary against
//! a temporary data directory; the library API sets up what the CLI cannot (binary values,
//! headers, commits) while no CLI process holds the directory.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{PoisonError, RwLock};

use common::cli::{failure, finish, json_lines, success, StdoutLines};
use serde_json::{json, Value};
use tidings::log::{Log, LogConfig, Record};

/// The binary with `args` and `--data-dir dir`, nothing on stdin.
fn tidings(dir: &Path, args: &[&str]) -> Output {
    tidings_with_stdin(dir, args, "")
}

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = common::cli::command(args);
    command.arg("--data-dir").arg(dir);
    command
}

fn tidings_with_stdin(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut command = command(dir, args);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    finish(spawn(&mut command), stdin)
}

/// Runs a command that must succeed and returns its stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    success(tidings(dir, args), args)
}

fn assert_success(output: &Output, args: &[&str]) {
    assert!(
        output.status.success(),
        "tidings {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs a command that must fail with exit code 1 and returns its stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    failure(tidings(dir, args), args)
}

fn open(dir: &Path) -> Log {
    Log::open(LogConfig::new(dir)).expect("open the log in the test")
}

/// A child forked while this process has a `Log` open shares its directory lock until the child
/// execs, so a `Log` that must be gone before a CLI reopens its directory lives only while no
/// other test is spawning: spawns share this lock, [`with_log`] takes it exclusively.
static SPAWNING: RwLock<()> = RwLock::new(());

fn spawn(command: &mut Command) -> Child {
    let _shared = SPAWNING.read().unwrap_or_else(PoisonError::into_inner);
    // `spawn` returns once the child has exec'd and so closed its copy of every descriptor.
    command.spawn().expect("run tidings")
}

/// Opens the log in the test process, runs `work` and closes it again.
fn with_log<T>(dir: &Path, work: impl FnOnce(&Log, &tokio::runtime::Runtime) -> T) -> T {
    let _exclusive = SPAWNING.write().unwrap_or_else(PoisonError::into_inner);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let log = open(dir);
    let outcome = work(&log, &runtime);
    log.shutdown();
    outcome
}

#[test]
fn topics_are_created_listed_described_and_deleted() {
    // Proves the topic commands' round trip in both output formats.
    let temp = tempfile::tempdir().unwrap();
    let dir = &temp.path().join("data");
    let created = ok(dir, &["topics", "create", "orders", "--partitions", "3"]);
    assert_eq!(created, "created topic orders with 3 partitions\n");
    ok(
        dir,
        &[
            "topics",
            "create",
            "audit",
            "--partitions",
            "1",
            "--retention-ms",
            "60000",
        ],
    );

    let table = ok(dir, &["topics", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("TOPIC "));
    assert!(lines[1].starts_with("audit ") && lines[1].contains("60000"));
    assert!(lines[2].starts_with("orders ") && lines[2].contains(" 3 "));

    let listed = json_lines(&ok(dir, &["topics", "list", "--json"]));
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["name"], "audit");
    assert_eq!(listed[0]["config"]["retentionMs"], 60000);

    let described = json_lines(&ok(dir, &["topics", "describe", "orders", "--json"]));
    assert_eq!(described[0]["config"]["partitions"], 3);
    assert_eq!(described[0]["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(
        described[0]["partitions"][2],
        json!({"partition": 2, "low": 0, "high": 0, "records": 0, "bytes": 0})
    );
    let text = ok(dir, &["topics", "describe", "orders"]);
    assert!(
        text.contains("PARTITION  LOW  HIGH  RECORDS  BYTES"),
        "{text}"
    );

    assert_eq!(
        ok(dir, &["topics", "delete", "orders"]),
        "deleted topic orders\n"
    );
    let remaining = json_lines(&ok(dir, &["topics", "list", "--json"]));
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0]["name"], "audit");
}

#[test]
fn produced_lines_tail_back_with_keys_partitions_and_json_values() {
    // Proves produce's output, keying and partition choice, and JSON/string value rendering.
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    ok(dir, &["topics", "create", "t", "--partitions", "2"]);
    let keyed = tidings_with_stdin(
        dir,
        &["produce", "t", "--key", "user-1"],
        "{\"n\": 1}\nhello\n",
    );
    assert_success(&keyed, &["produce"]);
    assert!(keyed.stdout.is_empty(), "nothing on stdout without --json");
    assert_eq!(
        String::from_utf8_lossy(&keyed.stderr),
        "produced 2 records to t\n"
    );
    let pinned = tidings_with_stdin(
        dir,
        &["produce", "t", "--partition", "1", "--json"],
        "42\r\nlast line without newline",
    );
    assert_success(&pinned, &["produce", "--json"]);
    let acks = json_lines(&String::from_utf8(pinned.stdout).unwrap());
    assert_eq!(acks.len(), 2);
    assert!(acks.iter().all(|a| a["partition"] == 1));
    assert_eq!(
        acks[1]["offset"].as_u64(),
        Some(acks[0]["offset"].as_u64().unwrap() + 1)
    );

    let records = json_lines(&ok(dir, &["tail", "t", "--from-beginning", "--json"]));
    assert_eq!(records.len(), 4);
    let (keyed, unkeyed): (Vec<&Value>, Vec<&Value>) =
        records.iter().partition(|r| r["key"] == "user-1");
    assert_eq!(keyed[0]["value"], json!({"n": 1}));
    assert_eq!(keyed[1]["value"], "hello");
    assert_eq!(keyed[0]["partition"], keyed[1]["partition"]);
    assert_eq!(
        keyed[1]["offset"].as_u64(),
        Some(keyed[0]["offset"].as_u64().unwrap() + 1)
    );
    assert_eq!(unkeyed[0]["value"], 42);
    assert_eq!(unkeyed[0]["key"], Value::Null);
    assert_eq!(unkeyed[1]["value"], "last line without newline");
    for (record, ack) in unkeyed.iter().zip(&acks) {
        assert_eq!(
            (&record["partition"], &record["offset"]),
            (&ack["partition"], &ack["offset"])
        );
    }
    let partition_one = json_lines(&ok(
        dir,
        &[
            "tail",
            "t",
            "--from-beginning",
            "--partition",
            "1",
            "--json",
        ],
    ));
    assert!(partition_one.iter().all(|r| r["partition"] == 1));
    assert_eq!(
        ok(dir, &["tail", "t"]),
        "",
        "without --from-beginning only new records"
    );
}

#[test]
fn tail_renders_binary_keys_values_and_headers() {
    // Proves base64 for non-UTF-8 bytes, headers, timestamps, field order and the text format.
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    ok(dir, &["topics", "create", "bin", "--partitions", "1"]);
    with_log(dir, |log, runtime| {
        let binary = Record::keyed(vec![0xff, 0x00], vec![0xde, 0xad, 0xbe, 0xef])
            .with_header("trace", "abc")
            .with_header("count", "7");
        let records = vec![Record::new("line\tone"), binary];
        runtime.block_on(log.append("bin", records)).unwrap();
    });

    let raw = ok(dir, &["tail", "bin", "--from-beginning", "--json"]);
    let records = json_lines(&raw);
    assert_eq!(records[0]["value"], "line\tone");
    assert_eq!(records[0]["headers"], json!({}));
    assert_eq!(records[1]["value"], "3q2+7w==");
    assert_eq!(records[1]["key"], "/wA=");
    assert_eq!(records[1]["headers"], json!({"count": 7, "trace": "abc"}));
    let timestamp = records[1]["timestamp"].as_str().unwrap();
    assert!(
        timestamp.ends_with('Z') && humantime::parse_rfc3339(timestamp).is_ok(),
        "{timestamp}"
    );
    let fields = [
        "partition",
        "offset",
        "key",
        "value",
        "timestamp",
        "headers",
    ];
    let positions: Vec<usize> = fields
        .iter()
        .map(|f| raw.find(&format!("\"{f}\":")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "field order: {raw}"
    );

    let text = ok(
        dir,
        &["tail", "bin", "--from-beginning", "--partition", "0"],
    );
    assert_eq!(
        text,
        "0:0\t-\tline\\tone\n0:1\tbase64:/wA=\tbase64:3q2+7w==\n"
    );
}

#[test]
fn tail_follow_prints_and_waits_until_interrupted() {
    // Proves --follow keeps the directory open after the existing records and stops on Ctrl-C.
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    ok(dir, &["topics", "create", "live", "--partitions", "2"]);
    assert_success(
        &tidings_with_stdin(dir, &["produce", "live"], "first\n"),
        &[],
    );
    let mut tail = command(
        dir,
        &["tail", "live", "--from-beginning", "--follow", "--json"],
    );
    tail.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(&mut tail);
    let line = StdoutLines::of(&mut child).next(&mut child);
    assert_eq!(
        serde_json::from_str::<Value>(&line).unwrap()["value"],
        "first"
    );
    let held = Log::open(LogConfig::new(dir)).unwrap_err().to_string();
    assert!(held.contains("in use by another process"), "{held}");

    let mut kill = Command::new("kill");
    kill.args(["-INT", &child.id().to_string()]);
    let interrupt = spawn(&mut kill).wait().unwrap();
    assert!(interrupt.success());
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    with_log(dir, |_, _| ()); // The lock is released.
}

/// A topic `t` with 4 records in partition 0 and 2 in partition 1, and group `billing`
/// committed at offset 1 of partition 0 only.
fn group_fixture() -> tempfile::TempDir {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    ok(dir, &["topics", "create", "t", "--partitions", "2"]);
    let first = tidings_with_stdin(dir, &["produce", "t", "--partition", "0"], "a\nb\nc\nd\n");
    assert_success(&first, &["produce"]);
    let second = tidings_with_stdin(dir, &["produce", "t", "--partition", "1"], "e\nf\n");
    assert_success(&second, &["produce"]);
    with_log(dir, |log, runtime| {
        log.commit_offset("billing", "t", 0, 1).unwrap();
        runtime.block_on(log.sync()).unwrap();
    });
    temp
}

/// `groups describe GROUP --json`, as (committed, lag) per partition.
fn positions(dir: &Path) -> Vec<(Value, Value)> {
    json_lines(&ok(dir, &["groups", "describe", "billing", "--json"]))
        .into_iter()
        .map(|p| (p["committed"].clone(), p["lag"].clone()))
        .collect()
}

#[test]
fn groups_describe_and_list_show_committed_offsets_and_lag() {
    // Proves describe's committed offset, watermarks and lag per partition, and list's total.
    let temp = group_fixture();
    let dir = temp.path();
    let lag = json_lines(&ok(dir, &["groups", "describe", "billing", "--json"]));
    assert_eq!(
        lag,
        vec![
            json!({"group": "billing", "topic": "t", "partition": 0, "committed": 1, "low": 0, "high": 4, "lag": 3, "member": null}),
            json!({"group": "billing", "topic": "t", "partition": 1, "committed": null, "low": 0, "high": 2, "lag": 2, "member": null}),
        ]
    );
    let table = ok(dir, &["groups", "describe", "billing"]);
    assert_eq!(
        table,
        "TOPIC  PARTITION  COMMITTED  LOW  HIGH  LAG  MEMBER\n\
         t      0          1          0    4     3    -\n\
         t      1          -          0    2     2    -\n"
    );
    assert_eq!(
        json_lines(&ok(dir, &["groups", "list", "--json"])),
        vec![json!({"name": "billing", "topics": ["t"], "members": 0, "lag": 5})]
    );
    assert_eq!(
        ok(dir, &["groups", "list"]),
        "GROUP    TOPICS  MEMBERS  LAG\nbilling  t       0        5\n"
    );
}

#[test]
fn groups_reset_offsets_moves_every_partition() {
    // Proves each --to form moves the offsets (and so the lag) as documented.
    let temp = group_fixture();
    let dir = temp.path();
    let reset = |to: &str| {
        ok(
            dir,
            &[
                "groups",
                "reset-offsets",
                "billing",
                "--topic",
                "t",
                "--to",
                to,
                "--json",
            ],
        )
    };
    let moved = json_lines(&reset("latest"));
    assert_eq!(
        moved[0],
        json!({"group": "billing", "topic": "t", "partition": 0, "offset": 4})
    );
    assert_eq!(moved[1]["offset"], 2);
    assert_eq!(
        positions(dir),
        vec![(json!(4), json!(0)), (json!(2), json!(0))]
    );

    reset("3");
    assert_eq!(
        positions(dir),
        vec![(json!(3), json!(1)), (json!(2), json!(0))],
        "clamped to high"
    );
    reset("earliest");
    assert_eq!(
        positions(dir),
        vec![(json!(0), json!(4)), (json!(0), json!(2))]
    );
    reset("2999-01-01T00:00:00+01:00");
    assert_eq!(
        positions(dir),
        vec![(json!(4), json!(0)), (json!(2), json!(0))]
    );
    reset("2000-01-01T00:00:00Z");
    assert_eq!(
        positions(dir),
        vec![(json!(0), json!(4)), (json!(0), json!(2))]
    );

    let usage = tidings(
        dir,
        &[
            "groups",
            "reset-offsets",
            "billing",
            "--topic",
            "t",
            "--to",
            "soon",
        ],
    );
    assert_eq!(usage.status.code(), Some(2), "a bad --to is a usage error");
}

#[test]
fn bad_input_fails_clearly_and_changes_nothing() {
    // Proves refused commands exit 1 with the log's message and leave the directory as it was.
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    ok(dir, &["topics", "create", "t", "--partitions", "1"]);
    let before = ok(dir, &["topics", "list", "--json"]);

    let stderr = fails(dir, &["topics", "create", "bad name!", "--partitions", "1"]);
    assert!(
        stderr.starts_with("error: invalid topic name \"bad name!\""),
        "{stderr}"
    );
    let stderr = fails(dir, &["topics", "create", "zero", "--partitions", "0"]);
    assert!(
        stderr.contains("partitions must be between 1 and 4096, got 0"),
        "{stderr}"
    );
    let stderr = fails(dir, &["topics", "create", "t", "--partitions", "2"]);
    assert_eq!(stderr, "error: topic \"t\" already exists\n");
    for args in [
        &["topics", "describe", "nope"][..],
        &["topics", "delete", "nope"],
        &["tail", "nope"],
        &["produce", "nope"],
    ] {
        assert_eq!(
            fails(dir, args),
            "error: topic \"nope\" does not exist\n",
            "{args:?}"
        );
    }
    let stderr = fails(dir, &["produce", "t", "--partition", "5"]);
    assert_eq!(stderr, "error: topic \"t\" has no partition 5 (it has 1)\n");
    let stderr = fails(
        dir,
        &[
            "groups",
            "reset-offsets",
            "store",
            "--topic",
            "t",
            "--to",
            "earliest",
        ],
    );
    assert!(
        stderr.contains("follows the chat store's own applied position"),
        "{stderr}"
    );
    let stderr = fails(dir, &["groups", "describe", "ghost"]);
    assert_eq!(
        stderr,
        "error: consumer group \"ghost\" has no committed offsets\n"
    );
    assert_eq!(ok(dir, &["topics", "list", "--json"]), before);
    assert_eq!(ok(dir, &["tail", "t", "--from-beginning"]), "");

    let missing = temp.path().join("missing");
    let stderr = fails(
        &missing,
        &["topics", "create", "bad/name", "--partitions", "1"],
    );
    assert!(stderr.contains("invalid topic name"), "{stderr}");
    let stderr = fails(&missing, &["topics", "list"]);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(
        !missing.exists(),
        "a refused command creates no data directory"
    );
    let usage = tidings(dir, &["topics", "create", "x"]);
    assert_eq!(
        usage.status.code(),
        Some(2),
        "a missing --partitions is a usage error"
    );
}

#[test]
fn a_data_directory_in_use_is_refused_with_a_clear_message() {
    // Proves every command refuses a directory held by a process that is not an advertised
    // server, naming the holder and suggesting --server, with exit code 1.
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    ok(dir, &["topics", "create", "t", "--partitions", "1"]);
    let _held = open(dir);
    for args in [
        &["topics", "list"][..],
        &["topics", "create", "u", "--partitions", "1"],
        &["produce", "t"],
        &["tail", "t", "--follow"],
        &["groups", "list"],
    ] {
        let stderr = fails(dir, args);
        let expected = format!(
            "error: the data directory {} is in use by another process, pid {}; if that is \
             `tidings serve`, ask the server instead: --server http://ADDR (or TIDINGS_SERVER); \
             otherwise stop that process, or point --data-dir elsewhere\n",
            dir.display(),
            std::process::id()
        );
        assert_eq!(stderr, expected, "{args:?}");
    }
}

#[test]
fn the_data_directory_can_come_from_the_environment() {
    // Proves TIDINGS_DATA_DIR is honoured when --data-dir is absent.
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    ok(dir, &["topics", "create", "from-env", "--partitions", "1"]);
    let mut command = common::cli::command(&["topics", "list", "--json"]);
    command.env("TIDINGS_DATA_DIR", dir).stdout(Stdio::piped());
    let output = spawn(&mut command).wait_with_output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("\"from-env\""));
}

#[test]
fn the_servers_own_topics_and_groups_need_force() {
    // Proves `produce` to a topic the server writes, and `groups reset-offsets` of a group its
    // workers consume with, are refused without --force (nothing appended or moved), and
    // that --force does what it says.
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    ok(
        dir,
        &["topics", "create", "message.new", "--partitions", "1"],
    );
    let refused = failure(
        tidings_with_stdin(dir, &["produce", "message.new"], "{\"x\":1}\n"),
        &["produce", "message.new"],
    );
    assert!(
        refused.contains("written by the server itself"),
        "{refused}"
    );
    assert!(refused.contains("--force"), "{refused}");
    for topic in ["messages", "messages.sent", "message.new.dlq"] {
        let stderr = fails(dir, &["produce", topic]);
        assert!(stderr.contains("--force"), "{topic}: {stderr}");
    }
    let high = |dir: &Path| -> Value {
        let described = json_lines(&ok(dir, &["topics", "describe", "message.new", "--json"]));
        described[0]["partitions"][0]["high"].clone()
    };
    assert_eq!(high(dir), json!(0), "nothing appended");
    let forced = tidings_with_stdin(dir, &["produce", "message.new", "--force"], "{\"x\":1}\n");
    assert_success(&forced, &["produce", "--force"]);
    assert_eq!(high(dir), json!(1));

    let reset = |force: bool| {
        let mut args = vec![
            "groups",
            "reset-offsets",
            "notify.sink.push",
            "--topic",
            "message.new",
            "--to",
            "latest",
        ];
        if force {
            args.push("--force");
        }
        tidings(dir, &args)
    };
    let refused = failure(reset(false), &["groups", "reset-offsets"]);
    assert!(refused.contains("--force"), "{refused}");
    let described = tidings(dir, &["groups", "describe", "notify.sink.push"]);
    assert!(
        !described.status.success(),
        "the refused reset committed nothing"
    );
    assert_success(&reset(true), &["groups", "reset-offsets", "--force"]);
    let positions = json_lines(&ok(
        dir,
        &["groups", "describe", "notify.sink.push", "--json"],
    ));
    assert_eq!(positions[0]["committed"], json!(1), "{positions:?}");
}
