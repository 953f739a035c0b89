//! The protocols a session can speak over its WebSocket, and what differs between them.
//!
//! Session logic (the hub queue, the seq rule, resume, participant checks, flow control, the
//! close reasons) is one, in `reader.rs` and `writer.rs`; a [`Dialect`] says only how that
//! logic meets the wire: which codec encodes the frames, how the session greets and pings,
//! how it says goodbye, and which conversations' events it wants (`/ws`: every conversation
//! of its user; SignalR: those it joined, as SignalR groups work).

use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes};
use bytes::Bytes;

use super::codec::TidingsJson;
use crate::api::signalr::codec::{self as signalr, SignalrJson};
use crate::hub::{CloseReason, Frame};

/// SignalR's keep-alive interval (its clients' default: a ping every 15 s, and they give up
/// after 30 s without a message).
pub(crate) const SIGNALR_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The protocol of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Tidings' own `/ws` JSON frames.
    Tidings,
    /// ASP.NET Core SignalR's JSON hub protocol (`/chathub`).
    Signalr,
}

impl Dialect {
    /// The frame as this dialect's bytes; empty when the dialect has nothing for it.
    pub(crate) fn encode(self, frame: &Frame) -> Bytes {
        match self {
            Dialect::Tidings => frame.encoded::<TidingsJson>(),
            Dialect::Signalr => frame.encoded::<SignalrJson>(),
        }
    }

    /// Whether the session greets with `ready` (SignalR answers the client's handshake
    /// instead).
    pub(crate) fn sends_ready(self) -> bool {
        self == Dialect::Tidings
    }

    /// Whether the session's queue opens by itself after a while (`/ws`: a client that sends
    /// no `resume` still gets its live frames); a SignalR queue opens with the handshake only,
    /// since nothing may come before the handshake's answer.
    pub(crate) fn opens_by_itself(self) -> bool {
        self == Dialect::Tidings
    }

    /// Whether a session hears a conversation only once it joined it.
    pub(crate) fn joins_conversations(self) -> bool {
        self == Dialect::Signalr
    }

    /// Whether every handled request gets an answer, even one `/ws` answers with nothing (a
    /// SignalR invocation with an id always gets its completion).
    pub(crate) fn answers_every_request(self) -> bool {
        self == Dialect::Signalr
    }

    /// The keep-alive message: a WebSocket ping for `/ws`, SignalR's ping record (its clients
    /// do not see WebSocket pings).
    pub(crate) fn ping(self) -> Message {
        match self {
            Dialect::Tidings => Message::Ping(Bytes::new()),
            Dialect::Signalr => text(signalr::ping()),
        }
    }

    /// The keep-alive interval: `/ws`'s is configured, SignalR's is its clients' default.
    pub(crate) fn ping_interval(self, configured: Duration) -> Duration {
        match self {
            Dialect::Tidings => configured,
            Dialect::Signalr => SIGNALR_KEEP_ALIVE,
        }
    }

    /// What the session writes before its close frame: SignalR's close record, which its
    /// clients read (with whether they may reconnect); nothing for `/ws`, whose close frame
    /// says it all.
    pub(crate) fn farewell(self, reason: CloseReason) -> Option<Message> {
        match (self, reason) {
            (Dialect::Tidings, _) => None,
            // The reader already sent the record that names what broke (a handshake error
            // before the handshake, a close record after it): a second one would contradict it.
            (Dialect::Signalr, CloseReason::ProtocolError) => None,
            (Dialect::Signalr, reason) => Some(text(signalr::close(reason.text(), true))),
        }
    }
}

/// Bytes known to be UTF-8 JSON as a text message.
pub(crate) fn text(bytes: Bytes) -> Message {
    Message::Text(Utf8Bytes::try_from(bytes).expect("encoded records are UTF-8 JSON"))
}
