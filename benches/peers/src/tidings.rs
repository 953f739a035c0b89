//! The server under test as every subcommand names it ([`ServerArgs`]), and talking to a
//! running Tidings server as a client would: tokens minted with `tidings token` (the server's own
//! binary and data directory), topics over HTTP, requests checked for their status. It does not
//! start any server; `benches/peers/run` does.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

/// The log-like systems rows 1 and 2 compare.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum LogSystem {
    /// Tidings over HTTP.
    Tidings,
    /// Redis Streams.
    Redis,
    /// NATS JetStream.
    Nats,
}

/// The server a subcommand loads (every subcommand but `plot` takes these).
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// The server: `http://…` (Tidings, Socket.IO), `redis://…`, `nats://…`.
    #[arg(long)]
    pub url: String,
    /// A server process to report the CPU use of (repeat for several).
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Tidings only: the `tidings` binary, to mint tokens.
    #[arg(long)]
    pub tidings_bin: Option<PathBuf>,
    /// Tidings only: the server's data directory (its secret).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl ServerArgs {
    /// The Tidings connection, which needs `--tidings-bin` and `--data-dir`.
    pub fn tidings(&self) -> Result<TidingsArgs> {
        match (&self.tidings_bin, &self.data_dir) {
            (Some(bin), Some(dir)) => Ok(TidingsArgs {
                url: self.url.clone(),
                tidings_bin: bin.clone(),
                data_dir: dir.clone(),
            }),
            _ => bail!("Tidings needs --tidings-bin and --data-dir (to mint tokens)"),
        }
    }
}

/// Where the Tidings server is and how to sign its tokens.
#[derive(Debug, Clone)]
pub struct TidingsArgs {
    /// Base URL of the server (`http://127.0.0.1:PORT`).
    pub url: String,
    /// The `tidings` binary (to mint tokens with `tidings token`).
    pub tidings_bin: PathBuf,
    /// The server's data directory (where its `secret.key` is).
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
        let request = Self::client()?
            .post(format!("{}/api/topics", self.url))
            .json(&json!({"name": name, "partitions": 1}));
        call(request, token, 201, "creating the topic").await?;
        Ok(())
    }

    /// `POST /api/topics/{topic}/records` URL.
    pub fn records_url(&self, topic: &str) -> String {
        format!("{}/api/topics/{topic}/records", self.url)
    }
}

/// Sends `request` with `token` and returns the answer; fails with the server's answer unless
/// its status is `expected`.
pub async fn call(
    request: reqwest::RequestBuilder,
    token: &str,
    expected: u16,
    what: &str,
) -> Result<reqwest::Response> {
    let response = request.bearer_auth(token).send().await?;
    let status = response.status().as_u16();
    if status == expected {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    bail!("{what}: expected {expected}, got {status}: {body}")
}

/// One keep-alive HTTP/1.1 connection posting JSON to one URL with one token, one request at
/// a time: hyper's connection API with nothing in front of it. The load loops use it instead
/// of reqwest, whose pool, URL parsing and header building per request cost the generator
/// about twice what the Redis client spends per command, on the cores the server shares.
pub struct Poster {
    sender: SendRequest<Full<Bytes>>,
    path: Uri,
    host: HeaderValue,
    authorization: HeaderValue,
}

impl Poster {
    /// Connects to the host of `url` (`http://host:port/path`), to post to its path.
    pub async fn connect(url: &str, token: &str) -> Result<Poster> {
        let uri: Uri = url.parse().with_context(|| format!("parsing {url}"))?;
        let authority = uri.authority().context("the URL has no host")?.clone();
        let stream = TcpStream::connect(authority.as_str())
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Poster {
            sender,
            path: uri
                .path_and_query()
                .context("the URL has no path")?
                .as_str()
                .parse()?,
            host: HeaderValue::from_str(authority.as_str())?,
            authorization: HeaderValue::from_str(&format!("Bearer {token}"))?,
        })
    }

    /// Posts `body` and reads the answer to its end; fails with the server's answer unless
    /// its status is `expected`.
    pub async fn post(&mut self, body: String, expected: u16, what: &str) -> Result<()> {
        let mut request = Request::post(self.path.clone()).body(Full::new(Bytes::from(body)))?;
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(AUTHORIZATION, self.authorization.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let answer = response.into_body().collect().await?.to_bytes();
        if status != expected {
            bail!(
                "{what}: expected {expected}, got {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        Ok(())
    }
}

/// A record value as Tidings stores it: the JSON text of a string, `size` bytes long with its
/// quotes (so the log holds exactly `size` bytes per record, as Redis and JetStream do).
pub fn json_string_of_size(size: usize) -> String {
    let text = String::from_utf8(crate::load::record_value(size.saturating_sub(2)))
        .expect("record_value is ASCII");
    format!("\"{text}\"")
}
