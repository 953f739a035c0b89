//! A bad notification sink in the configuration file stops `tidings serve` at startup with one
//! clear `error:` line naming the key and the file, and exit status 1.

use std::process::Command;

fn serve_with(toml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tidings.toml");
    std::fs::write(&path, toml).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("TIDINGS_CONFIG")
        .output()
        .expect("run tidings");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn invalid_sink_settings_are_startup_errors_that_name_the_key() {
    let cases = [
        (
            "[[notify.sinks]]\nname = \"push\"\ntype = \"webhook\"\nurl = \"not a url\"\nsecret = \"s\"\n",
            "notify.sinks[0].url",
        ),
        (
            "[[notify.sinks]]\nname = \"push\"\ntype = \"webhook\"\nurl = \"ftp://example.test/x\"\nsecret = \"s\"\n",
            "notify.sinks[0].url",
        ),
        (
            "[[notify.sinks]]\nname = \"push\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\n",
            "notify.sinks[0].secret",
        ),
        (
            "[[notify.sinks]]\nname = \"a\"\ntype = \"log\"\n[[notify.sinks]]\nname = \"push\"\ntype = \"pigeon\"\n",
            "notify.sinks[1].type",
        ),
        (
            "[[notify.sinks]]\nname = \"a b\"\ntype = \"log\"\n",
            "notify.sinks[0].name",
        ),
        (
            "[[notify.sinks]]\nname = \"a\"\ntype = \"log\"\n[[notify.sinks]]\nname = \"a\"\ntype = \"log\"\n",
            "notify.sinks[1].name",
        ),
        (
            "[[notify.sinks]]\nname = \"push\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\nsecret = \"s\"\nmaxAttempts = 0\n",
            "notify.sinks[0].maxAttempts",
        ),
        (
            "[[notify.sinks]]\nname = \"push\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\nsecret = \"s\"\ncolour = \"red\"\n",
            "unknown field `colour`",
        ),
    ];
    for (toml, named) in cases {
        let (code, stderr) = serve_with(toml);
        assert_eq!(code, Some(1), "{toml}\n{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains(named), "{named} in {stderr}");
        assert!(
            stderr.contains("tidings.toml"),
            "the file is named: {stderr}"
        );
        assert!(!stderr.contains("listening"), "{stderr}");
    }
}
