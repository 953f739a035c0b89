//! Talking to a running Tidings server as a client would: tokens minted with `tidings token`
//! (the server's own binary and data directory), topics and conversations over HTTP. It does not
//! start the server; `benches/peers/run` does.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

/// Where the Tidings server is and how to sign its tokens.
#[derive(Args, Debug, Clone)]
pub struct TidingsArgs {
    /// Base URL of the server (`http://127.0.0.1:PORT`).
    #[arg(long)]
    pub url: String,
    /// The `tidings` binary (to mint tokens with `tidings token`).
    #[arg(long)]
    pub tidings_bin: PathBuf,
    /// The server's data directory (where its `secret.key` is).
    #[arg(long)]
    pub data_dir: PathBuf,
}

impl TidingsArgs {
    /// A token for `user` with `scopes`, signed with the server's secret.
    pub fn token(&self, user: &str, scopes: &[&str]) -> Result<String> {
        let mut command = Command::new(&self.tidings_bin);
        command
            .arg("token")
            .arg(user)
            .arg("--data-dir")
            .arg(&self.data_dir);
        for scope in scopes {
            command.arg("--scope").arg(scope);
        }
        let output = command
            .output()
            .with_context(|| format!("running {}", self.tidings_bin.display()))?;
        if !output.status.success() {
            bail!(
                "tidings token {user} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8(output.stdout)?.trim().to_owned())
    }

    /// A keep-alive HTTP/1.1 client (reqwest opens one connection per request in flight).
    pub fn client() -> Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?)
    }

    /// Creates topic `name` with one partition (as the Redis stream and the JetStream stream
    /// are one each).
    pub async fn create_topic(&self, token: &str, name: &str) -> Result<()> {
        let response = Self::client()?
            .post(format!("{}/api/topics", self.url))
            .bearer_auth(token)
            .json(&json!({"name": name, "partitions": 1}))
            .send()
            .await?;
        expect_status(response, 201, "creating the topic").await?;
        Ok(())
    }

    /// `POST /api/topics/{topic}/records` URL.
    pub fn records_url(&self, topic: &str) -> String {
        format!("{}/api/topics/{topic}/records", self.url)
    }
}

/// Fails with the server's answer unless it has status `expected`.
pub async fn expect_status(
    response: reqwest::Response,
    expected: u16,
    what: &str,
) -> Result<reqwest::Response> {
    let status = response.status().as_u16();
    if status == expected {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    bail!("{what}: expected {expected}, got {status}: {body}")
}

/// A record value as Tidings stores it: the JSON text of a string, `size` bytes long with its
/// quotes (so the log holds exactly `size` bytes per record, as Redis and JetStream do).
pub fn json_string_of_size(size: usize) -> String {
    let text = String::from_utf8(crate::load::record_value(size.saturating_sub(2)))
        .expect("record_value is ASCII");
    format!("\"{text}\"")
}
