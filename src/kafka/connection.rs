//! One Kafka connection: 4-byte big-endian length-prefixed frames (at most
//! `kafka.maxFrameBytes`; a larger one closes the connection unread), handled one at a time so
//! that answers leave in the order requests came, as clients that pipeline expect.
//!
//! It stops at the shutdown signal (an in-flight long-poll fetch returns early), at the client's
//! close, or when `dispatch` says the connection must close.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use super::access::Session;
use super::dispatch::{handle_frame, Reply};
use super::Broker;

/// Serves requests on `stream` until the client closes, a request cannot be answered, or
/// `shutdown`.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(broker.settings.max_frame_bytes)
        .new_codec();
    let mut frames = Framed::new(stream, codec);
    let mut session = Session::anonymous(&broker.settings.anonymous_scopes, peer.to_string());
    loop {
        let frame = tokio::select! {
            frame = frames.next() => frame,
            () = shutdown.cancelled() => break,
        };
        let frame = match frame {
            None => break,
            Some(Ok(frame)) => frame.freeze(),
            Some(Err(e)) => {
                tracing::debug!(%peer, error = %e, "kafka: connection closed on a bad frame");
                break;
            }
        };
        match handle_frame(&broker, &mut session, frame).await {
            Reply::Frame(answer) => {
                if let Err(e) = frames.send(answer).await {
                    tracing::debug!(%peer, error = %e, "kafka: cannot write an answer");
                    break;
                }
            }
            Reply::Nothing => {}
            Reply::Close(reason) => {
                tracing::info!(%peer, reason = %reason, "kafka: connection closed");
                break;
            }
        }
    }
}
