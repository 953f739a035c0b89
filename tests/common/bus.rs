//! An event-bus client for the HTTP tests: a running server and requests made with tokens that
//! hold given scopes, plus the topic helpers the topic and consumer-group tests share.

use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{json, Value};
use tidings::auth::Authenticator;

use super::chat::{authenticator, chat_process, chat_server, Chat};
use super::server::{Process, Server, TestServer};

/// A server (by default in process) plus tokens with scopes.
pub struct Bus<S = Server> {
    pub chat: Chat<S>,
    pub auth: Authenticator,
    pub http: reqwest::Client,
}

pub const PUBLISHER: &[&str] = &["events:publish"];
pub const CONSUMER: &[&str] = &["events:consume"];
pub const BOTH: &[&str] = &["events:publish", "events:consume"];
pub const ADMIN: &[&str] = &["admin"];
pub const NONE: &[&str] = &[];

impl Bus {
    /// The server in process, with `extra` flags (see [`chat_server`]).
    pub async fn start(extra: &[&str]) -> Bus {
        Bus::of(chat_server(extra).await)
    }
}

impl Bus<Process> {
    /// [`Bus::start`], as the `tidings serve` binary.
    pub async fn start_process(extra: &[&str]) -> Bus<Process> {
        Bus::of(chat_process(extra).await)
    }

    /// The binary with a Kafka listener whose connections may do nothing until they
    /// authenticate with SASL (`kafka.anonymousScopes = []`); its Kafka address, and the
    /// directory holding its configuration file (keep it alive as long as the server).
    pub async fn start_kafka_sasl_only() -> (Bus<Process>, String, tempfile::TempDir) {
        let config_dir = tempfile::tempdir().expect("temp dir");
        let file = config_dir.path().join("tidings.toml");
        std::fs::write(&file, "[kafka]\nanonymousScopes = []\n").expect("write the config");
        let file = file.to_str().expect("UTF-8 path").to_owned();
        let bus = Bus::start_process(&["--config", &file, "--kafka-listen", "127.0.0.1:0"]).await;
        let broker = bus.chat.server.kafka.clone().expect("kafka listening");
        (bus, broker, config_dir)
    }
}

impl<S: TestServer> Bus<S> {
    /// A bus client of `chat`'s server.
    pub fn of(chat: Chat<S>) -> Bus<S> {
        let auth = authenticator(chat.dir.path());
        Bus {
            chat,
            auth,
            http: reqwest::Client::new(),
        }
    }

    /// `method path` with a token holding `scopes` (None: no token) and an optional body.
    pub async fn call(
        &self,
        scopes: Option<&[&str]>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.chat.server.base()));
        if let Some(scopes) = scopes {
            let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
            let token = self
                .auth
                .issue("svc", None, &scopes, Duration::from_secs(3600));
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    pub async fn get(&self, scopes: &[&str], path: &str) -> Response {
        self.call(Some(scopes), Method::GET, path, None).await
    }

    pub async fn post(&self, scopes: &[&str], path: &str, body: Value) -> Response {
        self.call(Some(scopes), Method::POST, path, Some(body))
            .await
    }

    pub async fn delete(&self, scopes: &[&str], path: &str) -> Response {
        self.call(Some(scopes), Method::DELETE, path, None).await
    }

    /// Creates `name` with `partitions`; panics unless 201; returns the topic.
    pub async fn create(&self, name: &str, partitions: u32) -> Value {
        let response = self
            .post(
                PUBLISHER,
                "/api/topics",
                json!({"name": name, "partitions": partitions}),
            )
            .await;
        assert_eq!(response.status(), 201, "create {name}");
        response.json().await.expect("topic JSON")
    }

    /// Publishes `records` to `topic`; panics unless 202; returns the offsets.
    pub async fn publish(&self, topic: &str, records: Value) -> Vec<Value> {
        let response = self
            .post(
                PUBLISHER,
                &format!("/api/topics/{topic}/records"),
                json!({ "records": records }),
            )
            .await;
        assert_eq!(response.status(), 202, "publish to {topic}");
        let body: Value = response.json().await.expect("offsets JSON");
        body["offsets"].as_array().expect("offsets").clone()
    }
}
