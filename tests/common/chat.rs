//! A chat client for the HTTP tests: a running server (in process unless a test needs the
//! binary, see [`super::server`]), tokens signed with its data directory's secret, and small
//! helpers for the routes and for checking problem+json answers.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, Response};
use serde_json::{json, Value};
use tidings::auth::Authenticator;

use super::server::{serve, start, wait_ready, Process, Server, TestServer};

/// A server (by default in process) with a client and the authenticator of its secret.
pub struct Chat<S = Server> {
    pub server: S,
    /// The data directory; declared after `server`, so it outlives the server's stop.
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
    auth: Authenticator,
}

/// The flags every chat server gets before `extra`: an ephemeral port and no fsync per append.
const CHAT_FLAGS: [&str; 4] = ["--listen", "127.0.0.1:0", "--durability", "never"];

/// Starts the server in process on a fresh directory with `extra` flags and waits until it is
/// ready.
pub async fn chat_server(extra: &[&str]) -> Chat {
    let dir = tempfile::tempdir().expect("temp dir");
    chat_server_in(dir, &chat_flags(extra)).await
}

/// Starts the server in process on `dir` with `args` (`tidings serve` flags, `--listen`
/// included) and waits until it is ready.
pub async fn chat_server_in(dir: tempfile::TempDir, args: &[&str]) -> Chat {
    let server = serve(dir.path(), args);
    ready_chat(server, dir).await
}

/// [`chat_server`], as the `tidings serve` binary.
pub async fn chat_process(extra: &[&str]) -> Chat<Process> {
    let dir = tempfile::tempdir().expect("temp dir");
    chat_process_in(dir, &chat_flags(extra)).await
}

/// [`chat_server_in`], as the `tidings serve` binary.
pub async fn chat_process_in(dir: tempfile::TempDir, args: &[&str]) -> Chat<Process> {
    let cmd = super::server::command(dir.path(), args);
    chat_server_from(dir, cmd).await
}

/// Starts `cmd` (a `tidings serve` on `dir`, see [`super::server::command`]) and waits until
/// it is ready.
pub async fn chat_server_from(dir: tempfile::TempDir, cmd: std::process::Command) -> Chat<Process> {
    ready_chat(start(cmd), dir).await
}

fn chat_flags<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = CHAT_FLAGS.to_vec();
    args.extend_from_slice(extra);
    args
}

async fn ready_chat<S: TestServer>(server: S, dir: tempfile::TempDir) -> Chat<S> {
    wait_ready(&server).await;
    let auth = authenticator(dir.path());
    Chat {
        server,
        dir,
        http: reqwest::Client::new(),
        auth,
    }
}

pub fn authenticator(dir: &Path) -> Authenticator {
    Authenticator::from_config(None, dir).expect("the server's secret")
}

/// A token for `user`, signed with the secret of `data_dir`, that expired an hour ago.
pub fn expired_token(data_dir: &Path, user: &str) -> String {
    let secret = std::fs::read(data_dir.join("secret.key")).expect("the server's secret");
    let an_hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        - 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": user, "exp": an_hour_ago}),
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .expect("sign")
}

impl<S: TestServer> Chat<S> {
    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.server.base()))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics text")
    }

    pub fn token(&self, user: &str) -> String {
        self.auth.issue(user, None, &[], Duration::from_secs(3600))
    }

    pub fn named_token(&self, user: &str, name: &str) -> String {
        self.auth
            .issue(user, Some(name), &[], Duration::from_secs(3600))
    }

    /// `method path` as `user` (None: no token) with an optional JSON body.
    pub async fn call(
        &self,
        user: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.server.base()));
        if let Some(user) = user {
            request = request.bearer_auth(self.token(user));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    pub async fn get(&self, user: &str, path: &str) -> Response {
        self.call(Some(user), Method::GET, path, None).await
    }

    pub async fn post(&self, user: &str, path: &str, body: Value) -> Response {
        self.call(Some(user), Method::POST, path, Some(body)).await
    }

    /// `GET path` as `user`, answered with JSON (any status).
    pub async fn get_json(&self, user: &str, path: &str) -> Value {
        self.get(user, path)
            .await
            .json()
            .await
            .expect("JSON answer")
    }

    /// `POST path` as `user`, answered with JSON (any status).
    pub async fn post_json(&self, user: &str, path: &str, body: Value) -> Value {
        self.post(user, path, body)
            .await
            .json()
            .await
            .expect("JSON answer")
    }

    /// Polls `GET path` as `user` until `done` holds for the answer (at most 2 s); returns it.
    pub async fn wait_until(&self, user: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(user, path, Duration::from_secs(2), |_, body| done(body))
            .await
    }

    /// Polls `GET path` as `user` until `done(status, body)` holds (at most `within`; a body
    /// that is not JSON is `null`); returns the body.
    pub async fn wait_for(
        &self,
        user: &str,
        path: &str,
        within: Duration,
        done: impl Fn(u16, &Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let response = self.get(user, path).await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if done(status, &body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} as {user} on {} never reached the state: {status} {body}",
                self.server.base()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Creates a conversation `id` by `user` with `others`; panics unless 201.
    pub async fn conversation(&self, user: &str, id: &str, others: &[&str]) -> Value {
        let response = self
            .post(
                user,
                "/api/conversations",
                json!({"id": id, "participants": others}),
            )
            .await;
        assert_eq!(response.status(), 201, "create {id}");
        response.json().await.expect("conversation JSON")
    }

    /// Sends `content` as `user`; panics unless 202; returns the ack.
    pub async fn send(&self, user: &str, conversation: &str, content: &str) -> Value {
        let response = self
            .post(
                user,
                &format!("/api/conversations/{conversation}/messages"),
                json!({ "content": content }),
            )
            .await;
        assert_eq!(response.status(), 202, "send to {conversation}");
        response.json().await.expect("ack JSON")
    }

    /// The history page at `query` (e.g. `?limit=5`), as `user`; panics unless 200.
    pub async fn history(&self, user: &str, conversation: &str, query: &str) -> Value {
        let response = self
            .get(
                user,
                &format!("/api/conversations/{conversation}/messages{query}"),
            )
            .await;
        assert_eq!(response.status(), 200, "history of {conversation}");
        response.json().await.expect("page JSON")
    }

    /// Every message of the conversation as `user` reads it, oldest first, page after page.
    pub async fn all_messages(&self, user: &str, conversation: &str) -> Vec<Value> {
        let mut items: Vec<Value> = Vec::new();
        loop {
            let after = items.last().map_or(0, |m| m["seq"].as_u64().expect("seq"));
            let query = format!("?after={after}&limit=200");
            let page = self.history(user, conversation, &query).await;
            items.extend(page["items"].as_array().expect("items").iter().cloned());
            if page["hasMore"] != true {
                return items;
            }
        }
    }

    /// Waits (up to `within`) until the conversation holds `count` messages; returns them all.
    pub async fn wait_messages(
        &self,
        user: &str,
        conversation: &str,
        count: usize,
        within: Duration,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let items = self.all_messages(user, conversation).await;
            if items.len() >= count {
                return items;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} messages after {within:?}",
                items.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Asserts a problem+json answer with `status`; returns its body.
pub async fn problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "status");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.expect("problem JSON");
    for field in ["type", "title", "status", "detail"] {
        assert!(body.get(field).is_some(), "{field} in {body}");
    }
    assert_eq!(body["status"], status);
    body
}
