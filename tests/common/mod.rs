//! Harnesses shared by the integration tests (each test file uses its own subset):
//! [`server`] runs the real `tidings serve` binary; [`chat`] and [`bus`] talk to it over HTTP;
//! [`cli`] runs the binary's admin commands; [`notify`] has a webhook receiver and sink
//! configurations; [`ws`] is a WebSocket client; [`clients`] runs the real client libraries
//! (SignalR) in Node.
#![allow(dead_code)]

pub mod bus;
pub mod chat;
pub mod cli;
pub mod clients;
pub mod notify;
pub mod server;
pub mod ws;
