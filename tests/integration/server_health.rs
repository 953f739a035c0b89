//! The real `tidings serve` binary over real HTTP: the `listening on` line, health, readiness,
//! metrics, the problem+json 404, graceful SIGTERM, the data-directory lock, and configuration
//! precedence end to end.

use crate::common;

use std::time::Duration;

use common::server::{command, sigterm, start, started, wait_exit, wait_ready};

#[tokio::test]
async fn probes_metrics_and_unknown_routes_answer_over_http() {
    // Proves the binary serves its probes, Prometheus text and problem+json 404s on a real port.
    let dir = tempfile::tempdir().unwrap();
    let server = started(dir.path());
    assert!(server.base.starts_with("http://127.0.0.1:"));
    assert!(!server.base.ends_with(":0"), "the real port is printed");
    wait_ready(&server).await;

    let health = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "ok"}));

    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let content_type = metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = metrics.text().await.unwrap();
    for name in [
        "tidings_log_appends_total",
        "tidings_log_records_total",
        "tidings_log_syncs_total",
        "tidings_log_sync_seconds_total",
        "tidings_log_group_size",
        "tidings_log_cached_bytes 0\n",
        "tidings_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(text.contains("route=\"/healthz\""), "{text}");

    let missing = reqwest::get(format!("{}/no/such/thing", server.base))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = missing.json().await.unwrap();
    for field in ["type", "title", "status", "detail"] {
        assert!(problem.get(field).is_some(), "{field} missing: {problem}");
    }
    assert_eq!(problem["status"], 404);

    let wrong_method = reqwest::Client::new()
        .delete(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(
        wrong_method.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn sigterm_stops_the_server_promptly_with_exit_0() {
    // Proves SIGTERM is a graceful stop: exit status 0, and the data directory is free after.
    let dir = tempfile::tempdir().unwrap();
    let mut server = started(dir.path());
    wait_ready(&server).await;
    sigterm(&server);
    let status = wait_exit(&mut server, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status:?}");

    let mut again = started(dir.path());
    wait_ready(&again).await;
    sigterm(&again);
    assert_eq!(
        wait_exit(&mut again, Duration::from_secs(10)).code(),
        Some(0)
    );
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_exits_1_naming_it() {
    // Proves the data-directory lock: the second process fails clearly instead of sharing it.
    let dir = tempfile::tempdir().unwrap();
    let first = started(dir.path());
    wait_ready(&first).await;

    let output = command(dir.path(), &["--listen", "127.0.0.1:0"])
        .output()
        .expect("run second server");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("data directory"), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");

    let still = reqwest::get(format!("{}/readyz", first.base))
        .await
        .unwrap();
    assert_eq!(still.status(), 200, "the first server is unaffected");
}

#[tokio::test]
async fn flags_beat_env_which_beats_the_config_file() {
    // Proves precedence end to end: a bad file value is refused by name; the file's listen is
    // overridden by TIDINGS_LISTEN, its durability by --durability, and what nobody overrides
    // comes from the file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidings.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:1\"\n[log]\ndurability = \"sometimes\"\n\
         [logging]\nformat = \"json\"\nlevel = \"info\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");

    // The file alone is refused, naming the bad key.
    let refused = command(&data, &["--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("log.durability"));

    // A valid file: env overrides its listen, the flag its durability; json logging and the
    // level nobody overrides come from the file.
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:1\"\n[log]\ndurability = \"always\"\n\
         [logging]\nformat = \"json\"\nlevel = \"info\"\n",
    )
    .unwrap();
    let mut cmd = command(
        &data,
        &["--config", file.to_str().unwrap(), "--durability", "never"],
    );
    cmd.env("TIDINGS_LISTEN", "127.0.0.1:0")
        .env_remove("TIDINGS_LOG_LEVEL");
    let mut server = start(cmd);
    assert!(
        !server.base.ends_with(":1"),
        "env beat the file: {}",
        server.base
    );
    wait_ready(&server).await;
    sigterm(&server);
    assert_eq!(
        wait_exit(&mut server, Duration::from_secs(10)).code(),
        Some(0)
    );
    let stderr = server.log.to_end();
    let first_line = stderr.lines().next().unwrap_or_default();
    let event: serde_json::Value = serde_json::from_str(first_line)
        .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {first_line}"));
    assert!(event.get("level").is_some(), "{event}");
    assert!(stderr.contains("\"durability\":\"never\""), "{stderr}");
}

#[tokio::test]
async fn the_text_log_writes_one_access_line_per_request() {
    // Proves the binary's text log (the default format) writes the access line's fields as
    // `name=value` pairs after the message, with the request id the caller sent.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path(), &["--listen", "127.0.0.1:0"]);
    cmd.env("TIDINGS_LOG_LEVEL", "warn,tidings::access=info");
    let mut server = start(cmd);
    wait_ready(&server).await;

    let health = reqwest::Client::new()
        .get(format!("{}/healthz", server.base))
        .header("x-request-id", "text-log-1")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let expected = "tidings::access: request method=GET route=\"/healthz\" status=200";
    let printed = server.log.wait_for(Duration::from_secs(10), |text| {
        text.lines()
            .any(|line| line.contains(expected) && line.contains("request_id=text-log-1"))
    });
    sigterm(&server);
    wait_exit(&mut server, Duration::from_secs(10));
    let line = printed
        .as_deref()
        .and_then(|text| {
            text.lines()
                .find(|line| line.contains("request_id=text-log-1"))
        })
        .unwrap_or_else(|| panic!("no access line; stderr: {}", server.log.to_end()))
        .to_owned();
    assert!(line.contains(" INFO "), "{line}");
    assert!(!line.contains('\x1b'), "no colours off a terminal: {line}");
}
