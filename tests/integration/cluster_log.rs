//! The log on a three-node NATS JetStream cluster passes the same conformance suite as the
//! embedded log (`tests/conformance`), on one cluster for the whole suite: each check opens the
//! log in a namespace of its own (derived from its temporary directory, so a reopen of the same
//! directory is a new `JetStreamLog` on the same streams and buckets). The suite runs twice: with
//! the default replica cache, and with a cache of 256 bytes per partition, so that nearly every
//! read and time lookup goes to the streams.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use tidings::config::ClusterConfig;
use tidings::log::{JetStreamConfig, Log};

use crate::common;
use crate::conformance;

use common::nats::NatsCluster;

/// The client URLs of the suite's cluster, set by the test before any check runs.
static URLS: OnceLock<String> = OnceLock::new();

/// The replica cache budget of the logs `open` opens (0: the default).
static CACHE_BYTES: AtomicU64 = AtomicU64::new(0);

/// Opens the JetStream log in the namespace of `dir`: the same directory, the same log.
fn open(dir: &Path) -> Log {
    let urls = URLS.get().expect("the cluster is started first");
    let cluster = ClusterConfig::with_urls(ClusterConfig::parse_urls(urls));
    let mut config = JetStreamConfig::new(namespace_of(dir));
    match CACHE_BYTES.load(Ordering::Relaxed) {
        0 => {}
        bytes => config.replica_cache_bytes = bytes,
    }
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| handle.block_on(Log::open_cluster(&cluster, config)))
        .expect("open the log on the cluster")
}

fn namespace_of(dir: &Path) -> String {
    let mut hasher = DefaultHasher::new();
    dir.hash(&mut hasher);
    format!("c{:016x}", hasher.finish())
}

/// Every check of the suite, in order, against the log on JetStream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_jetstream() {
    let cluster = tokio::task::block_in_place(|| NatsCluster::start(3));
    URLS.set(cluster.urls()).expect("set once");
    conformance::suite::run_all(open).await;
    CACHE_BYTES.store(256, Ordering::Relaxed);
    conformance::suite::run_all(open).await;
}
