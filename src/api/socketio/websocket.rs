//! A Socket.IO connection on a WebSocket from the start (`transports: ["websocket"]`): the
//! Engine.IO handshake packet, then the client's CONNECT read from the socket itself, then the
//! session runs on the socket's halves exactly as a `/ws` session does, with no queue or task
//! in between. A refused CONNECT is answered with CONNECT_ERROR and the client may try again;
//! a socket with no CONNECT accepted within [`CONNECT_TIMEOUT`] is closed.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};

use super::codec;
use super::protocol::{self, TransportPacket};
use super::{authorize, CONNECT_TIMEOUT};
use crate::api::problem::ApiError;
use crate::api::ws::{self, dialect::Dialect};
use crate::api::AppState;
use crate::auth::Identity;
use crate::hub::Session;

/// The upgrade with the buffers and size caps of every session socket.
pub(super) fn configured(state: &AppState, upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    let ws = &state.config().ws;
    upgrade
        .read_buffer_size(ws.read_buffer_bytes)
        .write_buffer_size(ws.write_buffer_bytes)
        .max_message_size(ws.hard_frame_bytes)
        .max_frame_size(ws.hard_frame_bytes)
}

/// Answers the upgrade; the socket then becomes a session once its CONNECT is accepted.
/// `token` is the handshake request's, for a CONNECT without `auth`.
/// 503 when [`MAX_CONNECTING`](super::connection::MAX_CONNECTING) sockets wait for theirs.
pub(super) fn accept(
    state: AppState,
    token: Option<String>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let waiting = state.socketio().connecting_websocket()?;
    Ok(configured(&state, upgrade).on_upgrade(move |mut socket| async move {
        let connected = tokio::select! {
            connected = tokio::time::timeout(CONNECT_TIMEOUT, connect(&state, &mut socket, token)) => connected.ok().flatten(),
            () = state.shutdown().cancelled() => None,
        };
        drop(waiting);
        let Some((caller, session)) = connected else {
            let _ = socket.close().await;
            return;
        };
        let handling = state.session_readers().token();
        let (sink, stream) = socket.split();
        ws::run_session(state, caller, session, sink, stream, handling, Dialect::SocketIo).await;
    }))
}

/// The handshake packet, then packets until a CONNECT is accepted; `None` when the client
/// leaves first.
async fn connect(
    state: &AppState,
    socket: &mut WebSocket,
    token: Option<String>,
) -> Option<(Identity, Session)> {
    let sid = uuid::Uuid::new_v4().simple().to_string();
    let max_payload = state.config().limits.max_body_bytes;
    let open = codec::open(&sid, &[], ws::dialect::SOCKETIO_PING_INTERVAL, max_payload);
    socket.send(ws::dialect::text(open)).await.ok()?;
    loop {
        let Message::Text(text) = socket.recv().await?.ok()? else {
            continue;
        };
        match protocol::transport_packet(text.as_str()) {
            TransportPacket::Connect { namespace, auth } => {
                match authorize(state, namespace, auth, token.clone()).await {
                    Ok(connected) => return Some(connected),
                    Err(refused) => {
                        let status = refused.status().as_u16();
                        tracing::debug!(status, detail = %refused.detail(), "Socket.IO connect refused");
                        let packet = codec::connect_refused(namespace, status, &refused.detail());
                        socket.send(ws::dialect::text(packet)).await.ok()?;
                    }
                }
            }
            TransportPacket::BadConnect(why) => {
                let packet = codec::connect_refused("/", 400, &why);
                socket.send(ws::dialect::text(packet)).await.ok()?;
            }
            TransportPacket::Close => return None,
            // Nothing else means anything before the CONNECT.
            TransportPacket::Probe | TransportPacket::Upgrade | TransportPacket::Session => {}
        }
    }
}
