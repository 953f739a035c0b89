//! Notification sinks: where a `message.new` record goes once it is produced. A [`Sink`] takes
//! one record (key and JSON body) and reports an [`Outcome`]: delivered, or dead (to be put in
//! the dead-letter topic), or interrupted by shutdown (to be retried after restart).
//!
//! Sinks: [`webhook`] (an HTTP POST signed with HMAC-SHA256, retried with exponential backoff
//! and full jitter) and [`log_sink`] (one structured tracing line, target `tidings::notify`).
//!
//! This module owns the sinks' settings and their delivery. It imports no other module of the
//! crate: reading `message.new`, committing offsets and writing dead letters is the job of
//! `pipeline::sinks`, and parsing the TOML file that of `config`.

pub(crate) mod log_sink;
pub(crate) mod webhook;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub(crate) use log_sink::LogSink;
pub(crate) use webhook::{Backoff, WebhookConfig, WebhookSink};

/// A sink as configured: a name (unique; its consumer group is `notify.sink.NAME`) and a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SinkConfig {
    /// 1–200 characters of `[A-Za-z0-9._-]`.
    pub name: String,
    /// What the sink does.
    pub kind: SinkKind,
    /// Where the sink starts reading `message.new` when its consumer group has no committed
    /// offset yet (its first start).
    pub start_from: StartFrom,
}

/// Where a new sink starts (`startFrom`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum StartFrom {
    /// Only notifications produced from its first start on: a sink added to an install that
    /// already has notifications does not push every old one.
    #[default]
    Latest,
    /// Every retained notification: a replay of the history into the new sink.
    Earliest,
}

/// The kinds of sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SinkKind {
    /// POST each notification to a URL.
    Webhook(WebhookConfig),
    /// Write each notification as one structured log line.
    Log,
}

/// What became of one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The sink accepted it, after this many attempts.
    Delivered {
        /// Attempts made, the successful one included.
        attempts: u32,
    },
    /// The sink refused it for good (a permanent error, or every attempt failed): it goes to
    /// the dead-letter topic.
    Dead {
        /// The last error, as text.
        error: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Shutdown came before an answer: neither delivered nor dead, to be tried again after a
    /// restart.
    Interrupted,
}

/// Why a sink could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SinkError {
    /// The HTTP client of a webhook could not be created.
    #[error("sink {sink}: cannot create the HTTP client: {source}")]
    Client {
        /// The sink's name.
        sink: String,
        /// The client's error.
        source: reqwest::Error,
    },
}

/// A running sink.
#[derive(Debug)]
pub(crate) enum Sink {
    /// See [`WebhookSink`].
    Webhook(WebhookSink),
    /// See [`LogSink`].
    Log(LogSink),
}

impl Sink {
    /// Builds the sink `config` describes.
    pub(crate) fn new(config: &SinkConfig) -> Result<Sink, SinkError> {
        Ok(match &config.kind {
            SinkKind::Webhook(webhook) => Sink::Webhook(WebhookSink::new(&config.name, webhook)?),
            SinkKind::Log => Sink::Log(LogSink::new(&config.name)),
        })
    }

    /// The sink's name.
    pub(crate) fn name(&self) -> &str {
        match self {
            Sink::Webhook(sink) => sink.name(),
            Sink::Log(sink) => sink.name(),
        }
    }

    /// Most deliveries of this sink in flight at once, over all partitions.
    pub(crate) fn concurrency(&self) -> usize {
        match self {
            Sink::Webhook(sink) => sink.concurrency(),
            Sink::Log(_) => 1,
        }
    }

    /// Delivers one notification (`key` = recipient id, `body` = the record's JSON).
    pub(crate) async fn deliver(
        &self,
        key: &[u8],
        body: &[u8],
        shutdown: &CancellationToken,
    ) -> Outcome {
        match self {
            Sink::Webhook(sink) => sink.deliver(body, shutdown).await,
            Sink::Log(sink) => sink.deliver(key, body),
        }
    }
}

/// Default of `timeoutMs`: how long one webhook attempt may take.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of `maxAttempts`.
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Default of `concurrency`.
pub(crate) const DEFAULT_CONCURRENCY: usize = 4;
