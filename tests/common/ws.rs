//! A WebSocket client for the `/ws` tests (tokio-tungstenite, a real client over a real
//! socket): connect as a user, send frames, read frames with a generous deadline (a missing
//! frame fails the test instead of hanging it), and a server started with a `[ws]` section.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::chat::{chat_server_in, Chat};
use super::server::TestServer;

/// How long a test waits for a frame that must come.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Starts the server in process with a configuration file holding `toml` (e.g. a `[ws]`
/// section) and `--durability never`.
pub async fn ws_server(toml: &str) -> Chat {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_beside(&dir, toml);
    let file = config.to_str().expect("utf-8 path").to_owned();
    let args = config_flags(&file);
    let chat = chat_server_in(dir, &args).await;
    let _ = std::fs::remove_file(&config);
    chat
}

/// `tidings serve` on `dir` with `--durability never` and a configuration file holding `toml`,
/// and that file's path (see [`config_beside`]); remove it once the server has read it.
pub fn command_with_config(
    dir: &tempfile::TempDir,
    toml: &str,
) -> (std::process::Command, std::path::PathBuf) {
    let path = config_beside(dir, toml);
    let file = path.to_str().expect("utf-8 path").to_owned();
    (
        super::server::command(dir.path(), &config_flags(&file)),
        path,
    )
}

/// Writes `toml` to a configuration file beside the data directory `dir` (a data directory
/// holding foreign files is refused); its path.
pub fn config_beside(dir: &tempfile::TempDir, toml: &str) -> std::path::PathBuf {
    let path = dir.path().with_extension("toml");
    std::fs::write(&path, toml).expect("write the configuration file");
    path
}

/// The flags of a server on an ephemeral port, without fsync per append, configured by `file`.
fn config_flags(file: &str) -> [&str; 6] {
    [
        "--listen",
        "127.0.0.1:0",
        "--durability",
        "never",
        "--config",
        file,
    ]
}

pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub user_id: String,
    pub session_id: String,
}

/// The `ws://` URL of the server's `/ws`.
pub fn ws_url<S: TestServer>(chat: &Chat<S>) -> String {
    format!("{}/ws", chat.server.base().replacen("http://", "ws://", 1))
}

/// Connects as `user` with `?token=` and reads the `ready` frame.
pub async fn connect<S: TestServer>(chat: &Chat<S>, user: &str) -> WsClient {
    let url = format!("{}?token={}", ws_url(chat), chat.token(user));
    let (stream, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket upgrade");
    ready(stream).await
}

/// Connects with `Authorization: Bearer token` and reads the `ready` frame.
pub async fn connect_with_header<S: TestServer>(chat: &Chat<S>, token: &str) -> WsClient {
    let mut request = ws_url(chat).into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (stream, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket upgrade");
    ready(stream).await
}

/// Tries an upgrade with `query` appended to the URL; the refusal's status and JSON body.
pub async fn refused<S: TestServer>(chat: &Chat<S>, query: &str) -> (u16, Value) {
    let url = format!("{}{query}", ws_url(chat));
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("the upgrade was accepted"),
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let content_type = response.headers()["content-type"].to_str().unwrap();
            assert_eq!(content_type, "application/problem+json");
            let body = response.body().clone().unwrap_or_default();
            (status, serde_json::from_slice(&body).expect("problem JSON"))
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

async fn ready(stream: WebSocketStream<MaybeTlsStream<TcpStream>>) -> WsClient {
    let mut client = WsClient {
        stream,
        user_id: String::new(),
        session_id: String::new(),
    };
    let ready = client.next().await;
    assert_eq!(ready["type"], "ready", "the first frame is ready: {ready}");
    client.user_id = ready["userId"].as_str().expect("userId").to_owned();
    client.session_id = ready["sessionId"].as_str().expect("sessionId").to_owned();
    client
}

impl WsClient {
    pub async fn send(&mut self, frame: Value) {
        self.send_text(frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.stream
            .send(Message::text(text))
            .await
            .expect("send a frame");
    }

    /// The next JSON frame; panics on a close, an error or after [`DEADLINE`].
    pub async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(DEADLINE, self.stream.next())
                .await
                .expect("a frame within the deadline")
                .expect("the connection is open")
                .expect("a readable frame");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Close(close) => panic!("closed: {close:?}"),
                _ => {}
            }
        }
    }

    /// The next frame of `kind`, skipping others (presence, typing, …).
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Frames up to and including the first for which `last` holds.
    pub async fn until(&mut self, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await;
            let done = last(&frame);
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }

    /// The next `message` frame's message.
    pub async fn next_message(&mut self) -> Value {
        self.next_of("message").await["message"].clone()
    }

    /// Reads until the server closes; returns the close code and every text frame before it.
    pub async fn until_closed(&mut self) -> (u16, Vec<Value>) {
        let (code, _, frames) = self.until_close_frame().await;
        (code, frames)
    }

    /// Reads until the server closes; returns the close code, its reason and every text frame
    /// before it.
    pub async fn until_close_frame(&mut self) -> (u16, String, Vec<Value>) {
        let mut frames = Vec::new();
        loop {
            let message = tokio::time::timeout(DEADLINE, self.stream.next())
                .await
                .expect("a close within the deadline");
            match message {
                Some(Ok(Message::Text(text))) => {
                    frames.push(serde_json::from_str(&text).expect("JSON frame"))
                }
                Some(Ok(Message::Close(Some(close)))) => {
                    return (u16::from(close.code), close.reason.to_string(), frames)
                }
                Some(Ok(Message::Close(None))) => {
                    return (u16::from(CloseCode::Status), String::new(), frames)
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("connection failed before a close frame: {e}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    /// Closes the connection from the client side.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        while let Some(Ok(_)) = self.stream.next().await {}
    }

    /// A `send` frame with `ref` = `reference`.
    pub async fn send_message(&mut self, conversation: &str, content: &str, reference: &str) {
        self.send(json!({
            "type": "send", "ref": reference, "conversationId": conversation, "content": content
        }))
        .await;
    }
}

/// The seqs of the `message` frames among `frames`.
pub fn message_seqs(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["message"]["seq"].as_u64().expect("seq"))
        .collect()
}
