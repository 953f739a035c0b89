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

/// After this long without a message the feed asks the stream how far it is: the client only
/// notices a consumer lost with a dead server after two missed heartbeats (about 30 s), far
/// longer than a leader election.
const IDLE_CHECK: Duration = Duration::from_secs(1);

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
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(IDLE_CHECK, messages.next()) => next.ok(),
            () = replica.stalled() => None,
        };
        let message = match next {
            Some(Some(message)) => message?,
            Some(None) => return Ok(()),
            None if is_behind(stream, replica).await => {
                return Err("the consumer delivers no more of what the stream holds".into())
            }
            None => continue,
        };
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
}

/// Whether the stream holds records past the replica's high watermark (an unanswered question
/// counts as no: the cluster may be down, and a new consumer would not help then).
async fn is_behind(stream: &Stream, replica: &Replica) -> bool {
    let mut fresh = stream.clone();
    match fresh.info().await {
        Ok(info) => info.state.last_sequence > replica.watermarks().1,
        Err(_) => false,
    }
}
