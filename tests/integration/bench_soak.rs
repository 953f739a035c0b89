//! One minute of `tidings bench soak` (the CI's share of the hour): mixed chat load, sessions
//! coming and going, a webhook failing now and then, a graceful and a forced restart — and no
//! acknowledged message lost or duplicated.

use std::process::Command;

use serde_json::Value;

/// A one-minute soak with two restarts (SIGTERM, then SIGKILL) exits 0, accounts for every
/// acknowledged message exactly once, and writes its samples.
#[test]
fn a_minute_of_soak_loses_and_duplicates_nothing_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("soak.csv");
    let output = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args([
            "bench",
            "soak",
            "--duration",
            "60s",
            "--restart-every",
            "20s",
            "--sample-every",
            "2s",
            "--json",
            "--out",
        ])
        .arg(&csv)
        .env_remove("TIDINGS_DATA_DIR")
        .env_remove("TIDINGS_CONFIG")
        .env("TIDINGS_LOG", "warn")
        .output()
        .expect("run tidings bench soak");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON object on stdout");

    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(report["lost"], 0, "{report:#}");
    assert_eq!(report["duplicated"], 0, "{report:#}");
    assert_eq!(report["seqGaps"], 0, "{report:#}");
    assert!(report["acked"].as_u64().unwrap() > 1000, "{report:#}");
    assert_eq!(report["found"], report["acked"], "{report:#}");
    assert!(report["restarts"].as_u64().unwrap() >= 2, "{report:#}");
    assert!(report["gracefulRestarts"].as_u64().unwrap() >= 1);
    assert!(report["killedRestarts"].as_u64().unwrap() >= 1);
    assert_eq!(report["serverCameBack"], true);

    // The WebSocket clients came and went and saw every message once, in order.
    let sessions = &report["sessions"];
    assert!(sessions["connects"].as_u64().unwrap() > 60, "{sessions:#}");
    assert!(sessions["resumes"].as_u64().unwrap() > 0, "{sessions:#}");
    assert_eq!(sessions["gaps"], 0, "{sessions:#}");
    assert_eq!(sessions["duplicates"], 0, "{sessions:#}");

    // The webhook was reached and refused some requests on purpose; signatures all held.
    let notifications = &report["notifications"];
    assert!(
        notifications["accepted"].as_u64().unwrap() > 0,
        "{notifications:#}"
    );
    assert!(
        notifications["refused"].as_u64().unwrap() > 0,
        "{notifications:#}"
    );
    assert_eq!(notifications["badSignatures"], 0, "{notifications:#}");

    // About one sample every 2 s, each a full CSV row with the server's memory once warm.
    let samples = report["samples"].as_u64().unwrap();
    assert!(samples >= 20, "{samples} samples");
    let text = std::fs::read_to_string(&csv).expect("the CSV");
    let mut lines = text.lines();
    let header = lines.next().expect("a header");
    assert!(header.starts_with("elapsed_s,server_pid,rss_kib,fds,disk_bytes,acked"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len() as u64, samples);
    let columns = header.split(',').count();
    assert!(rows.iter().all(|r| r.len() == columns));
    assert!(rows.iter().filter(|r| !r[2].is_empty()).count() as u64 >= samples - 2);
}
