//! The admin tools' guards and offset resets, with the real binary against a real server (or its
//! stopped data directory): the server's own topics and groups are refused while it runs even
//! with `--force`, and `groups reset-offsets` moves chosen partitions `--to` a place or
//! `--shift-by` a count, or only shows the plan with `--dry-run`.

use crate::common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::bus::{Bus, ADMIN, PUBLISHER};
use common::chat::chat_process;
use common::cli::{command, failure, finish, json_lines, success};
use common::server::{sigterm, wait_exit};
use serde_json::{json, Value};

fn tidings_with_stdin(args: &[&str], stdin: &str) -> Output {
    let child = command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tidings");
    finish(child, stdin)
}

fn ok(args: &[&str]) -> String {
    success(tidings_with_stdin(args, ""), args)
}

fn fails(args: &[&str]) -> String {
    failure(tidings_with_stdin(args, ""), args)
}

/// The stderr of a command that must have failed with exit code 1 (asked through a held data
/// directory, a note saying so comes before the error).
fn refused(args: &[&str]) -> String {
    let output = tidings_with_stdin(args, "");
    assert_eq!(
        output.status.code(),
        Some(1),
        "tidings {args:?} should fail"
    );
    assert!(
        output.stdout.is_empty(),
        "a refusal prints nothing on stdout"
    );
    String::from_utf8(output.stderr).expect("utf-8 stderr")
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// The committed offset of every partition of `topic` in `group`, as `groups describe` says.
fn committed(args_tail: &[&str], group: &str) -> Vec<Value> {
    let mut args = vec!["groups", "describe", group, "--json"];
    args.extend_from_slice(args_tail);
    json_lines(&ok(&args))
        .into_iter()
        .map(|line| line["committed"].clone())
        .collect()
}

#[tokio::test]
async fn a_running_server_refuses_internal_produce_and_reset_even_with_force() {
    // Proves producing to the server's own topics and resetting its workers' groups are refused
    // while it runs, with --force too, asked by --server or through its held data directory,
    // and that nothing was appended; once the server stopped, --force does it.
    let mut chat = chat_process(&[]).await;
    let dir = chat.dir.path().to_owned();
    let base = chat.server.base.clone();
    let by_server = ["--server", &base, "--data-dir", utf8(&dir)];
    let by_directory = ["--data-dir", utf8(&dir)];
    for via in [&by_server[..], &by_directory[..]] {
        for topic in [
            "message.new",
            "messages",
            "messages.sent",
            "message.new.dlq",
        ] {
            let args = [&["produce", topic, "--force"][..], via].concat();
            let stderr = refused(&args);
            assert!(stderr.contains("Stop the server"), "{args:?}: {stderr}");
            assert!(stderr.contains(&base), "{stderr}");
        }
        for group in ["notify", "notify.sink.push"] {
            let reset = [
                "groups",
                "reset-offsets",
                group,
                "--topic",
                "message.new",
                "--to",
                "earliest",
                "--force",
            ];
            let stderr = refused(&[&reset[..], via].concat());
            assert!(stderr.contains("Stop the server"), "{group}: {stderr}");
        }
    }
    let described: Vec<Value> = json_lines(&ok(&["topics", "describe", "message.new", "--json"]
        .iter()
        .copied()
        .chain(by_server)
        .collect::<Vec<_>>()));
    let highs: Vec<&Value> = described[0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| &p["high"])
        .collect();
    assert!(
        highs.iter().all(|h| **h == json!(0)),
        "nothing appended: {highs:?}"
    );

    sigterm(&chat.server);
    wait_exit(&mut chat.server, Duration::from_secs(20));
    let forced = ["produce", "message.new", "--force", "--partition", "0"];
    let output = tidings_with_stdin(&[&forced[..], &by_directory[..]].concat(), "{\"x\":1}\n");
    success(output, &forced);
    let reset = [
        "groups",
        "reset-offsets",
        "notify.sink.push",
        "--topic",
        "message.new",
        "--partition",
        "0",
        "--to",
        "latest",
        "--force",
    ];
    ok(&[&reset[..], &by_directory[..]].concat());
    assert_eq!(committed(&by_directory, "notify.sink.push")[0], json!(1));
}

/// Publishes `per_partition` records to each of `partitions` partitions of a new topic `t`.
async fn topic_with_records(
    bus: &Bus<common::server::Process>,
    partitions: u32,
    per_partition: u64,
) {
    bus.create("t", partitions).await;
    for partition in 0..partitions {
        let records: Vec<Value> = (0..per_partition).map(|i| json!({"value": i})).collect();
        let path = format!("/api/topics/t/partitions/{partition}/records");
        let published = bus
            .post(PUBLISHER, &path, json!({"records": records}))
            .await;
        assert_eq!(published.status(), 202);
    }
}

#[tokio::test]
async fn reset_offsets_moves_chosen_partitions_to_a_place_or_by_a_shift() {
    // Proves --partition limits a reset, --shift-by moves from the committed offset (clamped to
    // the retained range, both ways), --dry-run commits nothing, over a server and then on the
    // stopped data directory, and the HTTP body refuses what it does not know.
    let mut bus = Bus::start_process(&[]).await;
    topic_with_records(&bus, 2, 5).await;
    let dir = bus.chat.dir.path().to_owned();
    let base = bus.chat.server.base.clone();
    let remote = ["--server", &base, "--data-dir", utf8(&dir)];
    let reset = ["groups", "reset-offsets", "billing", "--topic", "t"];
    let run = |tail: &[&str], via: &[&str]| ok(&[&reset[..], tail, via].concat());

    run(&["--to", "4"], &remote);
    assert_eq!(committed(&remote, "billing"), vec![json!(4), json!(4)]);
    run(&["--partition", "1", "--shift-by", "-3"], &remote);
    assert_eq!(committed(&remote, "billing"), vec![json!(4), json!(1)]);
    run(&["--shift-by", "+10"], &remote);
    assert_eq!(committed(&remote, "billing"), vec![json!(5), json!(5)]);
    run(&["--partition", "0", "--shift-by", "-99"], &remote);
    assert_eq!(committed(&remote, "billing"), vec![json!(0), json!(5)]);
    let plan = run(
        &["--partition", "1", "--to", "earliest", "--dry-run"],
        &remote,
    );
    assert!(plan.starts_with("would reset (dry run"), "{plan}");
    assert!(plan.contains("t      1          0"), "{plan}");
    assert_eq!(committed(&remote, "billing"), vec![json!(0), json!(5)]);
    let unknown = fails(
        &[
            &reset[..],
            &["--partition", "7", "--to", "latest"],
            &remote[..],
        ]
        .concat(),
    );
    assert!(unknown.contains("404"), "{unknown}");

    let path = "/api/groups/billing/offsets/reset";
    for body in [
        json!({"topic": "t", "to": "latest", "partition": 0}),
        json!({"topic": "t", "to": "latest", "shiftBy": 1}),
        json!({"topic": "t"}),
        json!({"topic": "t", "shiftBy": "one"}),
    ] {
        let answer = bus.post(ADMIN, path, body.clone()).await;
        assert_eq!(answer.status(), 400, "{body}");
    }
    let shifted = bus
        .post(
            ADMIN,
            path,
            json!({"topic": "t", "shiftBy": 2, "partitions": [0], "dryRun": true}),
        )
        .await;
    assert_eq!(shifted.status(), 200);
    let shifted: Value = shifted.json().await.expect("reset JSON");
    assert_eq!(shifted["offsets"], json!([{"partition": 0, "offset": 2}]));
    assert_eq!(committed(&remote, "billing"), vec![json!(0), json!(5)]);

    sigterm(&bus.chat.server);
    wait_exit(&mut bus.chat.server, Duration::from_secs(20));
    let local = ["--data-dir", utf8(&dir)];
    run(&["--partition", "0", "--shift-by", "3"], &local);
    assert_eq!(committed(&local, "billing"), vec![json!(3), json!(5)]);
    let plan = run(&["--shift-by", "-1", "--dry-run", "--json"], &local);
    assert_eq!(
        json_lines(&plan),
        vec![
            json!({"group": "billing", "topic": "t", "partition": 0, "offset": 2}),
            json!({"group": "billing", "topic": "t", "partition": 1, "offset": 4}),
        ]
    );
    assert_eq!(committed(&local, "billing"), vec![json!(3), json!(5)]);
    let neither = tidings_with_stdin(&[&reset[..], &local[..]].concat(), "");
    assert!(
        !neither.status.success(),
        "a reset needs --to or --shift-by"
    );
    let stderr = String::from_utf8_lossy(&neither.stderr);
    assert!(stderr.contains("--to"), "{stderr}");
}
