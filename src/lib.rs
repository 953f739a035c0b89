//! Tidings: a self-contained chat messaging engine.
//!
//! # Layout
//! - [`log`]: the embedded, partitioned, append-only log with Kafka semantics (topics,
//!   partitions, offsets, consumer groups, retention), stored in sled. Usable on its own.
//! - [`cli`]: the `tidings` command line: admin tools like Kafka's console tools.
//! - [`bench`]: the built-in load generators (`tidings bench …`).
//! - [`server`]: wiring of the HTTP server and graceful shutdown.

#![deny(unsafe_code)]
#![warn(missing_docs, clippy::unwrap_used)]

pub mod bench;
pub mod cli;
pub mod log;
