//! One Kafka connection: 4-byte big-endian length-prefixed frames, handled one at a time so
//! that answers leave in the order requests came, as clients that pipeline expect.
//!
//! Memory a client can make the server hold is bounded twice: a frame longer than
//! `kafka.maxFrameBytes` closes the connection before any of it is read, and a frame's bytes
//! are reserved from the broker's budget (`kafka.maxInFlightBytes`, shared by every connection,
//! as Kafka's `queued.max.request.bytes`) before they are read, so N connections cannot each
//! hold a largest frame; a connection whose next frame does not fit waits, unread. The body
//! buffer grows with the bytes that arrive, never to the claimed length up front, so a length
//! prefix alone allocates nothing.
//!
//! It stops at the shutdown signal (an in-flight long-poll fetch returns early), at the client's
//! close, when `dispatch` says the connection must close, or when the token it authenticated
//! with expires and it did not re-authenticate (KIP-368).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::access::Session;
use super::dispatch::{handle_frame, Reply};
use super::Broker;

/// Socket buffer of each direction: most requests and small answers in one system call.
const IO_BUFFER_BYTES: usize = 64 * 1024;
/// Most a frame's body buffer grows by at once, so its size follows the bytes that came.
const BODY_GROWTH_BYTES: usize = 64 * 1024;

/// Why no frame was read.
#[derive(Debug, thiserror::Error)]
pub(super) enum FrameError {
    /// The length prefix is over `kafka.maxFrameBytes`; nothing of the body was read.
    #[error("a frame of {claimed} bytes is over kafka.maxFrameBytes ({max})")]
    TooLarge {
        /// Bytes the prefix claimed.
        claimed: u64,
        /// `kafka.maxFrameBytes`.
        max: usize,
    },
    /// The socket failed or closed inside a frame.
    #[error("cannot read a frame: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves requests on `stream` until the client closes, a request cannot be answered, the
/// session's token expires, or `shutdown`.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    let (read, write) = stream.into_split();
    let mut reader = BufReader::with_capacity(IO_BUFFER_BYTES, read);
    let mut writer = BufWriter::with_capacity(IO_BUFFER_BYTES, write);
    let mut session = Session::anonymous(&broker.settings.anonymous_scopes, peer.to_string());
    let max = broker.settings.max_frame_bytes;
    loop {
        let expiry = token_expiry(&session);
        let frame = tokio::select! {
            frame = read_frame(&mut reader, max, &broker.request_budget) => frame,
            () = expiry => {
                tracing::info!(%peer, "kafka: connection closed, its token expired");
                break;
            }
            () = shutdown.cancelled() => break,
        };
        let (frame, _reserved) = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "kafka: connection closed on a bad frame");
                break;
            }
        };
        if session.expired() {
            tracing::info!(%peer, "kafka: connection closed, its token expired");
            break;
        }
        match handle_frame(&broker, &mut session, frame).await {
            Reply::Frame(answer) => {
                if let Err(e) = write_frame(&mut writer, &answer).await {
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

/// Resolves when the session's token expires; never for a connection without one.
async fn token_expiry(session: &Session) {
    match session.expires_at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next request frame and its reservation of `budget` (held until the answer is written);
/// `None` when the client closed between frames.
pub(super) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
    budget: &Arc<Semaphore>,
) -> Result<Option<(Bytes, OwnedSemaphorePermit)>, FrameError> {
    let mut prefix = [0u8; 4];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let claimed = u32::from_be_bytes(prefix);
    let len = usize::try_from(claimed).unwrap_or(usize::MAX);
    if len > max {
        return Err(FrameError::TooLarge {
            claimed: u64::from(claimed),
            max,
        });
    }
    let reserved = Arc::clone(budget)
        .acquire_many_owned(claimed)
        .await
        .map_err(|_| std::io::Error::other("the request budget is closed"))?;
    let mut body = BytesMut::new();
    read_body(reader, len, &mut body).await?;
    Ok(Some((body.freeze(), reserved)))
}

/// Reads exactly `len` bytes into `body`, which grows as they arrive.
async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    len: usize,
    body: &mut BytesMut,
) -> std::io::Result<()> {
    body.reserve(len.min(BODY_GROWTH_BYTES));
    while body.len() < len {
        let missing = len - body.len();
        if body.capacity() == body.len() {
            body.reserve(missing.min(body.len().max(BODY_GROWTH_BYTES)));
        }
        let want = u64::try_from(missing).unwrap_or(u64::MAX);
        if (&mut *reader).take(want).read_buf(body).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// Writes one answer with its length prefix and flushes it.
async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, answer: &Bytes) -> std::io::Result<()> {
    let len =
        u32::try_from(answer.len()).map_err(|_| std::io::Error::other("an answer over 4 GiB"))?;
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(answer).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(bytes: usize) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(bytes))
    }

    #[tokio::test]
    async fn a_length_over_the_limit_is_refused_before_its_body_is_read() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client
            .write_all(&u32::MAX.to_be_bytes())
            .await
            .expect("write");
        let budget = budget(1 << 20);
        let refused = read_frame(&mut server, 1 << 20, &budget).await;
        assert!(
            matches!(refused, Err(FrameError::TooLarge { .. })),
            "{refused:?}"
        );
        assert_eq!(budget.available_permits(), 1 << 20, "nothing reserved");
    }

    #[tokio::test]
    async fn a_claimed_length_allocates_only_the_bytes_that_came() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client.write_all(&[7u8; 100]).await.expect("write");
        drop(client);
        let mut body = BytesMut::new();
        let cut = read_body(&mut server, 64 << 20, &mut body).await;
        assert!(cut.is_err(), "the client closed inside the frame");
        assert_eq!(body.len(), 100);
        assert!(
            body.capacity() <= 2 * BODY_GROWTH_BYTES,
            "{} bytes allocated for 100 received",
            body.capacity()
        );
    }

    #[tokio::test]
    async fn a_frame_cut_short_releases_its_reservation() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client
            .write_all(&(64u32 << 20).to_be_bytes())
            .await
            .expect("write");
        client.write_all(&[7u8; 100]).await.expect("write");
        drop(client);
        let budget = budget(128 << 20);
        let cut = read_frame(&mut server, 128 << 20, &budget).await;
        assert!(matches!(cut, Err(FrameError::Io(_))), "{cut:?}");
        assert_eq!(budget.available_permits(), 128 << 20);
    }

    #[tokio::test]
    async fn frames_are_read_whole_and_the_budget_is_held_until_dropped() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        for body in [&b"first"[..], &[9u8; 200_000][..]] {
            let len = u32::try_from(body.len()).expect("small");
            client.write_all(&len.to_be_bytes()).await.expect("write");
            let (mut c, b) = (client, body.to_vec());
            let writer = tokio::spawn(async move {
                c.write_all(&b).await.expect("write");
                c
            });
            let budget = budget(300_000);
            let (frame, reserved) = read_frame(&mut server, 1 << 20, &budget)
                .await
                .expect("read")
                .expect("a frame");
            assert_eq!(&frame[..], body);
            assert_eq!(budget.available_permits(), 300_000 - body.len());
            drop(reserved);
            assert_eq!(budget.available_permits(), 300_000);
            client = writer.await.expect("writer");
        }
        drop(client);
        let end = read_frame(&mut server, 1 << 20, &budget(10)).await;
        assert!(matches!(end, Ok(None)), "a close between frames is the end");
    }

    #[tokio::test]
    async fn a_frame_waits_while_the_budget_is_spent() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&10u32.to_be_bytes()).await.expect("write");
        client.write_all(&[1u8; 10]).await.expect("write");
        let budget = budget(10);
        let held = Arc::clone(&budget)
            .acquire_many_owned(5)
            .await
            .expect("open");
        let waiting = read_frame(&mut server, 1024, &budget);
        tokio::pin!(waiting);
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), &mut waiting).await;
        assert!(early.is_err(), "no room for 10 bytes while 5 are held");
        drop(held);
        let (frame, _reserved) = waiting.await.expect("read").expect("a frame");
        assert_eq!(frame.len(), 10);
    }
}
