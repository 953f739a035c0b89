//! Tidings' side of row 3: each pair is a two-member conversation; its senders post
//! `POST /api/conversations/{id}/messages` (one in flight each), the receiver holds `/ws?token=T`
//! open (after `ready` and a `resume`, as a client does) and times each `{"type":"message"}`
//! frame. With `--system tidings-ws` every sending connection is a `/ws` session of its own user,
//! in a two-member conversation of its own with its pair's receiver, sending `send` frames and
//! waiting for each `ack` (as a chat client does; the server also delivers each message to the
//! sending session, which reads and drops it). `--system tidings-socketio` is the same with
//! Socket.IO sockets (`/socket.io/`, WebSocket transport) emitting `send` with an ack. Written
//! against the WebSocket contract in docs/api.md; a server without `/ws` fails the connection and the run script reports it.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::socketio::{receive, SocketIo};
use super::{ChatArgs, ChatSender, Deliveries};
use crate::tidings::{call, Poster, TidingsArgs};

/// What the run script looks for to report the Tidings side as not run rather than broken.
const NO_WEBSOCKET_HUB: &str = "this Tidings build has no /ws endpoint";

/// Creates every pair's conversation and opens its receiver's WebSocket (waiting for `ready`),
/// then returns `--senders` senders, each on its own keep-alive connection.
pub async fn connect(args: &ChatArgs, deliveries: &Arc<Deliveries>) -> Result<Vec<TidingsSender>> {
    let tidings = args.server.tidings()?;
    let client = TidingsArgs::client()?;
    let mut pairs = Vec::with_capacity(args.pairs);
    for i in 0..args.pairs {
        let (sender, receiver) = (format!("peers-sender-{i}"), format!("peers-receiver-{i}"));
        let sender_token = tidings.token(&sender, &[])?;
        let receiver_token = tidings.token(&receiver, &[])?;
        let conversation =
            create_conversation(&client, &tidings.url, &sender_token, &receiver).await?;
        open_receiver(
            &tidings.url,
            &receiver_token,
            std::slice::from_ref(&conversation),
            deliveries.clone(),
        )
        .await
        .with_context(|| format!("opening {receiver}'s WebSocket"))?;
        let url = format!("{}/api/conversations/{conversation}/messages", tidings.url);
        pairs.push((url, sender_token));
    }
    let mut senders = Vec::with_capacity(args.senders);
    for j in 0..args.senders {
        let (url, token) = &pairs[j % pairs.len()];
        senders.push(TidingsSender {
            poster: Poster::connect(url, token).await?,
        });
    }
    Ok(senders)
}

/// The users and conversations of the session senders: receiver i's token and conversations,
/// and each sender's token and conversation (sender j is its own user, in a two-member
/// conversation with receiver j mod pairs).
struct SessionPairs {
    receivers: Vec<(String, String, Vec<String>)>,
    senders: Vec<(String, String)>,
}

async fn session_pairs(args: &ChatArgs, prefix: &str) -> Result<SessionPairs> {
    let tidings = args.server.tidings()?;
    let client = TidingsArgs::client()?;
    let mut receivers = Vec::with_capacity(args.pairs);
    for i in 0..args.pairs {
        let receiver = format!("peers-receiver-{i}");
        let token = tidings.token(&receiver, &[])?;
        receivers.push((receiver, token, Vec::new()));
    }
    let mut senders = Vec::with_capacity(args.senders);
    for j in 0..args.senders {
        let sender = format!("{prefix}-{j}");
        let token = tidings.token(&sender, &[])?;
        let (receiver, _, conversations) = &mut receivers[j % args.pairs];
        let conversation = create_conversation(&client, &tidings.url, &token, receiver).await?;
        conversations.push(conversation.clone());
        senders.push((token, conversation));
    }
    Ok(SessionPairs { receivers, senders })
}

/// Opens every pair's receiver, then `--senders` `/ws` sessions, sender j as its own user in a
/// conversation with receiver j mod pairs.
pub async fn connect_ws(
    args: &ChatArgs,
    deliveries: &Arc<Deliveries>,
) -> Result<Vec<TidingsWsSender>> {
    let tidings = args.server.tidings()?;
    let SessionPairs { receivers, senders } = session_pairs(args, "peers-ws-sender").await?;
    for (receiver, token, conversations) in &receivers {
        open_receiver(&tidings.url, token, conversations, deliveries.clone())
            .await
            .with_context(|| format!("opening {receiver}'s WebSocket"))?;
    }
    let mut connected = Vec::with_capacity(senders.len());
    for (token, conversation) in senders {
        let socket = open_session(&tidings.url, &token).await?;
        connected.push(TidingsWsSender {
            socket,
            conversation,
            next_ref: 0,
        });
    }
    Ok(connected)
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

async fn create_conversation(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    with: &str,
) -> Result<String> {
    let request = client
        .post(format!("{url}/api/conversations"))
        .json(&json!({"participants": [with]}));
    let created: Created = call(request, token, 201, "creating a conversation")
        .await?
        .json()
        .await?;
    Ok(created.id)
}

/// A server → client frame; only the fields this benchmark reads.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    message: Option<FrameMessage>,
}

#[derive(Deserialize)]
struct FrameMessage {
    content: String,
}

/// A WebSocket to the server.
type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/ws` and does what a chat client does on connecting: waits for `ready`, then sends
/// `resume` for its conversation (the server holds live messages back until a new session's
/// first frame is handled, so that a resume comes first) and waits for its `ack`. Then spawns
/// the task that times every `message`.
async fn open_receiver(
    url: &str,
    token: &str,
    conversations: &[String],
    deliveries: Arc<Deliveries>,
) -> Result<()> {
    let mut socket = open_session(url, token).await?;
    let seen: serde_json::Map<String, serde_json::Value> = conversations
        .iter()
        .map(|c| (c.clone(), json!(0)))
        .collect();
    let resume = json!({"type": "resume", "ref": "peers", "conversations": seen});
    socket.send(Message::text(resume.to_string())).await?;
    let answer = next_frame_of(&mut socket, |frame| frame["ref"] == "peers").await?;
    if answer["type"] != "ack" {
        bail!("the server refused the resume: {answer}");
    }
    tokio::spawn(time_deliveries(socket, deliveries));
    Ok(())
}

/// Opens `/ws` as the token's user and waits for `ready`.
async fn open_session(url: &str, token: &str) -> Result<Socket> {
    let ws_url = format!("{}/ws?token={token}", url.replacen("http", "ws", 1));
    let (mut socket, _) = match tokio_tungstenite::connect_async(ws_url).await {
        Err(WsError::Http(response)) if response.status() == 404 => {
            bail!("{NO_WEBSOCKET_HUB} (GET /ws answered 404)")
        }
        connected => connected?,
    };
    next_frame_of(&mut socket, |frame| frame["type"] == "ready").await?;
    Ok(socket)
}

/// Reads frames until one that `wanted` accepts, and returns it.
async fn next_frame_of(
    socket: &mut Socket,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: serde_json::Value = serde_json::from_str(&text)?;
                if wanted(&frame) {
                    return Ok(frame);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => bail!("the server closed the WebSocket during the handshake"),
        }
    }
}

/// Times every `message` frame until the connection ends.
async fn time_deliveries(mut socket: Socket, deliveries: Arc<Deliveries>) {
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        match serde_json::from_str::<Frame>(&text) {
            Ok(Frame {
                kind,
                message: Some(m),
            }) if kind == "message" => {
                if let Err(error) = deliveries.delivered(&m.content) {
                    eprintln!("receiver: {error:#}");
                }
            }
            Ok(_) => {}
            Err(error) => eprintln!("receiver: unreadable frame: {error}"),
        }
    }
}

/// One keep-alive HTTP connection sending to one conversation.
pub struct TidingsSender {
    poster: Poster,
}

impl ChatSender for TidingsSender {
    async fn send(&mut self, content: String) -> Result<()> {
        let body = json!({"content": content}).to_string();
        self.poster.post(body, 202, "sending a message").await
    }
}

/// One `/ws` session sending to its own conversation.
pub struct TidingsWsSender {
    socket: Socket,
    conversation: String,
    next_ref: u64,
}

impl ChatSender for TidingsWsSender {
    /// Sends a `send` frame and reads until its `ack` (the session's own copies of its
    /// messages arrive in between and are dropped); an `error` for it fails the send.
    async fn send(&mut self, content: String) -> Result<()> {
        self.next_ref += 1;
        let reference = self.next_ref;
        let frame = json!({"type": "send", "ref": reference,
            "conversationId": self.conversation, "content": content});
        self.socket.send(Message::text(frame.to_string())).await?;
        // A refusal made before the frame was parsed (the session's frame rate) has no `ref`.
        let answer = next_frame_of(&mut self.socket, |f| {
            f["ref"] == reference || (f["type"] == "error" && f.get("ref").is_none())
        })
        .await?;
        if answer["type"] != "ack" {
            bail!("send refused: {answer}");
        }
        Ok(())
    }
}

/// Opens every pair's receiver as a Socket.IO socket (WebSocket transport; it `resume`s its
/// conversations, as a client does on connecting), then `--senders` Socket.IO sockets, sender j
/// as its own user in a conversation with receiver j mod pairs, emitting `send` with an ack.
pub async fn connect_socketio(
    args: &ChatArgs,
    deliveries: &Arc<Deliveries>,
) -> Result<Vec<TidingsSocketIoSender>> {
    let url = &args.server.url;
    let SessionPairs { receivers, senders } = session_pairs(args, "peers-sio-sender").await?;
    for (receiver, token, conversations) in &receivers {
        let mut socket = SocketIo::connect(url, Some(token))
            .await
            .with_context(|| format!("opening {receiver}'s Socket.IO socket"))?;
        let seen: serde_json::Map<String, serde_json::Value> = conversations
            .iter()
            .map(|c| (c.clone(), json!(0)))
            .collect();
        let answer = socket
            .emit_with_ack(&json!(["resume", {"conversations": seen}]))
            .await?;
        if let Some(error) = answer.get(0).and_then(|a| a.get("error")) {
            bail!("the server refused the resume: {error}");
        }
        tokio::spawn(receive(socket, deliveries.clone(), |payload| {
            payload.get("message")?.get("content")?.as_str()
        }));
    }
    let mut connected = Vec::with_capacity(senders.len());
    for (token, conversation) in senders {
        connected.push(TidingsSocketIoSender {
            socket: SocketIo::connect(url, Some(&token)).await?,
            conversation,
        });
    }
    Ok(connected)
}

/// One Socket.IO socket sending to its own conversation.
pub struct TidingsSocketIoSender {
    socket: SocketIo,
    conversation: String,
}

impl ChatSender for TidingsSocketIoSender {
    /// Emits `send` and waits for its acknowledgement (the socket's own copies of its messages
    /// arrive in between and are dropped); an acknowledgement with an `error` fails the send.
    async fn send(&mut self, content: String) -> Result<()> {
        let event = json!(["send", {"conversationId": self.conversation, "content": content}]);
        let ack = self.socket.emit_with_ack(&event).await?;
        if let Some(error) = ack.get(0).and_then(|a| a.get("error")) {
            bail!("send refused: {error}");
        }
        Ok(())
    }
}
