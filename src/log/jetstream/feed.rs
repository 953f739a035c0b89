//! One task per partition on every node: an ordered consumer on the partition's stream that
//! copies every stored record, in sequence order, into the node's [`Replica`].
//!
//! Ordered consumers are ephemeral and cheap, and deliver each stored message once and in order
//! (the client recreates them on a gap). When the consumer breaks — a node of the cluster died,
//! the connection dropped — the task starts a new one after the replica's high watermark, so the
//! replica never misses or repeats a record. It stops with its topic or the log.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::stream::Stream;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::replica::Replica;
use super::wire::WireRecord;

/// Pause before a broken consumer is replaced.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Starts following `stream` into `replica` until `stop` is cancelled.
pub(super) fn spawn(stream: Stream, replica: Arc<Replica>, stop: CancellationToken) {
    tokio::spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = follow(&stream, &replica) => {}
        }
    });
}

async fn follow(stream: &Stream, replica: &Replica) {
    let name = stream.cached_info().config.name.clone();
    loop {
        if let Err(error) = follow_once(stream, replica, &name).await {
            tracing::warn!(stream = name, %error, "following a partition broke; resuming");
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// One ordered consumer from the replica's high watermark on, until it breaks.
async fn follow_once(
    stream: &Stream,
    replica: &Replica,
    name: &str,
) -> Result<(), async_nats::Error> {
    let (_, high) = replica.watermarks();
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: high + 1,
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let sequence = message.info()?.stream_sequence;
        let offset = sequence - 1;
        match WireRecord::decode(&message.payload, || format!("{name} sequence {sequence}")) {
            Ok(wire) => replica.push(offset, wire),
            Err(error) => {
                // Not ours (someone published on the subject by hand): an empty record keeps the
                // offsets dense and says what happened.
                tracing::error!(%error, "undecodable record in a partition's stream");
                replica.push(offset, WireRecord::undecodable());
            }
        }
    }
    Ok(())
}
