//! The integration tests, one module per area, linked into one test binary: a binary per file
//! linked the whole dependency tree some fifty times, which dominated the build's time and
//! disk. Run one area with `cargo test --release --test integration chat_api::`.
//!
//! The few tests that need a process of their own stay separate binaries in `tests/`:
//! `log_crash` re-runs its own executable as the writer it kills; `log_bad_input`, `cli_admin`
//! and `http_observability` rely on process-wide state (a log's directory lock that a
//! concurrently spawned child would share until it execs; the global log subscriber); and
//! `cluster_nodes` runs its tests one at a time with nothing beside them, each starting three
//! NATS servers and up to three Tidings nodes.

#[path = "../common/mod.rs"]
mod common;
#[macro_use]
#[path = "../conformance/mod.rs"]
mod conformance;

mod abuse;
mod admin_tools;
mod auth_identity_provider;
mod auth_tokens;
mod bench_soak;
mod chat_api;
mod chat_crash;
mod chat_limits;
mod chat_roles;
mod chat_security;
mod cli_remote;
mod cluster_faults;
mod cluster_log;
mod cluster_replica;
mod console_browser;
mod decoders_fuzz;
mod docs;
mod faults;
mod groups_api;
mod http_limits;
mod kafka_clients;
mod kafka_protocol;
mod log_basics;
mod log_conformance;
mod log_model;
mod log_relaxed_durability;
mod metrics_lag;
mod notify_config;
mod notify_crash;
mod notify_dlq;
mod notify_message_new;
mod notify_sink_admin;
mod notify_webhook;
mod openapi;
mod server_health;
mod signalr_clients;
mod socketio_clients;
mod socketio_protocol;
mod tls;
mod topics_api;
mod ws_delivery;
mod ws_descriptors;
mod ws_limits;
mod ws_notify;
mod ws_realtime;
mod ws_resume;
mod ws_shutdown;
mod ws_token_expiry;
