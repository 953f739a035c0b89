//! Engine.IO connections: the table of open ones, and the two transports that carry a
//! connection's packets.
//!
//! A connection has one outbound queue (bounded: [`OUTBOUND_CAPACITY`] messages), fed by its
//! session's writer (through a [`PollSender`], so a full queue holds the writer back and its
//! hub queue then closes a slow client with 4008, as on `/ws`), and one inbound queue to the
//! session's reader. Long-polling: each `GET` takes what is queued (waiting for the first
//! packet) and answers it as one body, packets joined by `0x1E`; a second `GET` while one is
//! pending breaks the connection, as Engine.IO says; `POST`s bring the client's packets in
//! order (one at a time). The upgrade to a WebSocket ([`take_over`]): the client's probe
//! answered (`2probe` → `3probe`), the pending poll ended with a noop, and on the client's
//! upgrade (`5`) a task moves the outbound queue to the socket and the socket's packets in;
//! polling requests are refused from then on. (A connection opened on a WebSocket from the
//! start needs none of this: `websocket.rs` runs its session on the socket itself.)
//!
//! The table is bounded: at most the hub's session limit plus [`MAX_CONNECTING`] connections
//! (503 beyond), and a connection that has not CONNECTed within the timeout is closed. A closed
//! connection leaves the table at once; requests naming it get 400, and its client reconnects.
//! This module knows nothing of chat frames: packets are text here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;
use futures_util::sink::SinkMapErr;
use futures_util::stream::PollFn;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, PollSendError, PollSender};

use super::codec::{self, PACKET_SEPARATOR};
use super::protocol::{self, TransportPacket};
use crate::api::problem::ApiError;
use crate::api::ws::dialect::SOCKETIO_PING_INTERVAL;
use crate::api::ws::CLOSE_TIMEOUT;
use crate::api::AppState;

/// Messages a connection's outbound queue holds.
const OUTBOUND_CAPACITY: usize = 64;
/// Client packets waiting for the session's reader.
const INBOUND_CAPACITY: usize = 16;
/// Connections beyond the hub's session limit that may wait for their CONNECT.
pub(crate) const MAX_CONNECTING: usize = 10_000;
/// Most bytes one long-poll answer gathers (the first packet always goes, whatever its size).
const MAX_POLL_BYTES: usize = 1024 * 1024;
/// How long an upgrading WebSocket may take between its probe and its upgrade.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// The writer's end of a connection: its messages into the outbound queue.
pub(crate) type SessionSink =
    SinkMapErr<PollSender<Message>, fn(PollSendError<Message>) -> axum::Error>;
/// The reader's end: the client's packets, whichever transport brought them.
pub(crate) type SessionStream = PollFn<
    Box<
        dyn FnMut(
                &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Result<Message, axum::Error>>>
            + Send,
    >,
>;

/// The open connections by id.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    open: Mutex<HashMap<String, Arc<Connection>>>,
    /// WebSockets (opened as such) waiting for their CONNECT.
    connecting_websockets: Arc<std::sync::atomic::AtomicUsize>,
}

/// One WebSocket waiting for its CONNECT, counted while it lives.
#[derive(Debug)]
pub(crate) struct Connecting(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Connecting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Connections {
    /// Counts a WebSocket waiting for its CONNECT; 503 when [`MAX_CONNECTING`] wait already.
    pub(super) fn connecting_websocket(&self) -> Result<Connecting, ApiError> {
        let count = &self.connecting_websockets;
        let waiting = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let connecting = Connecting(count.clone());
        if waiting >= MAX_CONNECTING {
            return Err(ApiError::Overloaded(format!(
                "{MAX_CONNECTING} Socket.IO connections are waiting for their CONNECT; retry shortly"
            )));
        }
        Ok(connecting)
    }

    /// A new connection with the token of its handshake request, if any; 503 when `max` are
    /// open.
    pub(super) fn open(
        &self,
        token: Option<String>,
        max: usize,
    ) -> Result<Arc<Connection>, ApiError> {
        let mut open = self.open.lock();
        if open.len() >= max {
            return Err(ApiError::Overloaded(format!(
                "{max} Socket.IO connections are open; retry shortly"
            )));
        }
        let (outbound, taken) = mpsc::channel(OUTBOUND_CAPACITY);
        let connection = Arc::new(Connection {
            sid: uuid::Uuid::new_v4().simple().to_string(),
            handshake_token: token,
            outbound,
            taken: tokio::sync::Mutex::new(taken),
            posting: tokio::sync::Mutex::new(()),
            inbound: Mutex::new(Inbound::Connecting),
            upgraded: std::sync::atomic::AtomicBool::new(false),
            closed: CancellationToken::new(),
        });
        open.insert(connection.sid.clone(), connection.clone());
        Ok(connection)
    }

    /// The open connection `sid`; 400 when there is none (closed, or never opened), which
    /// makes its client reconnect.
    pub(super) fn get(&self, sid: &str) -> Result<Arc<Connection>, ApiError> {
        self.open.lock().get(sid).cloned().ok_or_else(|| {
            ApiError::BadRequest(format!("Socket.IO connection {sid:?} is unknown or closed"))
        })
    }

    /// Closes `connection` and forgets it: its reader's stream ends, a pending poll answers the
    /// close packet, its WebSocket closes.
    pub(super) fn close(&self, connection: &Connection) {
        connection.closed.cancel();
        *connection.inbound.lock() = Inbound::Closed;
        self.open.lock().remove(&connection.sid);
    }
}

/// Where a connection's client packets go.
#[derive(Debug)]
enum Inbound {
    /// Not CONNECTed yet: packets other than the CONNECT are dropped.
    Connecting,
    /// To the session's reader.
    Session(mpsc::Sender<Result<Message, axum::Error>>),
    Closed,
}

/// One Engine.IO connection.
#[derive(Debug)]
pub(crate) struct Connection {
    sid: String,
    handshake_token: Option<String>,
    outbound: mpsc::Sender<Message>,
    /// The outbound queue's receiving end, held by a pending poll or the WebSocket task.
    taken: tokio::sync::Mutex<mpsc::Receiver<Message>>,
    /// Held by the `POST` being handled.
    posting: tokio::sync::Mutex<()>,
    inbound: Mutex<Inbound>,
    upgraded: std::sync::atomic::AtomicBool,
    closed: CancellationToken,
}

impl Connection {
    /// The Engine.IO handshake packet for this connection.
    pub(super) fn handshake(&self, upgrades: &[&str], max_payload: usize) -> String {
        let open = codec::open(&self.sid, upgrades, SOCKETIO_PING_INTERVAL, max_payload);
        String::from_utf8(open.to_vec()).expect("packets are UTF-8 JSON")
    }

    /// The token the handshake request carried.
    pub(super) fn handshake_token(&self) -> Option<String> {
        self.handshake_token.clone()
    }

    pub(super) fn is_connected(&self) -> bool {
        !matches!(*self.inbound.lock(), Inbound::Connecting)
    }

    fn is_upgraded(&self) -> bool {
        self.upgraded.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Queues a packet of the connection's own (a CONNECT refusal, a noop); dropped when the
    /// queue is full, which only a client that reads nothing brings about.
    pub(super) fn queue(&self, packet: Bytes) {
        let _ = self.outbound.try_send(text(packet));
    }

    /// The session's ends of this connection: its writer's sink and its reader's stream.
    pub(super) fn attach_session(&self) -> (SessionSink, SessionStream) {
        let (sender, mut receiver) = mpsc::channel(INBOUND_CAPACITY);
        *self.inbound.lock() = Inbound::Session(sender);
        let to_axum: fn(PollSendError<Message>) -> axum::Error = axum::Error::new;
        let sink = PollSender::new(self.outbound.clone()).sink_map_err(to_axum);
        let stream: SessionStream =
            futures_util::stream::poll_fn(Box::new(move |cx| receiver.poll_recv(cx)));
        (sink, stream)
    }

    /// Closes the connection after `timeout` unless it CONNECTed by then.
    pub(super) fn close_unless_connected_within(
        self: &Arc<Self>,
        state: &AppState,
        timeout: Duration,
    ) {
        let (connection, state) = (self.clone(), state.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(timeout) => {}
                () = state.shutdown().cancelled() => {}
                () = connection.closed.cancelled() => return,
            }
            if !connection.is_connected() {
                state.socketio().close(&connection);
            }
        });
    }

    /// Handles one client packet, whichever transport brought it.
    async fn receive(self: &Arc<Self>, state: &AppState, packet: &str) {
        match protocol::transport_packet(packet) {
            TransportPacket::Connect { namespace, auth } => {
                super::connect(state, self, namespace, auth).await;
            }
            TransportPacket::BadConnect(why) => {
                self.queue(codec::connect_refused("/", 400, &why));
            }
            TransportPacket::Close => state.socketio().close(self),
            // Only meaningful on an upgrading WebSocket (see `probe`).
            TransportPacket::Probe | TransportPacket::Upgrade => {}
            TransportPacket::Session => {
                self.to_session(Message::Text(Utf8Bytes::from(packet)))
                    .await
            }
        }
    }

    /// Hands a client message to the session's reader; dropped before the CONNECT.
    async fn to_session(&self, message: Message) {
        let sender = match &*self.inbound.lock() {
            Inbound::Session(sender) => sender.clone(),
            Inbound::Connecting | Inbound::Closed => return,
        };
        tokio::select! {
            _ = sender.send(Ok(message)) => {}
            () = self.closed.cancelled() => {}
        }
    }

    /// A `POST`'s packets, in order; 400 (and the connection closed) when another `POST` is
    /// being handled or the connection moved to a WebSocket.
    pub(super) async fn posted(
        self: &Arc<Self>,
        state: &AppState,
        body: &str,
    ) -> Result<(), ApiError> {
        if self.is_upgraded() {
            return Err(ApiError::BadRequest(
                "this connection moved to a WebSocket: post nothing more".into(),
            ));
        }
        let Ok(_posting) = self.posting.try_lock() else {
            state.socketio().close(self);
            return Err(ApiError::BadRequest(
                "two posts at once on one connection; it is closed".into(),
            ));
        };
        for packet in body.split(PACKET_SEPARATOR) {
            self.receive(state, packet).await;
        }
        Ok(())
    }

    /// A long-poll: what is queued for the client, waiting for the first packet; the close
    /// packet once the connection is closed. 400 (and the connection closed) when another poll
    /// is pending, as Engine.IO says.
    pub(super) async fn poll(self: &Arc<Self>, state: &AppState) -> Result<String, ApiError> {
        if self.is_upgraded() {
            return Err(ApiError::BadRequest(
                "this connection moved to a WebSocket: poll no more".into(),
            ));
        }
        let Ok(mut queue) = self.taken.try_lock() else {
            state.socketio().close(self);
            return Err(ApiError::BadRequest(
                "two polls at once on one connection; it is closed".into(),
            ));
        };
        let first = tokio::select! {
            biased;
            first = queue.recv() => first,
            () = self.closed.cancelled() => None,
        };
        let mut body = String::new();
        let mut next = first;
        loop {
            match next {
                Some(Message::Text(packet)) => append(&mut body, packet.as_str()),
                Some(Message::Close(_)) | None => {
                    append(
                        &mut body,
                        std::str::from_utf8(&codec::close()).expect("ASCII"),
                    );
                    state.socketio().close(self);
                    break;
                }
                Some(_) => {}
            }
            if body.len() >= MAX_POLL_BYTES {
                break;
            }
            match queue.try_recv() {
                Ok(message) => next = Some(message),
                Err(_) => break,
            }
        }
        Ok(body)
    }
}

/// Adds a packet to a long-poll body.
fn append(body: &mut String, packet: &str) {
    if !body.is_empty() {
        body.push(PACKET_SEPARATOR);
    }
    body.push_str(packet);
}

fn text(packet: Bytes) -> Message {
    crate::api::ws::dialect::text(packet)
}

/// Answers a WebSocket request naming a polling connection with the upgrade; once the client
/// upgrades, the socket carries the connection (a failed probe leaves it polling).
pub(super) fn take_over(
    state: AppState,
    connection: Arc<Connection>,
    upgrade: WebSocketUpgrade,
) -> Response {
    super::websocket::configured(&state, upgrade).on_upgrade(move |mut socket| async move {
        if upgrade_to(&connection, &mut socket).await {
            carry(&state, &connection, socket).await;
            state.socketio().close(&connection);
        }
    })
}

/// The upgrade of a polling connection to `socket`: the client's probe answered, the pending
/// poll ended with a noop, the client's upgrade received. False if the client did not go
/// through with it (within [`UPGRADE_TIMEOUT`]).
async fn upgrade_to(connection: &Connection, socket: &mut WebSocket) -> bool {
    let steps = async {
        if !next_is(socket, "2probe").await {
            return false;
        }
        if socket.send(text(codec::probe_answer())).await.is_err() {
            return false;
        }
        connection.queue(codec::noop());
        next_is(socket, "5").await
    };
    let upgraded = tokio::select! {
        upgraded = tokio::time::timeout(UPGRADE_TIMEOUT, steps) => upgraded.unwrap_or(false),
        () = connection.closed.cancelled() => false,
    };
    if upgraded {
        connection
            .upgraded
            .store(true, std::sync::atomic::Ordering::Release);
    }
    upgraded
}

/// Whether the socket's next message is the text `expected`.
async fn next_is(socket: &mut WebSocket, expected: &str) -> bool {
    matches!(socket.recv().await, Some(Ok(Message::Text(text))) if text.as_str() == expected)
}

/// Runs `connection` on `socket` until either ends: the outbound queue to the socket, the
/// socket's packets in.
async fn carry(state: &AppState, connection: &Arc<Connection>, socket: WebSocket) {
    // A poll still pending (the noop ends it) holds the queue until it has answered.
    let mut queue = tokio::select! {
        queue = connection.taken.lock() => queue,
        () = connection.closed.cancelled() => return,
    };
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            biased;
            () = connection.closed.cancelled() => break,
            next = queue.recv() => {
                let Some(message) = next else { break };
                match forward(&mut sink, &mut queue, message).await {
                    Ok(false) => {}
                    Ok(true) | Err(_) => break,
                }
            }
            next = stream.next() => match next {
                Some(Ok(Message::Text(packet))) => connection.receive(state, packet.as_str()).await,
                Some(Ok(binary @ Message::Binary(_))) => connection.to_session(binary).await,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
}

/// Writes `first` and whatever else is queued, then flushes; true once a close frame went.
async fn forward<S>(
    sink: &mut S,
    queue: &mut mpsc::Receiver<Message>,
    first: Message,
) -> Result<bool, axum::Error>
where
    S: futures_util::Sink<Message, Error = axum::Error> + Unpin,
{
    let mut next = Some(first);
    while let Some(message) = next {
        let closing = matches!(message, Message::Close(_));
        sink.feed(message).await?;
        if closing {
            sink.flush().await?;
            return Ok(true);
        }
        next = queue.try_recv().ok();
    }
    sink.flush().await?;
    Ok(false)
}
