//! Harnesses shared by the integration tests (each test module uses its own subset):
//! [`server`] runs the real server, in this process or as the `tidings serve` binary (its doc
//! says which tests need the binary); [`chat`] and [`bus`] talk to it over HTTP;
//! [`cli`] runs the binary's admin commands; [`notify`] has a webhook receiver and sink
//! configurations; [`ws`] is a WebSocket client; [`raw`] has raw SignalR and Socket.IO clients, [`kafka_raw`] a raw Kafka connection;
//! [`clients`] runs the real client libraries (SignalR, Socket.IO) in Node; [`browser`] installs
//! the chromium the console tests drive.
#![allow(dead_code)]

/// The binary's allocator (src/main.rs), so that a server run in a test's process allocates,
/// and so performs, as the binary does.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub mod browser;
pub mod bus;
pub mod chat;
pub mod cli;
pub mod clients;
pub mod kafka_raw;
pub mod nats;
pub mod notify;
pub mod raw;
pub mod server;
pub mod ws;
