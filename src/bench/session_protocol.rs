//! How the load generators speak each socket protocol a session can use: `/ws` (Tidings' own
//! frames), SignalR's JSON hub protocol at `/chathub` and Socket.IO at `/socket.io/` (on its
//! WebSocket transport). For each it knows how to connect and get the session ready, how to
//! keep it alive, and how a delivered message looks, so that one generator measures them side
//! by side. It measures nothing itself.

use std::borrow::Cow;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A session's socket.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// SignalR's record separator.
const RS: char = '\u{1e}';

/// The protocol the generator's sessions speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SessionProtocol {
    /// `/ws`: a session hears all of its user's conversations.
    Ws,
    /// SignalR at `/chathub`: a session joins each of its user's conversations.
    Signalr,
    /// Socket.IO at `/socket.io/` on the WebSocket transport: a session hears all of its
    /// user's conversations.
    Socketio,
}

/// The fields of a delivered message the generators check.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Delivered<'a> {
    #[serde(borrow)]
    pub(crate) conversation_id: Cow<'a, str>,
    pub(crate) seq: u64,
    #[serde(borrow)]
    pub(crate) content: Cow<'a, str>,
}

/// A `/ws` frame, as much of it as the generators read.
#[derive(Deserialize)]
struct WsFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    message: Option<Delivered<'a>>,
}

/// A SignalR record while the session gets ready: its type and, for a completion, its error.
#[derive(Deserialize)]
struct Record {
    #[serde(rename = "type")]
    kind: u8,
    error: Option<String>,
}

/// A Socket.IO `message` event's argument.
#[derive(Deserialize)]
struct SocketIoMessage<'a> {
    #[serde(borrow)]
    message: Delivered<'a>,
}

/// A `ReceiveMessage` invocation.
#[derive(Deserialize)]
struct Received<'a> {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(borrow)]
    target: Cow<'a, str>,
    #[serde(borrow)]
    arguments: (Delivered<'a>,),
}

impl SessionProtocol {
    /// The session URL on `ws_base` (`ws://host:port`) for `token`.
    pub(crate) fn url(self, ws_base: &str, token: &str) -> String {
        match self {
            SessionProtocol::Ws => format!("{ws_base}/ws?token={token}"),
            SessionProtocol::Signalr => format!("{ws_base}/chathub?access_token={token}"),
            SessionProtocol::Socketio => {
                format!("{ws_base}/socket.io/?EIO=4&transport=websocket&token={token}")
            }
        }
    }

    /// How often the generator must say something for the server to keep the session: never
    /// for `/ws` (its WebSocket pings are answered by the library), SignalR's 15 s, and
    /// Engine.IO's heartbeat answer every 25 s.
    pub(crate) fn keep_alive(self) -> Option<(Duration, Frame)> {
        match self {
            SessionProtocol::Ws => None,
            SessionProtocol::Signalr => Some((
                Duration::from_secs(15),
                Frame::text(format!("{{\"type\":6}}{RS}")),
            )),
            SessionProtocol::Socketio => Some((Duration::from_secs(25), Frame::text("3"))),
        }
    }

    /// Connects and readies a session: `/ws` waits for `ready` and says it will not resume;
    /// SignalR does the handshake and joins `conversations`, waiting for every completion.
    pub(crate) async fn connect(
        self,
        url: &str,
        conversations: &[&str],
        within: Duration,
    ) -> anyhow::Result<Socket> {
        // Small buffers: the generator holds thousands of sessions next to the server.
        let config = WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .write_buffer_size(0);
        let opening = async {
            let (mut socket, _) =
                tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
            match self {
                SessionProtocol::Ws => ready_ws(&mut socket).await?,
                SessionProtocol::Signalr => ready_signalr(&mut socket, conversations).await?,
                SessionProtocol::Socketio => ready_socketio(&mut socket).await?,
            }
            Ok(socket)
        };
        tokio::time::timeout(within, opening)
            .await
            .context("the session was not ready in time")?
    }

    /// The messages a text frame delivers.
    pub(crate) fn delivered(self, text: &str) -> Vec<Delivered<'_>> {
        match self {
            SessionProtocol::Ws => match serde_json::from_str::<WsFrame>(text) {
                Ok(WsFrame {
                    kind,
                    message: Some(message),
                }) if kind == "message" => vec![message],
                _ => Vec::new(),
            },
            SessionProtocol::Signalr => text
                .split(RS)
                .filter(|record| !record.is_empty())
                // Only records that name the method are parsed (once), as `/ws` frames are.
                .filter(|record| record.contains("\"ReceiveMessage\""))
                .filter_map(|record| serde_json::from_str::<Received>(record).ok())
                .filter(|r| r.kind == 1 && r.target == "ReceiveMessage")
                .map(|received| received.arguments.0)
                .collect(),
            SessionProtocol::Socketio => text
                .strip_prefix(r#"42["message","#)
                .and_then(|_| serde_json::from_str::<(&str, SocketIoMessage)>(&text[2..]).ok())
                .map(|(_, event)| vec![event.message])
                .unwrap_or_default(),
        }
    }
}

/// The Engine.IO handshake, the CONNECT (the token is in the URL) and its answer; then a
/// heartbeat answer as the first packet, so live messages flow at once as on `/ws`.
async fn ready_socketio(socket: &mut Socket) -> anyhow::Result<()> {
    while let Some(frame) = socket.next().await {
        let Frame::Text(text) = frame? else { continue };
        let text = text.as_str();
        if text.starts_with("40") {
            socket.send(Frame::text("3")).await?;
            return Ok(());
        } else if text.starts_with("44") {
            anyhow::bail!("CONNECT refused: {text}");
        } else if text.starts_with('0') {
            socket.send(Frame::text("40")).await?;
        }
    }
    anyhow::bail!("the server closed the session before its CONNECT was answered")
}

async fn ready_ws(socket: &mut Socket) -> anyhow::Result<()> {
    while let Some(frame) = socket.next().await {
        if let Frame::Text(text) = frame? {
            let incoming: WsFrame = serde_json::from_str(text.as_str())?;
            if incoming.kind == "ready" {
                // A client's first frame tells the server it will not `resume` first, so live
                // messages flow at once (see docs/api.md, "Reconnecting").
                socket.send(Frame::text(r#"{"type":"ping"}"#)).await?;
                return Ok(());
            }
        }
    }
    anyhow::bail!("the server closed the session before `ready`")
}

async fn ready_signalr(socket: &mut Socket, conversations: &[&str]) -> anyhow::Result<()> {
    socket
        .send(Frame::text(format!(
            "{{\"protocol\":\"json\",\"version\":1}}{RS}"
        )))
        .await?;
    for (i, conversation) in conversations.iter().enumerate() {
        let join = serde_json::json!({
            "type": 1, "invocationId": i.to_string(),
            "target": "JoinConversation", "arguments": [conversation],
        });
        socket.feed(Frame::text(format!("{join}{RS}"))).await?;
    }
    socket.flush().await?;
    let mut handshaken = false;
    let mut completions = 0;
    while !handshaken || completions < conversations.len() {
        let Some(frame) = socket.next().await else {
            anyhow::bail!("the server closed the session during its handshake")
        };
        let Frame::Text(text) = frame? else { continue };
        for record in text.as_str().split(RS).filter(|r| !r.is_empty()) {
            if !handshaken {
                anyhow::ensure!(record == "{}", "handshake refused: {record}");
                handshaken = true;
                continue;
            }
            let record: Record = serde_json::from_str(record)?;
            if record.kind == 3 {
                if let Some(error) = record.error {
                    anyhow::bail!("JoinConversation failed: {error}");
                }
                completions += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_are_read_from_either_protocol() {
        let ws =
            r#"{"type":"message","message":{"conversationId":"c","seq":3,"content":"x","id":"m"}}"#;
        let got = SessionProtocol::Ws.delivered(ws);
        assert_eq!((got[0].conversation_id.as_ref(), got[0].seq), ("c", 3));
        assert!(SessionProtocol::Ws
            .delivered(r#"{"type":"typing"}"#)
            .is_empty());
        let records = format!(
            "{}{RS}{}{RS}",
            r#"{"type":1,"target":"ReceiveMessage","arguments":[{"conversationId":"c","seq":4,"content":"y"}]}"#,
            r#"{"type":1,"target":"UserTyping","arguments":[{"conversationId":"c","userId":"u","typing":true}]}"#,
        );
        let presence = format!(
            "{}{RS}",
            r#"{"type":1,"target":"PresenceChanged","arguments":[{"userId":"u","status":"online"}]}"#
        );
        assert!(SessionProtocol::Signalr.delivered(&presence).is_empty());
        let record: Record = serde_json::from_str(presence.trim_end_matches(RS)).unwrap();
        assert_eq!(
            record.kind, 1,
            "records of any method are read while getting ready"
        );
        let got = SessionProtocol::Signalr.delivered(&records);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].seq, 4);
        let event = r#"42["message",{"message":{"conversationId":"c","seq":5,"content":"z"}}]"#;
        let got = SessionProtocol::Socketio.delivered(event);
        assert_eq!((got[0].conversation_id.as_ref(), got[0].seq), ("c", 5));
        let typing = r#"42["typing",{"conversationId":"c","userId":"u","typing":true}]"#;
        assert!(SessionProtocol::Socketio.delivered(typing).is_empty());
    }
}
