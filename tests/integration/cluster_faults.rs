//! The log on a three-node NATS JetStream cluster under faults: a SIGKILL of a partition's
//! stream leader in the middle of appends loses no acknowledged record, stores no record twice
//! (idempotency keys make the retries harmless) and appends succeed again within 10 s; with the
//! quorum lost (two of three nodes stopped) appends fail with `Unavailable` and are never
//! acknowledged, and succeed again once a node is back. Each test has its own cluster, since it
//! damages it.

use std::time::{Duration, Instant};

use tidings::config::ClusterConfig;
use tidings::log::{
    JetStreamConfig, Log, LogError, ReadLimits, Record, TopicConfig, IDEMPOTENCY_HEADER,
};

use crate::common;

use common::nats::NatsCluster;

/// A request to the cluster fails after this long (short, so that the tests see failures fast).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

async fn open(cluster: &NatsCluster, namespace: &str) -> Log {
    let mut config = JetStreamConfig::new(namespace);
    config.request_timeout = REQUEST_TIMEOUT;
    let mut urls = ClusterConfig::with_urls(ClusterConfig::parse_urls(&cluster.urls()));
    urls.request_timeout = REQUEST_TIMEOUT;
    Log::open_cluster(&urls, config)
        .await
        .expect("open the log on the cluster")
}

/// Creates a one-partition topic on a cluster that just started. Setup, not the fault under
/// test: with the tests' short request timeout, a node busy starting (CI runs tests in
/// parallel on two cores) may not see the topics bucket's new revision in time, so an
/// `Unavailable` is retried; `TopicExists` means an earlier try got through.
async fn create_topic(log: &Log, name: &str) {
    let started = Instant::now();
    loop {
        match log
            .create_topic(name, TopicConfig::with_partitions(1))
            .await
        {
            Ok(_) | Err(LogError::TopicExists(_)) => return,
            Err(LogError::Unavailable(reason)) => {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "topic {name} not created after a minute: {reason}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("create topic {name}: {e}"),
        }
    }
}

fn numbered(n: u64) -> Record {
    Record::new(format!("r{n}")).with_header(IDEMPOTENCY_HEADER, format!("r{n}"))
}

fn all_values(log: &Log, topic: &str) -> Vec<(u64, String)> {
    let limits = ReadLimits {
        max_records: 1_000_000,
        max_bytes: usize::MAX,
    };
    log.read(topic, 0, 0, limits)
        .expect("read the partition")
        .into_iter()
        .map(|r| (r.offset, String::from_utf8(r.value).expect("utf-8")))
        .collect()
}

/// The cluster node that leads the stream whose name starts with `prefix` (from `/jsz`).
fn stream_leader(cluster: &NatsCluster, prefix: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for node in (0..cluster.len()).filter(|&n| cluster.is_running(n)) {
            let url = format!("{}/jsz?streams=true", cluster.monitor_url(node));
            let Ok(out) = std::process::Command::new("curl")
                .args(["-sf", &url])
                .output()
            else {
                continue;
            };
            let Ok(jsz) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
                continue;
            };
            let streams = jsz["account_details"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|account| account["stream_detail"].as_array().into_iter().flatten());
            for stream in streams {
                let name = stream["name"].as_str().unwrap_or_default();
                let leader = stream["cluster"]["leader"].as_str().unwrap_or_default();
                if name.starts_with(prefix) && !leader.is_empty() {
                    return cluster.node_named(leader);
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no node names a leader of {prefix}*"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Appends record `n` until it is acknowledged; the offset and how long it took.
async fn append_until_acked(log: &Log, n: u64) -> (u64, Duration) {
    let started = Instant::now();
    loop {
        match log.append_to("t", 0, vec![numbered(n)]).await {
            Ok(acked) => return (acked[0].offset, started.elapsed()),
            Err(e) => {
                assert!(
                    e.is_storage_failure(),
                    "a fault gives a retryable error: {e:?}"
                );
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "record {n} not acknowledged after a minute: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// SIGKILL of the stream's leader during appends: every acknowledged record is there once, at
/// its acknowledged offset, and appends are acknowledged again within 10 s of the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_loses_no_acknowledged_record() {
    let mut cluster = tokio::task::block_in_place(|| NatsCluster::start(3));
    let log = open(&cluster, "kill").await;
    create_topic(&log, "t").await;
    let mut acked = Vec::new();
    for n in 0..300 {
        acked.push((append_until_acked(&log, n).await.0, format!("r{n}")));
    }
    let leader = tokio::task::block_in_place(|| stream_leader(&cluster, "kill_log_"));
    cluster.kill(leader);
    let (offset, recovery) = append_until_acked(&log, 300).await;
    acked.push((offset, "r300".into()));
    assert!(
        recovery < Duration::from_secs(10),
        "appends came back {recovery:?} after the leader was killed"
    );
    for n in 301..600 {
        acked.push((append_until_acked(&log, n).await.0, format!("r{n}")));
    }

    log.shutdown();
    drop(log);
    let fresh = open(&cluster, "kill").await;
    let stored = all_values(&fresh, "t");
    assert_eq!(stored, acked, "every acknowledged record, once, in order");
}

/// Two of three nodes stopped: appends fail with `Unavailable` (never acknowledged); one node
/// back and they are acknowledged again, with every earlier acknowledged record intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_appends_are_refused_until_it_is_back() {
    let mut cluster = tokio::task::block_in_place(|| NatsCluster::start(3));
    let log = open(&cluster, "quorum").await;
    create_topic(&log, "t").await;
    let mut acked = Vec::new();
    for n in 0..20 {
        acked.push((append_until_acked(&log, n).await.0, format!("r{n}")));
    }
    tokio::task::block_in_place(|| {
        cluster.stop(1);
        cluster.stop(2);
    });
    for n in 100..103 {
        let refused = log.append_to("t", 0, vec![numbered(n)]).await;
        assert!(
            matches!(refused, Err(LogError::Unavailable(_))),
            "an append without a quorum is refused with Unavailable, got {refused:?}"
        );
    }

    tokio::task::block_in_place(|| cluster.restart(1));
    let (offset, _) = append_until_acked(&log, 20).await;
    acked.push((offset, "r20".into()));
    let stored = all_values(&log, "t");
    for (offset, value) in &acked {
        assert!(
            stored.contains(&(*offset, value.clone())),
            "acknowledged {value} at {offset} is there"
        );
    }
}
