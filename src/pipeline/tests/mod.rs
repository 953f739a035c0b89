//! Tests of the pipeline at library level, in the test's own process: a [`node`] (log + store +
//! pipeline on a temporary directory, stopped and reopened at will) driven with chat commands,
//! and the topics read back. They need the crate's internals (commands, the store, a
//! `LiveSessions` double, an outbox entry written outside a batch), so they live here rather
//! than in `tests/`, which sees only the public API.

mod node;
mod notify;
mod store_model;
mod store_writer;

use super::{step_limit, PipelineConfig};
use crate::hub::{Hub, HubConfig};

#[test]
fn a_writer_step_fits_in_half_a_session_queue() {
    let limit = |max_batch, queue_frames| {
        let config = PipelineConfig {
            max_batch,
            ..PipelineConfig::default()
        };
        step_limit(
            &config,
            &Hub::new(HubConfig {
                queue_frames,
                ..HubConfig::default()
            }),
        )
    };
    assert_eq!(limit(1000, 1024), 512, "the defaults");
    assert_eq!(limit(1000, 64), 32);
    assert_eq!(limit(10, 1024), 10, "max_batch when it is smaller");
    assert_eq!(limit(1000, 1), 1, "never zero");
}
