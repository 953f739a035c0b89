//! One live session as the hub sees it: a bounded outbound queue, a close signal and the reason
//! it closed.
//!
//! [`Session`] is the receiving end, owned by the session's writer (in `api::ws`); dropping it
//! unregisters the session from the hub. [`SessionHandle`] is the shared end: the hub pushes
//! frames through it and anyone may close the session with a [`CloseReason`]. Pushing never
//! waits: a full queue closes the session as too slow (4008) instead of buffering more. This
//! module does not touch sockets.

use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::frame::Frame;
use super::Hub;

/// Why a session ended; the first reason given wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// Its outbound queue was full: the client reads too slowly (close code 4008).
    Slow,
    /// The server is shutting down (1001).
    ShuttingDown,
    /// The connection answered nothing for two ping intervals (1008).
    Unresponsive,
    /// The client sent a frame above the hard size cap (1009).
    TooLarge,
    /// The client broke its protocol (a malformed SignalR record or handshake: 1002).
    ProtocolError,
    /// The session's token expired and no fresh one was presented in time (4001).
    TokenExpired,
    /// The client closed the connection or it broke: nothing to send.
    ClientGone,
}

impl CloseReason {
    /// The WebSocket close code to send, if a close frame is sent at all.
    pub(crate) fn code(self) -> Option<u16> {
        match self {
            CloseReason::Slow => Some(4008),
            CloseReason::ShuttingDown => Some(1001),
            CloseReason::Unresponsive => Some(1008),
            CloseReason::TooLarge => Some(1009),
            CloseReason::ProtocolError => Some(1002),
            CloseReason::TokenExpired => Some(4001),
            CloseReason::ClientGone => None,
        }
    }

    /// The close frame's reason text.
    pub(crate) fn text(self) -> &'static str {
        match self {
            CloseReason::Slow => "too slow: resume from the last seen seq",
            CloseReason::ShuttingDown => "server shutting down",
            CloseReason::Unresponsive => "no answer to pings",
            CloseReason::TooLarge => "frame too large",
            CloseReason::ProtocolError => "protocol error",
            CloseReason::TokenExpired => "token expired: reconnect with a fresh token",
            CloseReason::ClientGone => "",
        }
    }
}

/// What became of one push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pushed {
    /// Queued.
    Queued,
    /// The queue was full: the session is now closing as too slow.
    Overflowed,
    /// The session is gone or closing already.
    Gone,
}

#[derive(Debug)]
struct Shared {
    id: String,
    user: Arc<str>,
    queue: mpsc::Sender<Frame>,
    closed: CancellationToken,
    reason: OnceLock<CloseReason>,
}

/// The shared end of a session: push frames, close it, ask why it closed. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct SessionHandle(Arc<Shared>);

impl SessionHandle {
    /// The session's id (UUIDv7), as the `ready` frame gives it.
    pub(crate) fn id(&self) -> &str {
        &self.0.id
    }

    /// The user the session belongs to.
    pub(crate) fn user_id(&self) -> &str {
        &self.0.user
    }

    /// Closes the session (first reason wins); its writer sends the close frame.
    pub(crate) fn close(&self, reason: CloseReason) {
        let _ = self.0.reason.set(reason);
        self.0.closed.cancel();
    }

    /// Completes once the session is closing.
    pub(crate) fn closed(&self) -> WaitForCancellationFuture<'_> {
        self.0.closed.cancelled()
    }

    /// True once the session is closing. (One atomic load: the close reason is set before the
    /// token is cancelled, and asking the token takes a lock.)
    pub(crate) fn is_closed(&self) -> bool {
        self.0.reason.get().is_some()
    }

    /// Why the session is closing, once it is.
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        self.0.reason.get().copied()
    }

    /// Queues `frame` without waiting; a full queue closes the session as [`CloseReason::Slow`].
    pub(super) fn push(&self, frame: &Frame) -> Pushed {
        if self.is_closed() {
            return Pushed::Gone;
        }
        match self.0.queue.try_send(frame.clone()) {
            Ok(()) => Pushed::Queued,
            Err(TrySendError::Full(_)) => {
                self.close(CloseReason::Slow);
                Pushed::Overflowed
            }
            Err(TrySendError::Closed(_)) => Pushed::Gone,
        }
    }

    pub(super) fn same(&self, other: &SessionHandle) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The receiving end of a session, owned by its writer. Dropping it unregisters the session.
#[derive(Debug)]
pub(crate) struct Session {
    handle: SessionHandle,
    queue: mpsc::Receiver<Frame>,
    hub: Hub,
}

impl Session {
    pub(super) fn new(hub: Hub, user: &str, capacity: usize) -> Session {
        let (sender, queue) = mpsc::channel(capacity.max(1));
        let handle = SessionHandle(Arc::new(Shared {
            id: uuid::Uuid::now_v7().to_string(),
            user: user.into(),
            queue: sender,
            closed: CancellationToken::new(),
            reason: OnceLock::new(),
        }));
        Session { handle, queue, hub }
    }

    /// The shared end.
    pub(crate) fn handle(&self) -> &SessionHandle {
        &self.handle
    }

    /// The next queued frame; `None` once the hub dropped every sender (never while registered).
    pub(crate) async fn recv(&mut self) -> Option<Frame> {
        self.queue.recv().await
    }

    /// A queued frame if there is one, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Frame> {
        self.queue.try_recv().ok()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.hub.unregister(&self.handle);
    }
}
