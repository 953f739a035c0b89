//! Raw protocol clients for what the real client libraries never send (bad handshakes, early
//! or malformed records, in-band renewals at a chosen moment): a SignalR JSON-hub connection
//! ([`RawHub`]) and a Socket.IO socket on a WebSocket from the start ([`RawSocketIo`]). Every
//! read has a deadline, so a frame that never comes fails the test instead of hanging it.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::chat::Chat;
use super::server::TestServer;
use super::ws::DEADLINE;

/// A client WebSocket as tokio-tungstenite connects it.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The SignalR handshake of the JSON hub protocol, version 1.
pub const HANDSHAKE: &str = "{\"protocol\":\"json\",\"version\":1}\u{1e}";

/// The records of one SignalR text frame (each ends with 0x1E).
pub fn parse_records(text: &str) -> Vec<Value> {
    let body = text
        .strip_suffix('\u{1e}')
        .unwrap_or_else(|| panic!("a record ends with 0x1E: {text:?}"));
    body.split('\u{1e}')
        .map(|record| serde_json::from_str(record).expect("a record is JSON"))
        .collect()
}

/// A raw SignalR connection on `/chathub`.
pub struct RawHub {
    stream: Socket,
}

impl RawHub {
    /// Opens the WebSocket with `token` in the query, before any handshake.
    pub async fn open<S: TestServer>(chat: &Chat<S>, token: &str) -> RawHub {
        let url = format!(
            "{}/chathub?access_token={token}",
            chat.server.base().replacen("http", "ws", 1)
        );
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("upgrade");
        RawHub { stream }
    }

    /// Opens with `token` and completes the handshake.
    pub async fn connect<S: TestServer>(chat: &Chat<S>, token: &str) -> RawHub {
        let mut hub = RawHub::open(chat, token).await;
        hub.handshake().await;
        hub
    }

    /// Sends the handshake and checks the server's empty answer.
    pub async fn handshake(&mut self) {
        self.send(HANDSHAKE).await;
        assert_eq!(self.next().await, json!({}));
    }

    pub async fn send(&mut self, text: &str) {
        self.stream.send(Message::text(text)).await.expect("send");
    }

    /// Invokes `target` with `arguments`, expecting a completion for `id`.
    pub async fn invoke(&mut self, id: &str, target: &str, arguments: Value) {
        let record =
            json!({"type": 1, "invocationId": id, "target": target, "arguments": arguments});
        self.send(&format!("{record}\u{1e}")).await;
    }

    /// The next record that is not a ping (one record per frame).
    pub async fn next(&mut self) -> Value {
        loop {
            match tokio::time::timeout(DEADLINE, self.stream.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let records = parse_records(&text);
                    assert_eq!(records.len(), 1, "{text:?}");
                    if records[0]["type"] != 6 {
                        return records[0].clone();
                    }
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                other => panic!("expected a record, got {other:?}"),
            }
        }
    }

    /// The completion of invocation `id`, skipping the records before it (a message the
    /// invocation stored may be delivered before its completion is sent).
    pub async fn completion(&mut self, id: &str) -> Value {
        loop {
            let record = self.next().await;
            if record["type"] == 3 && record["invocationId"] == id {
                return record;
            }
        }
    }

    /// The records (pings left out) and the close code (none without a close frame) once the
    /// server closes.
    pub async fn until_closed(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut records = Vec::new();
        loop {
            let next = tokio::time::timeout(DEADLINE, self.stream.next())
                .await
                .expect("the server closes in time");
            match next {
                Some(Ok(Message::Text(text))) => records.extend(
                    parse_records(&text)
                        .into_iter()
                        .filter(|record| record["type"] != 6),
                ),
                Some(Ok(Message::Close(frame))) => {
                    return (records, frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return (records, None),
            }
        }
    }
}

/// The JSON after `prefix` of a Socket.IO packet.
pub fn payload(packet: &str, prefix: &str) -> Value {
    let rest = packet
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{packet:?} does not start with {prefix:?}"));
    serde_json::from_str(rest).expect("packet JSON")
}

/// A raw Socket.IO socket on a WebSocket from the start.
pub struct RawSocketIo {
    stream: Socket,
    /// The Engine.IO open packet's payload (`sid`, `upgrades`, timings).
    pub open: Value,
}

impl RawSocketIo {
    /// Opens the WebSocket and reads the Engine.IO open packet.
    pub async fn open<S: TestServer>(chat: &Chat<S>) -> RawSocketIo {
        let url = format!(
            "{}/socket.io/?EIO=4&transport=websocket",
            chat.server.base().replacen("http://", "ws://", 1)
        );
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("upgrade");
        let mut socket = RawSocketIo {
            stream,
            open: Value::Null,
        };
        let open = socket.next().await;
        socket.open = payload(&open, "0");
        socket
    }

    /// A socket a polling connection upgraded to (its open packet came over polling).
    pub fn upgraded(stream: Socket) -> RawSocketIo {
        RawSocketIo {
            stream,
            open: Value::Null,
        }
    }

    /// Opens and CONNECTs with `token` (in `auth`).
    pub async fn connect<S: TestServer>(chat: &Chat<S>, token: &str) -> RawSocketIo {
        let mut socket = RawSocketIo::open(chat).await;
        socket.send(&format!(r#"40{{"token":"{token}"}}"#)).await;
        let connected = socket.next().await;
        assert!(payload(&connected, "40")["sid"].is_string(), "{connected}");
        socket
    }

    pub async fn send(&mut self, packet: &str) {
        self.send_frame(Message::text(packet)).await;
    }

    /// Sends any WebSocket frame (binary ones included).
    pub async fn send_frame(&mut self, frame: Message) {
        self.stream.send(frame).await.expect("send");
    }

    /// The next packet that is not a heartbeat.
    pub async fn next(&mut self) -> String {
        loop {
            match tokio::time::timeout(DEADLINE, self.stream.next()).await {
                Ok(Some(Ok(Message::Text(text)))) if text.as_str() != "2" => {
                    return text.as_str().to_owned()
                }
                Ok(Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_)))) => {}
                other => panic!("expected a packet, got {other:?}"),
            }
        }
    }

    /// The payload of the next packet starting with `prefix`, skipping others (presence, …).
    pub async fn next_with(&mut self, prefix: &str) -> Value {
        loop {
            let packet = self.next().await;
            if packet.starts_with(prefix) {
                return payload(&packet, prefix);
            }
        }
    }

    /// The argument of the next event named `name`.
    pub async fn next_event(&mut self, name: &str) -> Value {
        loop {
            let packet = self.next().await;
            if let Some(event) = packet.strip_prefix("42") {
                let event: Value = serde_json::from_str(event).expect("event JSON");
                if event[0] == name {
                    return event[1].clone();
                }
            }
        }
    }

    /// The packets (heartbeats left out) and the close code once the server closes.
    pub async fn until_closed(&mut self) -> (Vec<String>, u16) {
        let mut packets = Vec::new();
        loop {
            match tokio::time::timeout(DEADLINE, self.stream.next()).await {
                Ok(Some(Ok(Message::Text(text)))) if text.as_str() != "2" => {
                    packets.push(text.as_str().to_owned())
                }
                Ok(Some(Ok(Message::Close(Some(close))))) => return (packets, close.code.into()),
                Ok(Some(Ok(_))) => {}
                other => panic!("no close frame: {other:?}"),
            }
        }
    }
}
