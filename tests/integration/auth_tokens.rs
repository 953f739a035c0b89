//! Authentication end to end: `tidings token` signs with the secret the server created on first
//! start (and never creates one itself), and the server answers 401 problem+json to missing,
//! expired, unsigned and wrongly signed tokens. `tidings token` is the binary; the server runs
//! in the test's process.

use crate::common;

use std::process::Command;

use common::server::{serve, wait_ready};

fn token(data_dir: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .arg("token")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("TIDINGS_JWT_SECRET")
        .env_remove("TIDINGS_CONFIG")
        .output()
        .expect("run tidings token");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

async fn me(base: &str, auth: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{base}/api/me"));
    if let Some(value) = auth {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

async fn assert_unauthorized(response: reqwest::Response) {
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 401);
    assert!(
        problem["detail"].as_str().unwrap().contains("token"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_token_from_the_cli_is_accepted_and_bad_ones_get_401() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &["--listen", "127.0.0.1:0"]);
    wait_ready(&server).await;
    assert!(
        dir.path().join("secret.key").exists(),
        "created on first start"
    );

    let good = token(
        dir.path(),
        &["alice", "--name", "Alice", "--scope", "events:publish"],
    );
    let response = me(&server.base, Some(&format!("Bearer {good}"))).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"userId": "alice", "name": "Alice", "scopes": ["events:publish"]})
    );

    assert_unauthorized(me(&server.base, None).await).await;
    assert_unauthorized(me(&server.base, Some("Bearer not-a-jwt")).await).await;
    assert_unauthorized(me(&server.base, Some(&format!("Basic {good}"))).await).await;

    let other_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        other_dir.path().join("secret.key"),
        "another server's secret, long enough to sign",
    )
    .unwrap();
    let foreign = token(other_dir.path(), &["alice"]);
    assert_unauthorized(me(&server.base, Some(&format!("Bearer {foreign}"))).await).await;

    let expired = common::chat::expired_token(dir.path(), "alice");
    assert_unauthorized(me(&server.base, Some(&format!("Bearer {expired}"))).await).await;

    // alg "none" with a valid-looking payload must not pass.
    let unsigned =
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
    assert_unauthorized(me(&server.base, Some(&format!("Bearer {unsigned}"))).await).await;
}

#[test]
fn token_refuses_an_empty_user_and_a_bad_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tidings"))
            .arg("token")
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let empty = run(&[""]);
    assert_eq!(empty.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("user id cannot be empty"));
    assert_eq!(run(&["bob", "--ttl", "soon"]).status.code(), Some(2));
}

/// `tidings token` where there is no secret refuses, names `--data-dir` and `--config`, and
/// creates nothing (a new secret would sign tokens the server refuses).
#[test]
fn token_without_a_secret_refuses_and_creates_none() {
    let dir = tempfile::tempdir().unwrap();
    for data_dir in [dir.path().to_owned(), dir.path().join("missing")] {
        let output = Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(["token", "alice", "--data-dir"])
            .arg(&data_dir)
            .env_remove("TIDINGS_JWT_SECRET")
            .env_remove("TIDINGS_CONFIG")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("no signing secret")
                && stderr.contains("--data-dir DIR")
                && stderr.contains("--config FILE"),
            "{stderr}"
        );
        assert!(!data_dir.join("secret.key").exists());
    }
    assert!(!dir.path().join("missing").exists(), "no directory either");
}

/// With `auth.jwtSecretFile`, an issuer and an audience configured, `tidings token --config`
/// mints a token that server accepts: the file's bytes are the secret, and the token carries
/// the issuer and audience the server checks.
#[tokio::test]
async fn token_from_the_config_carries_its_issuer_and_audience() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hs256.key");
    // A trailing newline is part of the secret: the file's bytes are used as they are.
    std::fs::write(&secret, "a shared secret of at least 32 bytes\n").unwrap();
    let config = dir.path().join("tidings.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\njwtSecretFile = {:?}\nissuer = \"tidings\"\naudience = \"chat\"\n",
            secret.display().to_string()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = serve(
        &data,
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    wait_ready(&server).await;
    let output = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["token", "alice", "--config"])
        .arg(&config)
        .env_remove("TIDINGS_JWT_SECRET")
        .env_remove("TIDINGS_CONFIG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let minted = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let response = me(&server.base, Some(&format!("Bearer {minted}"))).await;
    assert_eq!(response.status(), 200);

    let trimmed = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "alice", "exp": 9_999_999_999u64, "iss": "tidings", "aud": "chat"}),
        &jsonwebtoken::EncodingKey::from_secret(b"a shared secret of at least 32 bytes"),
    )
    .unwrap();
    let response = me(&server.base, Some(&format!("Bearer {trimmed}"))).await;
    assert_eq!(response.status(), 401, "the newline is part of the secret");
    assert!(
        !data.join("secret.key").exists(),
        "the configured file is the secret"
    );
}
