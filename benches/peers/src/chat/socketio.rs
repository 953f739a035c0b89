//! The Socket.IO side of row 3, talking to `benches/peers/socketio/server.js`: each pair is a
//! room; the receiver joins it, its senders emit `send` with an ack (the server acks after its
//! `XADD` to Redis, then the room gets a `message` event). The client speaks the Socket.IO 5 /
//! Engine.IO 4 protocol over the WebSocket transport only, with the same WebSocket library as the
//! Tidings side, so both sides of the ratio share one client stack. It handles the packets this
//! benchmark needs: open, connect, event, ack, ping/pong; nothing else (no polling, no binary).
//! Tidings' own Socket.IO endpoint is driven with the same client (`tidings.rs`). With
//! `--system socketio-echo` each sender has a room of its own with its pair's receiver, so the
//! relay delivers each message to the sending socket too, as Tidings does to a sending session.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{ChatArgs, ChatSender, Deliveries};

/// Connects every receiver, then every sender. Receiver i joins `room-{i}` and sender j sends to
/// room j mod pairs. With `echo`, sender j has a room of its own, `room-s{j}`, joined by its
/// socket and by receiver j mod pairs: each message reaches the receiver and the sending socket,
/// which drops it while it waits for its ack.
pub async fn connect(
    args: &ChatArgs,
    deliveries: &Arc<Deliveries>,
    echo: bool,
) -> Result<Vec<SocketIoSender>> {
    let room_of = |j: usize| {
        if echo {
            format!("room-s{j}")
        } else {
            format!("room-{}", j % args.pairs)
        }
    };
    for i in 0..args.pairs {
        let mut receiver = SocketIo::connect(&args.server.url, None)
            .await
            .context("connecting a receiver")?;
        let mut rooms: Vec<String> = (i..args.senders.max(args.pairs))
            .step_by(args.pairs)
            .map(room_of)
            .collect();
        rooms.dedup();
        for room in rooms {
            receiver.emit_with_ack(&json!(["join", room])).await?;
        }
        tokio::spawn(receive(receiver, deliveries.clone(), relayed_content));
    }
    let mut senders = Vec::with_capacity(args.senders);
    for j in 0..args.senders {
        let room = room_of(j);
        let mut socket = SocketIo::connect(&args.server.url, None)
            .await
            .context("connecting a sender")?;
        if echo {
            socket.emit_with_ack(&json!(["join", room.clone()])).await?;
        }
        senders.push(SocketIoSender { socket, room });
    }
    Ok(senders)
}

/// The relay's `message` event payload, `{id, room, content}`: its content.
fn relayed_content(payload: &serde_json::Value) -> Option<&str> {
    payload.get("content")?.as_str()
}

/// Times every `message` event, its content read from the payload by `content_of`, until the
/// connection ends.
pub(super) async fn receive(
    mut socket: SocketIo,
    deliveries: Arc<Deliveries>,
    content_of: fn(&serde_json::Value) -> Option<&str>,
) {
    loop {
        match socket.next_event().await {
            Ok(Some((event, payload))) if event == "message" => {
                let delivered = content_of(&payload)
                    .context("a message event without content")
                    .and_then(|content| deliveries.delivered(content));
                if let Err(error) = delivered {
                    eprintln!("receiver: {error:#}");
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(error) => {
                eprintln!("receiver: {error:#}");
                return;
            }
        }
    }
}

/// A sender's socket and its room.
pub struct SocketIoSender {
    socket: SocketIo,
    room: String,
}

impl ChatSender for SocketIoSender {
    async fn send(&mut self, content: String) -> Result<()> {
        let event = json!(["send", {"room": self.room, "content": content}]);
        let ack = self.socket.emit_with_ack(&event).await?;
        if let Some(error) = ack.get(0).and_then(|a| a.get("error")) {
            bail!("the server refused the send: {error}");
        }
        Ok(())
    }
}

/// One Socket.IO connection to the default namespace, over a WebSocket.
pub(super) struct SocketIo {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_ack_id: u64,
}

impl SocketIo {
    /// Opens the WebSocket (with `?token=` when given: Tidings authenticates it), reads
    /// Engine.IO's open packet (`0{…}`), connects the namespace (`40`) and waits for the
    /// server's connect packet (`40{"sid":…}`).
    pub(super) async fn connect(url: &str, token: Option<&str>) -> Result<Self> {
        let mut ws_url = format!(
            "{}/socket.io/?EIO=4&transport=websocket",
            url.replacen("http", "ws", 1)
        );
        if let Some(token) = token {
            ws_url += &format!("&token={token}");
        }
        let (socket, _) = tokio_tungstenite::connect_async(ws_url).await?;
        let mut this = SocketIo {
            socket,
            next_ack_id: 0,
        };
        let open = this.next_packet().await?;
        if !open.starts_with('0') {
            bail!("expected an Engine.IO open packet, got {open:.40}");
        }
        this.socket.send(Message::text("40")).await?;
        let connected = this.next_packet().await?;
        if !connected.starts_with("40") {
            bail!("expected a Socket.IO connect packet, got {connected:.40}");
        }
        Ok(this)
    }

    /// Emits `[event, …args]` with an ack id and returns the ack's arguments.
    pub(super) async fn emit_with_ack(
        &mut self,
        event: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        let id = self.next_ack_id;
        self.next_ack_id += 1;
        self.socket
            .send(Message::text(format!("42{id}{event}")))
            .await?;
        let ack_prefix = format!("43{id}");
        loop {
            let packet = self.next_packet().await?;
            if let Some(arguments) = packet.strip_prefix(&ack_prefix) {
                return Ok(serde_json::from_str(arguments)?);
            }
        }
    }

    /// The next event `(name, first argument)`, or `None` once the server closed.
    async fn next_event(&mut self) -> Result<Option<(String, serde_json::Value)>> {
        loop {
            let packet = match self.next_packet().await {
                Ok(packet) => packet,
                Err(error) if error.downcast_ref::<Closed>().is_some() => return Ok(None),
                Err(error) => return Err(error),
            };
            if let Some(array) = packet.strip_prefix("42") {
                let (event, payload): (String, serde_json::Value) = serde_json::from_str(array)?;
                return Ok(Some((event, payload)));
            }
        }
    }

    /// The next Engine.IO packet's text, answering the server's pings (`2` → `3`) on the way.
    async fn next_packet(&mut self) -> Result<String> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                    self.socket.send(Message::text("3")).await?;
                }
                Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
                Some(Ok(Message::Close(_))) | None => return Err(Closed.into()),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
            }
        }
    }
}

/// The server closed the connection.
#[derive(Debug)]
struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server closed the connection")
    }
}

impl std::error::Error for Closed {}
