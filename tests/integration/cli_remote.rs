//! The admin command line asking a running server (`--server`, or the address file the server
//! leaves in its data directory): the real binary against the real server, with tokens minted
//! from the data directory's secret, given with `--token`, or from `--config`'s jwtSecret.

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::bus::{Bus, PUBLISHER};
use common::chat::{chat_process, chat_process_in, Chat};
use common::cli::{command, failure, finish, json_lines, success, StdoutLines};
use common::server::{sigterm, wait_exit, Process};
use serde_json::{json, Value};

/// `tidings ARGS` with `env` set and `stdin` on its standard input.
fn tidings_with(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let child = command(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tidings");
    finish(child, stdin)
}

/// The binary's stdout; panics unless it succeeded.
fn ok(args: &[&str]) -> String {
    ok_with_stdin(args, "")
}

fn ok_with_stdin(args: &[&str], stdin: &str) -> String {
    success(tidings_with(args, &[], stdin), args)
}

/// The binary's stderr; panics unless it failed cleanly with exit code 1.
fn fails(args: &[&str]) -> String {
    failure(tidings_with(args, &[], ""), args)
}

/// `args` followed by `--server URL --data-dir DIR` (the token is minted from DIR's secret).
fn remote<'a>(chat: &'a Chat<Process>, args: &[&'a str]) -> Vec<&'a str> {
    let dir = chat.dir.path().to_str().expect("utf-8 temp path");
    let mut all = args.to_vec();
    all.extend(["--server", &chat.server.base, "--data-dir", dir]);
    all
}

/// `args` followed by `--data-dir DIR` only.
fn local<'a>(dir: &'a Path, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.extend(["--data-dir", dir.to_str().expect("utf-8 temp path")]);
    all
}

#[tokio::test]
async fn topics_are_created_listed_described_and_deleted_over_http() {
    // Proves the topic commands' round trip through the server, in both output formats.
    let chat = chat_process(&[]).await;
    let created = ok(&remote(
        &chat,
        &["topics", "create", "orders", "--partitions", "3"],
    ));
    assert_eq!(created, "created topic orders with 3 partitions\n");
    let created = json_lines(&ok(&remote(
        &chat,
        &[
            "topics",
            "create",
            "audit",
            "--partitions",
            "1",
            "--retention-bytes",
            "5000",
            "--json",
        ],
    )));
    assert_eq!(created[0]["config"]["retentionBytes"], 5000);

    let listed = json_lines(&ok(&remote(&chat, &["topics", "list", "--json"])));
    let orders = listed
        .iter()
        .find(|t| t["name"] == "orders")
        .expect("orders listed");
    assert_eq!(
        orders,
        &json!({"name": "orders",
                "config": {"partitions": 3, "retentionMs": null, "retentionBytes": null,
                           "protectedGroups": null},
                "partitions": [
                    {"partition": 0, "low": 0, "high": 0, "records": 0, "bytes": null},
                    {"partition": 1, "low": 0, "high": 0, "records": 0, "bytes": null},
                    {"partition": 2, "low": 0, "high": 0, "records": 0, "bytes": null}]})
    );
    let table = ok(&remote(&chat, &["topics", "list"]));
    // Column widths follow the longest name, which the server's own topics may set.
    assert!(
        table.lines().any(|line| line
            .split_whitespace()
            .eq(["audit", "1", "0", "-", "-", "5000"])),
        "{table}"
    );
    let described = ok(&remote(&chat, &["topics", "describe", "orders"]));
    assert!(described.starts_with("topic:            orders\npartitions:       3\n"));
    assert!(
        described.ends_with("2          0    0     0        -\n"),
        "{described}"
    );

    assert_eq!(
        ok(&remote(&chat, &["topics", "delete", "orders"])),
        "deleted topic orders\n"
    );
    let stderr = fails(&remote(&chat, &["topics", "describe", "orders"]));
    assert_eq!(
        stderr,
        "error: topic \"orders\" does not exist (404 Not found)\n"
    );
}

#[tokio::test]
async fn produce_and_tail_over_http_print_what_the_local_commands_print() {
    // Proves one output for both modes: records appended on the data directory tail alike from
    // the directory and from the server that later opens it; and produce over HTTP answers
    // like produce on the directory.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    ok(&local(
        path,
        &["topics", "create", "t", "--partitions", "2"],
    ));
    let lines = "hello\n{\"n\": 1}\nwith\ttab\n";
    let keyed = ["produce", "t", "--key", "k", "--partition", "1"];
    ok_with_stdin(&local(path, &keyed), lines);
    ok_with_stdin(&local(path, &["produce", "t", "--partition", "0"]), "42\n");
    let mut tails = Vec::new();
    for format in [None, Some("--json")] {
        for partition in ["0", "1"] {
            let args = ["tail", "t", "--from-beginning", "--partition", partition];
            tails.push(args.into_iter().chain(format).collect::<Vec<_>>());
        }
    }
    let local_outputs: Vec<String> = tails.iter().map(|args| ok(&local(path, args))).collect();

    let args = ["--listen", "127.0.0.1:0", "--durability", "never"];
    let chat = chat_process_in(dir, &args).await;
    let remote_outputs: Vec<String> = tails.iter().map(|args| ok(&remote(&chat, args))).collect();
    assert_eq!(remote_outputs, local_outputs);
    assert!(
        local_outputs.concat().contains("\tk\twith\\ttab\n"),
        "{local_outputs:?}"
    );

    let produced = tidings_with(
        &remote(&chat, &["produce", "t", "--partition", "1", "--json"]),
        &[],
        "{\"a\": [1, 2]}\nplain text\n",
    );
    assert!(produced.status.success());
    assert_eq!(
        json_lines(&String::from_utf8(produced.stdout).unwrap()),
        vec![
            json!({"partition": 1, "offset": 3}),
            json!({"partition": 1, "offset": 4})
        ]
    );
    assert_eq!(
        String::from_utf8(produced.stderr).unwrap(),
        "produced 2 records to t\n"
    );
    let tail = ok(&remote(
        &chat,
        &["tail", "t", "--from-beginning", "--partition", "1"],
    ));
    assert!(
        tail.ends_with("1:3\t-\t{\"a\": [1, 2]}\n1:4\t-\tplain text\n"),
        "{tail}"
    );
    assert_eq!(
        ok(&remote(&chat, &["tail", "t"])),
        "",
        "a tail starts at the end"
    );
}

#[tokio::test]
async fn tail_follow_over_http_prints_a_record_published_while_it_runs() {
    // Proves --follow long-polls the server: a record published after the tail printed
    // everything there was arrives, and SIGTERM ends the tail with exit 0.
    let bus = Bus::start_process(&[]).await;
    bus.create("live", 1).await;
    bus.publish("live", json!([{"value": "before"}])).await;
    let args = remote(&bus.chat, &["tail", "live", "--from-beginning", "--follow"]);
    let mut child = command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run tail");
    let lines = StdoutLines::of(&mut child);
    assert_eq!(lines.next(&mut child), "0:0\t-\tbefore");
    bus.publish("live", json!([{"key": "k", "value": {"late": true}}]))
        .await;
    assert_eq!(lines.next(&mut child), "0:1\tk\t{\"late\":true}");
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(stopped.success());
    assert!(child.wait().expect("tail exits").success());
}

#[tokio::test]
async fn reset_offsets_over_http_moves_a_group_and_is_refused_while_it_has_a_live_member() {
    // Proves groups list/describe show a live member and its partitions, reset is refused (409)
    // while it lives, and once it left the reset moves the committed offsets durably.
    let bus = Bus::start_process(&[]).await;
    bus.create("t", 2).await;
    for partition in 0..2 {
        let records: Vec<Value> = (0..3).map(|i| json!({"value": i})).collect();
        let path = format!("/api/topics/t/partitions/{partition}/records");
        let published = bus
            .post(PUBLISHER, &path, json!({"records": records}))
            .await;
        assert_eq!(published.status(), 202);
    }
    let joined = bus
        .post(
            &["events:consume"],
            "/api/groups/billing/members",
            json!({"topics": ["t"]}),
        )
        .await;
    assert_eq!(joined.status(), 200);
    let member = joined.json::<Value>().await.unwrap()["memberId"]
        .as_str()
        .expect("memberId")
        .to_owned();

    let listed: Vec<Value> = json_lines(&ok(&remote(&bus.chat, &["groups", "list", "--json"])));
    assert_eq!(
        listed,
        vec![json!({"name": "billing", "topics": ["t"], "members": 1, "lag": 6})]
    );
    let described = json_lines(&ok(&remote(
        &bus.chat,
        &["groups", "describe", "billing", "--json"],
    )));
    assert_eq!(described.len(), 2);
    for (partition, line) in described.iter().enumerate() {
        assert_eq!(line["partition"], partition);
        assert_eq!(line["committed"], Value::Null);
        assert_eq!(line["member"], member.as_str());
    }
    let reset = ["groups", "reset-offsets", "billing", "--topic", "t", "--to"];
    let stderr = fails(&remote(&bus.chat, &[&reset[..], &["latest"]].concat()));
    assert!(stderr.contains("has 1 live member(s)"), "{stderr}");
    assert!(stderr.contains("(409 Conflict)"), "{stderr}");

    let left = bus
        .delete(
            &["events:consume"],
            &format!("/api/groups/billing/members/{member}"),
        )
        .await;
    assert_eq!(left.status(), 204);
    let moved = ok(&remote(
        &bus.chat,
        &[&reset[..], &["latest", "--json"]].concat(),
    ));
    assert_eq!(
        json_lines(&moved),
        vec![
            json!({"group": "billing", "topic": "t", "partition": 0, "offset": 3}),
            json!({"group": "billing", "topic": "t", "partition": 1, "offset": 3}),
        ]
    );
    let text = ok(&remote(&bus.chat, &[&reset[..], &["1"]].concat()));
    assert_eq!(
        text,
        "reset group billing on topic t:\nTOPIC  PARTITION  OFFSET\nt      0          1\nt      1          1\n"
    );
    ok(&remote(
        &bus.chat,
        &[&reset[..], &["2000-01-01T00:00:00+01:00"]].concat(),
    ));
    let table = ok(&remote(&bus.chat, &["groups", "describe", "billing"]));
    assert_eq!(
        table,
        "TOPIC  PARTITION  COMMITTED  LOW  HIGH  LAG  MEMBER\n\
         t      0          0          0    3     3    -\n\
         t      1          0          0    3     3    -\n"
    );
}

#[tokio::test]
async fn without_server_a_held_data_directory_is_asked_through_its_address_file() {
    // Proves the fallback: a directory held by a server that advertises itself is asked over
    // HTTP; without the address file the command says the directory is held and suggests
    // --server; after a kill -9 the stale file is ignored because the directory is free.
    let mut chat = chat_process(&[]).await;
    let dir = chat.dir.path().to_owned();
    let address = dir.join("server.url");
    assert_eq!(
        std::fs::read_to_string(&address).unwrap().trim(),
        chat.server.base
    );
    let created = tidings_with(
        &local(&dir, &["topics", "create", "found", "--partitions", "1"]),
        &[],
        "",
    );
    assert!(created.status.success());
    let note = String::from_utf8(created.stderr).unwrap();
    assert!(
        note.contains(&format!("is held by the server at {}", chat.server.base)),
        "{note}"
    );

    std::fs::remove_file(&address).unwrap();
    let stderr = fails(&local(&dir, &["topics", "list"]));
    assert!(stderr.contains("is in use by another process"), "{stderr}");
    assert!(stderr.contains("--server http://ADDR"), "{stderr}");

    std::fs::write(&address, format!("{}\n", chat.server.base)).unwrap();
    chat.server.child.kill().expect("kill -9 the server");
    chat.server.child.wait().expect("reap the server");
    let listed = ok(&local(&dir, &["topics", "list"]));
    assert!(listed.contains("found"), "{listed}");
    assert!(listed.contains("BYTES"), "{listed}");
}

#[tokio::test]
async fn a_clean_stop_removes_the_address_file() {
    // Proves the server withdraws its address when it stops, so nobody is sent to it later.
    let mut chat = chat_process(&[]).await;
    let address = chat.dir.path().join("server.url");
    assert!(address.exists());
    sigterm(&chat.server);
    assert!(wait_exit(&mut chat.server, Duration::from_secs(30)).success());
    assert!(!address.exists());
}

#[tokio::test]
async fn server_refusals_exit_1_with_the_problem_detail() {
    // Proves the server's problems reach stderr: unknown topic (404), a token without the scope
    // (403), a token not signed by the server (401), and an unreachable server.
    let bus = Bus::start_process(&[]).await;
    bus.create("t", 1).await;
    let base = bus.chat.server.base.clone();
    let stderr = fails(&[
        "tail",
        "nope",
        "--server",
        &base,
        "--token",
        &token(&bus, PUBLISHER),
    ]);
    assert!(
        stderr.starts_with("error: this needs the \"events:consume\" scope (403 Forbidden)"),
        "{stderr}"
    );
    let admin = token(&bus, &["admin"]);
    let stderr = fails(&["tail", "nope", "--server", &base, "--token", &admin]);
    assert_eq!(
        stderr,
        "error: topic \"nope\" does not exist (404 Not found)\n"
    );
    let stderr = fails(&[
        "produce",
        "t",
        "--partition",
        "3",
        "--server",
        &base,
        "--token",
        &admin,
    ]);
    assert_eq!(stderr, "error: topic \"t\" has no partition 3 (it has 1)\n");
    let stderr = fails(&[
        "groups",
        "list",
        "--server",
        &base,
        "--token",
        "not.a.token",
    ]);
    assert!(stderr.contains("(401 Unauthorized)"), "{stderr}");

    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", unused.local_addr().unwrap());
    drop(unused);
    let stderr = fails(&["topics", "list", "--server", &closed, "--token", &admin]);
    assert!(
        stderr.starts_with(&format!(
            "error: cannot reach the server at {closed}/api/topics"
        )),
        "{stderr}"
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let no_secret = elsewhere.path().to_str().unwrap();
    let stderr = fails(&["topics", "list", "--server", &base, "--data-dir", no_secret]);
    assert!(stderr.contains("no token for the server"), "{stderr}");
    assert!(
        !elsewhere.path().join("secret.key").exists(),
        "no secret is created for a server that could not know it"
    );
}

fn token(bus: &Bus<Process>, scopes: &[&str]) -> String {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    bus.auth
        .issue("ops", None, &scopes, Duration::from_secs(600))
}

#[tokio::test]
async fn server_and_token_come_from_the_environment_or_the_config_file() {
    // Proves TIDINGS_SERVER / TIDINGS_TOKEN stand in for the flags, and that --config's
    // auth.jwtSecret signs the token for a server configured with it.
    let config = tempfile::NamedTempFile::new().unwrap();
    let secret = "a-long-configured-secret-of-more-than-32-bytes";
    std::fs::write(config.path(), format!("[auth]\njwtSecret = \"{secret}\"\n")).unwrap();
    let config_path = config.path().to_str().unwrap();
    let chat = chat_process(&["--config", config_path]).await;
    let base = chat.server.base.as_str();

    let created = tidings_with(
        &[
            "topics",
            "create",
            "cfg",
            "--partitions",
            "1",
            "--server",
            base,
            "--config",
            config_path,
        ],
        &[],
        "",
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let authenticator = tidings::auth::Authenticator::new(secret.as_bytes()).unwrap();
    let admin = authenticator.issue("ops", None, &["admin".into()], Duration::from_secs(600));
    let listed = tidings_with(
        &["topics", "list", "--json"],
        &[("TIDINGS_SERVER", base), ("TIDINGS_TOKEN", &admin)],
        "",
    );
    assert!(listed.status.success());
    let names: Vec<Value> = json_lines(&String::from_utf8(listed.stdout).unwrap())
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert!(names.contains(&json!("cfg")), "{names:?}");
}
