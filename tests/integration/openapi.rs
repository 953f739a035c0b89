//! `GET /openapi.json` from the running server is a valid OpenAPI 3.1 document by a real
//! validator (Python's `openapi-spec-validator`, pinned, installed in a virtualenv on first
//! use), served without a token, and describes the chat routes with their bodies and problem
//! answers. (That every route of the router is in it is a unit test in src/api/openapi.rs.)

use crate::common;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::chat::chat_server;
use serde_json::Value;

/// The validator, pinned.
const VALIDATOR: &str = "openapi-spec-validator==0.9.0";

/// A virtualenv with the validator, made once per machine (under a lock: test binaries run at
/// the same time). Fails saying what to install when Python cannot make one; never skips.
fn validator_python() -> PathBuf {
    let venv = std::env::temp_dir().join("tidings-openapi-validator-0.9.0");
    let python = venv.join("bin/python");
    let lock = File::create(std::env::temp_dir().join("tidings-openapi-validator.lock"))
        .expect("create the install lock file");
    lock.lock().expect("lock the install lock file");
    let ready = venv.join(".installed");
    if !ready.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            made,
            "cannot create a virtualenv: install python3 and python3-venv"
        );
        let installed = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                VALIDATOR,
            ])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(installed, "pip install {VALIDATOR} failed");
        File::create(&ready).expect("mark the virtualenv ready");
    }
    python
}

/// The server's document passes `openapi-spec-validator` (3.1 schema and references).
#[tokio::test]
async fn the_served_document_is_valid_openapi_3_1() {
    let chat = chat_server(&[]).await;
    let response = reqwest::get(format!("{}/openapi.json", chat.server.base))
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.expect("the document");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/conversations"]["post"]["requestBody"].is_object());

    let file = chat.dir.path().join("openapi.json");
    std::fs::write(&file, &text).expect("write the document");
    let output = Command::new(validator_python())
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&file)
        .output()
        .expect("run the validator");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the validator refused it: {said}");
    assert!(said.contains("OK"), "{said}");
}
