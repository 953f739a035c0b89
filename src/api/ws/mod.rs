//! `GET /ws`: the WebSocket edge of the hub.
//!
//! The upgrade is authenticated like every route ([`Caller`]: `Authorization: Bearer` or, here
//! only, `?token=`); a rejected token answers 401 problem+json and never gets a session. The
//! session is opened in the hub before the upgrade is answered, so the session limits refuse
//! with problem+json too (503 server full, 429 too many sessions of one user) and no frame
//! queued meanwhile is lost. The connection then runs as two tasks: the [`reader`] (client
//! frames, tracked by [`AppState::session_readers`]) and the [`writer`] (the only one writing
//! to the socket, tracked by [`AppState::tasks`]), joined by a small bounded control channel.
//! axum's graceful shutdown does not wait for upgraded connections, hence the trackers.
//!
//! Each connection's buffers are sized by `ws.readBufferBytes` and `ws.writeBufferBytes` so
//! that an idle session stays small. This module holds no frame logic itself: `client_frame.rs`
//! (what clients send, typed), `reader.rs`, `writer.rs`, `seq.rs` (the per-conversation seq
//! rule), `frame_rate.rs` (the per-session frame budget), `codec.rs` (how events look as `/ws`
//! JSON), `dialect.rs` (what differs when the session speaks SignalR: `api::signalr` upgrades
//! into the same [`accept`]), `expiry.rs` (the session ends when its token expires, unless the
//! client renews it in-band). Every session, whatever its protocol, opens and closes in
//! [`run_session`], which writes its lines of the session log ([`SessionLog`]).

mod ack_hold;
pub(crate) mod client_frame;
pub(crate) mod codec;
pub(crate) mod dialect;
pub(crate) mod expiry;
mod frame_rate;
pub(crate) mod objects;
pub(crate) mod reader;
mod seq;
mod writer;

pub(crate) use writer::CLOSE_TIMEOUT;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::extract::ws::{rejection::WebSocketUpgradeRejection, Message, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::access::SessionLog;
use super::auth::Caller;
use super::problem::ApiError;
use super::AppState;
use crate::auth::{AuthError, Identity};
use crate::hub::Session;
use dialect::Dialect;
use frame_rate::FrameRate;
use reader::Reader;
use writer::Writer;

/// Replies and resume requests the reader may have waiting for the writer; a client that
/// does not read its answers is slowed down here, not buffered.
const CONTROL_CAPACITY: usize = 8;

/// `GET /ws` → 101 and a session, or a problem (401, 429, 503, 400 for a non-upgrade request).
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    Caller(caller): Caller,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    accept(state, caller, upgrade, Dialect::Tidings)
}

/// Opens the caller's session in the hub and answers the upgrade with it, the session
/// speaking `dialect` (`/ws` and `/chathub` both come here).
pub(crate) fn accept(
    state: AppState,
    caller: Identity,
    upgrade: WebSocketUpgrade,
    dialect: Dialect,
) -> Result<Response, ApiError> {
    if state.shutdown().is_cancelled() {
        return Err(ApiError::NotReady);
    }
    // A token accepted within the verifier's clock leeway would open a session already over.
    if expiry::has_expired(caller.expires_at) {
        return Err(AuthError::Expired.into());
    }
    state.chat()?;
    let session = state.hub().open(&caller.user_id)?;
    let ws = &state.config().ws;
    let reader_token = state.session_readers().token();
    let response = upgrade
        .read_buffer_size(ws.read_buffer_bytes)
        .write_buffer_size(ws.write_buffer_bytes)
        .max_message_size(ws.hard_frame_bytes)
        .max_frame_size(ws.hard_frame_bytes)
        .on_upgrade(move |socket| {
            let (sink, stream) = socket.split();
            run_session(state, caller, session, sink, stream, reader_token, dialect)
        });
    Ok(response.into_response())
}

/// Runs one connection speaking `dialect` over `sink` and `stream` (the halves of a WebSocket,
/// or a Socket.IO connection's, whichever transport carries it): spawns its writer, reads
/// until the session ends.
pub(crate) async fn run_session<Si, St>(
    state: AppState,
    caller: Identity,
    session: Session,
    sink: Si,
    stream: St,
    handling: TaskTrackerToken,
    dialect: Dialect,
) where
    Si: Sink<Message, Error = axum::Error> + Unpin + Send + Sync + 'static,
    St: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let Ok(chat) = state.chat().cloned() else {
        return;
    };
    let (control, control_queue) = mpsc::channel(CONTROL_CAPACITY);
    let heard = Arc::new(AtomicBool::new(true));
    let handle = session.handle().clone();
    let session_log = SessionLog::opened(dialect, &handle);
    let ws = &state.config().ws;
    let writer = Writer {
        sink,
        session,
        control: control_queue,
        store: chat.store,
        heard: heard.clone(),
        ping_interval: dialect.ping_interval(ws.ping_interval),
        write_delay: ws.write_delay,
        last_batch: None,
        seqs: Default::default(),
        live: false,
        verified: Default::default(),
        verified_epoch: 0,
        dialect,
        joined: Default::default(),
        expires: expiry::deadline(caller.expires_at),
        acks: Default::default(),
    };
    state.tasks().spawn(writer.run());
    let reader = Reader {
        frame_rate: FrameRate::new(ws.frame_rate),
        state: state.clone(),
        caller,
        handle,
        control,
        heard,
        spoke: false,
        dialect,
        handshaken: false,
    };
    reader.run(stream, handling).await;
    // Writes "session closed" (also when the runtime ends this task, see `SessionLog`).
    drop(session_log);
}
