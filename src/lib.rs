//! Tidings: a self-contained chat messaging engine.
//!
//! # Layout
//! - [`log`]: the embedded, partitioned, append-only log with Kafka semantics (topics,
//!   partitions, offsets, consumer groups, retention), stored in sled. Usable on its own.
//! - `bus`: the HTTP event bus's consumer-group coordinator: in-memory membership, topic
//!   patterns, round-robin partition assignment and session expiry; no HTTP.
//! - [`auth`]: HS256 tokens, the signing secret (`secret.key`) and the caller's identity.
//! - [`cli`]: the `tidings` command line: admin tools like Kafka's console tools.
//! - [`bench`](mod@bench): the built-in load generators (`tidings bench …`).
//! - `discovery`: the address file a running server leaves in its data directory, so the
//!   admin commands find the server that holds the directory.
//! - [`config`]: the server's settings from flags, `TIDINGS_*` variables, a TOML file and
//!   defaults, validated into one `Config`.
//! - `metrics`: each server's Prometheus registry and the scrape-time log counters.
//! - `api`: the HTTP edge (axum): the chat routes (conversations, messages, read marks) with
//!   idempotent sends, the send rate limit and backpressure; the WebSocket upgrade `/ws` and
//!   each session's reader and writer; shared handler state, problem+json errors, the health,
//!   readiness and metrics endpoints.
//! - `store`: the chat read model in its own sled database (conversations, messages by
//!   (conversation, seq), read state, id indexes, the event outbox, its applied position) and
//!   its replay-safe batch writer; no HTTP.
//! - `pipeline`: the consumers joining log → store → hub and notifications: the write-behind
//!   store writer (one task per partition, adaptive batches) handing each applied batch to the
//!   hub's sessions, the exactly-once relay to `messages.sent`, the `notify` group
//!   producing `message.new`, and the sink consumers with their dead-letter topic; no HTTP.
//! - `hub`: live WebSocket sessions (user → sessions) with bounded outbound queues, the typed
//!   server events and their frames (encoded once per wire format), presence and typing; no
//!   storage, no HTTP, no sockets.
//! - `kafka`: the Kafka wire protocol on a second listener (`--kafka-listen`): codecs, the
//!   API handlers and the classic group coordinator, on top of `log`; no chat, no HTTP.
//! - `notify`: the notification sinks (webhook with HMAC signature and retries, log); they
//!   deliver one record and know nothing of the log.
//! - `console`: the web console's files (HTML, CSS, JavaScript modules) compiled into the
//!   binary and the Content-Security-Policy they are served with; no routing.
//! - [`server`]: wiring of the HTTP server, the store, the pipeline, the hub and the
//!   notifications, and graceful shutdown (`server::run`).

#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub, clippy::unwrap_used)]

// The public API (see "Public API" above and in docs/architecture.md); `unreachable_pub` keeps
// every other item `pub(crate)` or private, so the API grows only on purpose.
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod log;
pub mod server;

mod api;
mod bus;
mod cluster;
mod console;
mod discovery;
mod hub;
mod kafka;
mod metrics;
mod notify;
mod pipeline;
mod private_files;
mod store;
#[cfg(test)]
mod testing;
