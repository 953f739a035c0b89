//! Tests of exclusive work through a real nats-server with JetStream: two nodes in this process
//! contend for one lease; the work records how many copies run at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::cluster::test_nats::NatsServer;

/// Counts the copies of the work running now, the most ever seen at once, and runs per node.
#[derive(Default)]
struct Runs {
    now: AtomicUsize,
    most: AtomicUsize,
    started: [AtomicUsize; 2],
    stopped_by_token: AtomicUsize,
}

fn config(prefix: &str, node: &str) -> GroupsConfig {
    GroupsConfig {
        prefix: prefix.to_owned(),
        lease_ttl: Duration::from_secs(1),
        replicas: 1,
        ..GroupsConfig::new(node)
    }
}

/// Node `n` runs the work (which runs until told to stop) under the lease "notify.0".
fn spawn_node(
    exclusive: Exclusive,
    n: usize,
    runs: Arc<Runs>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        exclusive
            .run("notify.0", shutdown, |stop| {
                let runs = runs.clone();
                async move {
                    let now = runs.now.fetch_add(1, Ordering::SeqCst) + 1;
                    runs.most.fetch_max(now, Ordering::SeqCst);
                    runs.started[n].fetch_add(1, Ordering::SeqCst);
                    stop.cancelled().await;
                    runs.stopped_by_token.fetch_add(1, Ordering::SeqCst);
                    runs.now.fetch_sub(1, Ordering::SeqCst);
                }
            })
            .await;
    })
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Of two nodes, one runs the work; when it dies the other takes over after the lease TTL, and
/// the two never run it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_runs_the_work_and_another_takes_over_when_it_dies() {
    let nats = NatsServer::start();
    let runs = Arc::new(Runs::default());
    let mut nodes = Vec::new();
    for (n, id) in ["a", "b"].into_iter().enumerate() {
        let exclusive = Exclusive::open(&nats.client().await, &config("x1", id))
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        nodes.push((
            spawn_node(exclusive, n, runs.clone(), shutdown.clone()),
            shutdown,
        ));
    }
    until("one node runs it", || runs.now.load(Ordering::SeqCst) == 1).await;
    // Well past the TTL: the holder renews, the other keeps waiting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = |n: usize| runs.started[n].load(Ordering::SeqCst);
    assert_eq!(started(0) + started(1), 1, "one run, kept by renewals");
    let holder = if started(0) == 1 { 0 } else { 1 };

    // The holder dies without releasing: its task (and the work in it) is gone at once.
    nodes[holder].0.abort();
    runs.now.fetch_sub(1, Ordering::SeqCst);
    let died = Instant::now();
    until("the other node takes over", || started(1 - holder) == 1).await;
    assert!(
        died.elapsed() >= Duration::from_millis(300),
        "only once the lease expired"
    );
    assert_eq!(runs.most.load(Ordering::SeqCst), 1, "never two at once");

    // A graceful stop releases the lease at once.
    let (task, shutdown) = &nodes[1 - holder];
    shutdown.cancel();
    until("the work stops", || runs.now.load(Ordering::SeqCst) == 0).await;
    assert!(tokio::time::timeout(Duration::from_secs(5), async {
        while !task.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await
        }
    })
    .await
    .is_ok());
}

/// A node whose lease is taken from it (here: overwritten) is told to stop its work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_loses_its_lease_stops_its_work() {
    let nats = NatsServer::start();
    let runs = Arc::new(Runs::default());
    let client = nats.client().await;
    let exclusive = Exclusive::open(&client, &config("x2", "a")).await.unwrap();
    let leases = exclusive.leases.clone();
    let shutdown = CancellationToken::new();
    let _node = spawn_node(exclusive, 0, runs.clone(), shutdown.clone());
    until("the node runs it", || runs.now.load(Ordering::SeqCst) == 1).await;
    leases
        .put(work_key("notify.0"), Bytes::from_static(b"intruder"))
        .await
        .unwrap();
    until("the work is told to stop", || {
        runs.stopped_by_token.load(Ordering::SeqCst) == 1
    })
    .await;
    shutdown.cancel();
}
