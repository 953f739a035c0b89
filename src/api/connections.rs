//! The HTTP connection layer: accepts TCP connections and serves each with hyper's HTTP/1.1
//! (upgrades allowed, for `/ws`), within the `[http]` limits.
//!
//! - **A cap on open connections** ([`ServeSettings::max_connections`], by default what the
//!   open-file limit allows minus [`CONNECTION_RESERVE`]). Every connection is accepted at once,
//!   so none waits in the kernel's backlog and `accept` never runs out of descriptors; at the cap
//!   a new one evicts an idle one (the rule is in [`slots`]) or, when every connection is busy
//!   serving a request or upgraded, is closed at once.
//! - **A header read timeout**: a client that does not send a complete request head in time, on
//!   a new connection or between the requests of a kept-alive one, is disconnected (hyper's
//!   `header_read_timeout`).
//! - **A bound on the head buffer** ([`head_buffer_bytes`]): a few times `http.maxHeaderBytes`,
//!   so that a head a little over our own limit is still read and answered with a 431
//!   problem+json by [`http_limits`](super::http_limits), while one far over it costs no more
//!   memory than that: hyper refuses it itself (431 with an empty body).
//! - **TLS** when `[tls]` is set ([`tls`]): the handshake runs in the connection's own task and
//!   must finish within the header read timeout, like a request head; a failed handshake is
//!   logged at debug and closes the connection.
//! - `TCP_NODELAY` on every connection: a session writer flushes a batch of frames at once, and
//!   a small frame must not wait for the previous one's ACK (nor an HTTP answer for its
//!   predecessor's).
//!
//! Accept errors (out of descriptors, out of memory) neither stop the server nor spin: the loop
//! backs off for [`ACCEPT_BACKOFF`] and says so at most once per [`WARN_INTERVAL`].
//!
//! On shutdown it stops accepting, lets every in-flight request finish (an idle connection is
//! closed) and returns once every connection task ended. An upgraded WebSocket leaves this
//! layer's tasks when the upgrade completes (it keeps its slot until its socket closes); the hub
//! closes it with 1001, not this layer.
//!
//! This module does not route or answer requests (that is [`app`](super::app)'s router) and
//! does not bind the listener.

pub(crate) mod slots;
pub(crate) mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::HttpSettings;
use crate::hub::fd_limit;
use crate::metrics::Metrics;
use slots::{Admission, Slot, Slots};
use tls::TlsCertificates;

/// Descriptors kept for everything but HTTP connections (data files, the runtime, outgoing
/// webhook connections), or half the open-file limit if that is smaller.
pub(crate) const CONNECTION_RESERVE: u64 = 128;
/// Connections allowed when the open-file limit cannot be read and none is configured.
pub(crate) const FALLBACK_MAX_CONNECTIONS: usize = 10_000;
/// How long the accept loop pauses after an accept error other than a dropped connection.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Least time between two warnings of one kind (accept errors, refused connections).
pub(crate) const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// Smallest head buffer hyper is given (it refuses less than 8 KiB).
const MIN_HEAD_BUFFER_BYTES: usize = 64 * 1024;

/// Counter of connections closed to make room for a new one.
pub(crate) const CONNECTIONS_EVICTED: &str = "tidings_http_connections_evicted_total";
/// Counter of connections closed at once because every slot was busy.
pub(crate) const CONNECTIONS_REFUSED: &str = "tidings_http_connections_refused_total";

/// How [`serve`] treats connections.
#[derive(Debug, Clone)]
pub(crate) struct ServeSettings {
    /// Most open connections, WebSocket sessions included.
    pub max_connections: usize,
    /// How long a client has to send a complete request head.
    pub header_read_timeout: Duration,
    /// hyper's read buffer limit: a longer head is refused by hyper itself.
    pub head_buffer_bytes: usize,
    /// The certificate when the listener speaks TLS.
    pub tls: Option<Arc<TlsCertificates>>,
}

impl ServeSettings {
    /// The settings of `[http]`, with `maxConnections` resolved against the open-file limit.
    pub(crate) fn from_config(
        http: &HttpSettings,
        tls: Option<Arc<TlsCertificates>>,
    ) -> ServeSettings {
        ServeSettings {
            max_connections: max_connections(http.max_connections),
            header_read_timeout: http.header_read_timeout,
            head_buffer_bytes: head_buffer_bytes(http.max_header_bytes),
            tls,
        }
    }
}

/// hyper's head buffer for a `maxHeaderBytes` limit: four times it, at least 64 KiB.
pub(crate) fn head_buffer_bytes(max_header_bytes: usize) -> usize {
    max_header_bytes
        .saturating_mul(4)
        .max(MIN_HEAD_BUFFER_BYTES)
}

/// Connections `limit` open files allow, keeping [`CONNECTION_RESERVE`] (or half the limit) for
/// the rest; at least 1.
pub(crate) fn connections_allowed(limit: u64) -> usize {
    let reserve = CONNECTION_RESERVE.min(limit / 2);
    usize::try_from(limit.saturating_sub(reserve).max(1)).unwrap_or(usize::MAX)
}

/// The connection cap in force: `configured` (0 = no preference), never above what the
/// open-file limit in force allows.
pub(crate) fn max_connections(configured: usize) -> usize {
    let allowed = fd_limit::open_file_limit().map(connections_allowed);
    match (configured, allowed) {
        (0, Some(allowed)) => allowed,
        (0, None) => FALLBACK_MAX_CONNECTIONS,
        (configured, Some(allowed)) => configured.min(allowed),
        (configured, None) => configured,
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains (see the module doc).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServeSettings,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let slots = Slots::new(settings.max_connections);
    let server = Arc::new(http1_builder(&settings));
    let connections = TaskTracker::new();
    let mut accept_warning = Throttle::new(WARN_INTERVAL);
    let mut full_warning = Throttle::new(WARN_INTERVAL);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_dropped_connection(&e) => continue,
            Err(e) => {
                if let Some(suppressed) = accept_warning.ready() {
                    tracing::warn!(error = %e, suppressed, "cannot accept connections; backing off");
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let slot = match slots.admit() {
            Admission::Admitted { slot, evicted } => {
                if evicted {
                    metrics.record(|| metrics::counter!(CONNECTIONS_EVICTED).increment(1));
                }
                slot
            }
            Admission::Full => {
                metrics.record(|| metrics::counter!(CONNECTIONS_REFUSED).increment(1));
                if let Some(suppressed) = full_warning.ready() {
                    tracing::warn!(
                        max_connections = slots.max(),
                        suppressed,
                        "every connection is busy; closing new ones"
                    );
                }
                continue;
            }
        };
        set_nodelay(&stream);
        let connection = Connection {
            slot,
            router: router.clone(),
            server: server.clone(),
            shutdown: shutdown.clone(),
        };
        match &settings.tls {
            None => connections.spawn(connection.serve(stream)),
            Some(certificates) => connections.spawn(connection.serve_tls(
                stream,
                certificates.acceptor(),
                settings.header_read_timeout,
            )),
        };
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

fn http1_builder(settings: &ServeSettings) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.head_buffer_bytes)
        .keep_alive(true);
    builder
}

/// Errors of one connection that went away before it was accepted: nothing to back off from.
fn is_dropped_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn set_nodelay(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
    }
}

/// What serving one accepted connection needs.
struct Connection {
    slot: Slot,
    router: Router,
    server: Arc<http1::Builder>,
    shutdown: CancellationToken,
}

impl Connection {
    /// Runs the TLS handshake (within `timeout`, holding the slot), then serves.
    async fn serve_tls(self, stream: TcpStream, acceptor: TlsAcceptor, timeout: Duration) {
        let handshake = tokio::select! {
            handshake = tokio::time::timeout(timeout, acceptor.accept(stream)) => handshake,
            () = self.slot.eviction().cancelled() => return,
            () = self.shutdown.cancelled() => return,
        };
        match handshake {
            Ok(Ok(stream)) => self.serve(stream).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    }

    /// Serves the connection until it ends, is evicted (dropped at once), or the server shuts
    /// down (then its in-flight request finishes first).
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            slot,
            router,
            server,
            shutdown,
        } = self;
        let slot = Arc::new(slot);
        let eviction = slot.eviction().clone();
        let service = TrackedService {
            router,
            slot: slot.clone(),
        };
        let io = TokioIo::new(SlottedStream {
            stream,
            _slot: slot,
        });
        let connection = server.serve_connection(io, service).with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => return log_end(result),
            () = eviction.cancelled() => return,
            () = shutdown.cancelled() => {}
        }
        connection.as_mut().graceful_shutdown();
        tokio::select! {
            result = connection => log_end(result),
            () = eviction.cancelled() => {}
        }
    }
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

/// The socket (plain or TLS), holding its connection's slot until it closes (also inside a
/// WebSocket).
struct SlottedStream<S> {
    stream: S,
    _slot: Arc<Slot>,
}

impl<S: AsyncRead + Unpin> AsyncRead for SlottedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SlottedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The router, telling the connection's slot when a request starts, when its response has been
/// written, and when the connection switched to a WebSocket.
#[derive(Clone)]
struct TrackedService {
    router: Router,
    slot: Arc<Slot>,
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<Response<TrackedBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for TrackedService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let request_in_flight = InFlight::start(self.slot.clone());
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(request.map(Body::new)).await?;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                request_in_flight.slot.mark_upgraded();
            }
            Ok(response.map(|body| TrackedBody {
                inner: body,
                _in_flight: request_in_flight,
            }))
        })
    }
}

/// A request being served; dropped when its response was written or abandoned.
struct InFlight {
    slot: Arc<Slot>,
}

impl InFlight {
    fn start(slot: Arc<Slot>) -> InFlight {
        slot.start_request();
        InFlight { slot }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.slot.finish_request();
    }
}

/// A response body that keeps its request in flight until hyper has written (dropped) it.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Lets one warning of a kind through per interval, counting the ones held back.
struct Throttle {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(warnings held back since the last one)` if a warning may be logged now.
    fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < self.every) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_a_reserve_of_descriptors() {
        assert_eq!(
            connections_allowed(1024),
            1024 - CONNECTION_RESERVE as usize
        );
        assert_eq!(connections_allowed(200), 100, "half of a small limit");
        assert_eq!(connections_allowed(1), 1, "always at least one");
        let allowed = fd_limit::open_file_limit()
            .map(connections_allowed)
            .unwrap_or(usize::MAX);
        assert_eq!(max_connections(5), 5.min(allowed));
        assert!(max_connections(0) >= 1);
    }

    #[test]
    fn the_head_buffer_exceeds_the_header_limit() {
        assert_eq!(head_buffer_bytes(16 * 1024), 64 * 1024);
        assert_eq!(head_buffer_bytes(60_000), 240_000);
    }

    #[test]
    fn warnings_are_throttled_and_count_what_they_held_back() {
        let mut throttle = Throttle::new(Duration::from_secs(3600));
        assert_eq!(throttle.ready(), Some(0));
        assert_eq!(throttle.ready(), None);
        assert_eq!(throttle.ready(), None);
        throttle.last = Some(Instant::now() - Duration::from_secs(7200));
        assert_eq!(throttle.ready(), Some(2));
    }
}
