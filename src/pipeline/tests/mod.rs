//! Tests of the pipeline at library level, in the test's own process: a [`node`] (log + store +
//! pipeline on a temporary directory, stopped and reopened at will) driven with chat commands,
//! and the topics read back. They need the crate's internals (commands, the store, a
//! `LiveSessions` double, an outbox entry written outside a batch), so they live here rather
//! than in `tests/`, which sees only the public API.

mod node;
mod notify;
mod store_model;
mod store_writer;
