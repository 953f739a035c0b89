//! The protocols a session can speak over its WebSocket, and what differs between them.
//!
//! Session logic (the hub queue, the seq rule, resume, participant checks, flow control, the
//! close reasons) is one, in `reader.rs` and `writer.rs`; a [`Dialect`] says only how that
//! logic meets the wire: which codec encodes the frames, how the session greets and pings,
//! how it says goodbye, and which conversations' events it wants (`/ws` and Socket.IO: every
//! conversation of its user; SignalR: those it joined, as SignalR groups work).

use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes};
use bytes::Bytes;

use super::codec::TidingsJson;
use crate::api::signalr::codec::{self as signalr, SignalrJson};
use crate::api::socketio::codec::{self as socketio, SocketIoJson};
use crate::hub::{frame, CloseReason, Frame};

/// SignalR's keep-alive interval (its clients' default: a ping every 15 s, and they give up
/// after 30 s without a message).
pub(crate) const SIGNALR_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Engine.IO's heartbeat interval (its servers' default `pingInterval`).
pub(crate) const SOCKETIO_PING_INTERVAL: Duration = Duration::from_secs(25);

/// The protocol of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Tidings' own `/ws` JSON frames.
    Tidings,
    /// ASP.NET Core SignalR's JSON hub protocol (`/chathub`).
    Signalr,
    /// Socket.IO 5 over Engine.IO 4 (`/socket.io/`), on either of its transports.
    SocketIo,
}

impl Dialect {
    /// The frame as this dialect's bytes; empty when the dialect has nothing for it.
    pub(crate) fn encode(self, frame: &Frame) -> Bytes {
        match self {
            Dialect::Tidings => frame.encoded::<TidingsJson>(),
            Dialect::Signalr => frame.encoded::<SignalrJson>(),
            Dialect::SocketIo => frame.encoded::<SocketIoJson>(),
        }
    }

    /// Whether the session greets with `ready` (Socket.IO's is the CONNECT answer; SignalR
    /// answers the client's handshake instead).
    pub(crate) fn sends_ready(self) -> bool {
        self != Dialect::Signalr
    }

    /// Whether the session's queue opens by itself after a while (`/ws`: a client that sends
    /// no `resume` still gets its live frames); a SignalR queue opens with the handshake only,
    /// since nothing may come before the handshake's answer.
    pub(crate) fn opens_by_itself(self) -> bool {
        self != Dialect::Signalr
    }

    /// Whether a session hears a conversation only once it joined it.
    pub(crate) fn joins_conversations(self) -> bool {
        self == Dialect::Signalr
    }

    /// Whether every handled request gets an answer, even one `/ws` answers with nothing (a
    /// SignalR invocation with an id always gets its completion, a Socket.IO event with an
    /// acknowledgement id its acknowledgement).
    pub(crate) fn answers_every_request(self) -> bool {
        self != Dialect::Tidings
    }

    /// The keep-alive message: a WebSocket ping for `/ws`, SignalR's ping record (its clients
    /// do not see WebSocket pings).
    pub(crate) fn ping(self) -> Message {
        match self {
            Dialect::Tidings => Message::Ping(Bytes::new()),
            Dialect::Signalr => text(signalr::ping()),
            Dialect::SocketIo => text(socketio::ping()),
        }
    }

    /// The keep-alive interval: `/ws`'s is configured, SignalR's is its clients' default.
    pub(crate) fn ping_interval(self, configured: Duration) -> Duration {
        match self {
            Dialect::Tidings => configured,
            Dialect::Signalr => SIGNALR_KEEP_ALIVE,
            Dialect::SocketIo => SOCKETIO_PING_INTERVAL,
        }
    }

    /// What the session writes before its close frame: SignalR's close record, which its
    /// clients read (with whether they may reconnect); for Socket.IO only when the token
    /// expired (see [`Dialect::token_expired`]); nothing for `/ws`, whose close frame says it
    /// all.
    pub(crate) fn farewell(self, reason: CloseReason) -> Vec<Message> {
        match (self, reason) {
            (Dialect::Tidings, _) => Vec::new(),
            (Dialect::SocketIo, CloseReason::TokenExpired) => self.token_expired(reason),
            // A Socket.IO client reconnects when its transport closes (after a restart, a slow
            // read), as it should; a DISCONNECT packet would tell it not to.
            (Dialect::SocketIo, _) => Vec::new(),
            // The reader already sent the record that names what broke (a handshake error
            // before the handshake, a close record after it): a second one would contradict it.
            (Dialect::Signalr, CloseReason::ProtocolError) => Vec::new(),
            // With `allowReconnect`, a client that reconnects by itself asks its token factory
            // again, which is what an expired token needs.
            (Dialect::Signalr, reason) => vec![text(signalr::close(reason.text(), true))],
        }
    }

    /// A Socket.IO session's farewell when its token expired: an `error` event (401 and why),
    /// then DISCONNECT. Reconnecting by itself, socket.io-client would CONNECT again with the
    /// same `auth`, the expired token (unless `auth` is a function); after a DISCONNECT it does
    /// not, and the application reconnects with a fresh token (`socket.auth = …;
    /// socket.connect()`).
    fn token_expired(self, reason: CloseReason) -> Vec<Message> {
        let why = frame::error(None, 401, reason.text());
        vec![text(self.encode(&why)), text(socketio::disconnect())]
    }
}

/// Bytes known to be UTF-8 JSON as a text message.
pub(crate) fn text(bytes: Bytes) -> Message {
    Message::Text(Utf8Bytes::try_from(bytes).expect("encoded records are UTF-8 JSON"))
}
