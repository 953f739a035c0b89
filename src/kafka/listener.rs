//! The accept loop of the Kafka listener: each connection on its own task (on the server's
//! tracker, with the shutdown signal), at most `kafka.maxConnections` at once; one more is
//! closed at accept, which a Kafka client treats like a broker that went away and retries.
//!
//! Framing and requests are `connection`'s.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{connection, Broker};

/// Accepts until `shutdown`; each connection holds a slot of the cap while it lives.
pub(super) async fn accept(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(broker.settings.max_connections));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: keep listening.
                tracing::warn!(error = %e, "kafka: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(%peer, "kafka: connection refused, kafka.maxConnections reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (broker, shutdown) = (Arc::clone(&broker), shutdown.clone());
        tasks.spawn(async move {
            connection::serve(stream, peer, broker, shutdown).await;
            drop(slot);
        });
    }
}
