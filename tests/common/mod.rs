//! Harnesses shared by the integration tests (each test file uses its own subset):
//! [`server`] runs the real `tidings serve` binary; [`node`] runs log + store + pipeline in the
//! test's own process.
#![allow(dead_code)]

pub mod chat;
pub mod node;
pub mod server;
