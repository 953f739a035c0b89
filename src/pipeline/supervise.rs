//! Keeps the server's own consumers of `messages.sent` and `message.new` (the `notify` group,
//! the notification sinks) working through failures, and says when one cannot.
//!
//! [`spawn_supervised`] runs a worker; when it fails, the failure is logged and recorded in
//! [`WorkerHealth`] (so `/readyz` answers 503 while it lasts), and after a backoff the worker is
//! built again from its committed offset and run again. A worker whose group offset was moved
//! ahead of it does not even fail: [`commit_forward`] takes the committed offset and goes on
//! from there. The store writers are not supervised here: a store that cannot write stops its
//! writer for good and refuses writes (fail-stop, see [`super::Pipeline::failure`]).
//!
//! On a cluster (`--cluster`) the same consumers run on every node, but each partition's worker
//! must run on one node at a time: a [`Placement::Leased`] worker runs only while this node holds
//! the worker's lease ([`WorkLeases`], implemented by `cluster::groups_exclusive`), and stops
//! when the lease is lost; another node then takes it over from the committed offset.
//!
//! This module knows nothing of what the workers do, nor of how leases are kept.

use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{PipelineError, Result};
use crate::log::{Log, LogError};

/// First wait before a failed worker runs again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between two runs of a failing worker.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Which supervised workers are down right now, and why. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkerHealth {
    failures: Arc<Mutex<BTreeMap<String, String>>>,
}

impl WorkerHealth {
    /// One worker that is down, as `name: reason`, or `None` when every worker works.
    pub(crate) fn failure(&self) -> Option<String> {
        self.lock()
            .iter()
            .next()
            .map(|(name, reason)| format!("{name}: {reason}"))
    }

    fn set_failed(&self, name: &str, reason: String) {
        self.lock().insert(name.to_owned(), reason);
    }

    fn set_running(&self, name: &str) {
        self.lock().remove(name);
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.failures.lock()
    }
}

/// A boxed future of a worker run, as [`WorkLeases`] takes it.
pub(crate) type BoxedRun = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The work a lease guards: called once per lease taken, with a token cancelled when the lease
/// is lost (or at shutdown); the run must return soon after.
pub(crate) type LeasedWork = Box<dyn FnMut(CancellationToken) -> BoxedRun + Send + 'static>;

/// Runs work on one node of a cluster at a time.
pub(crate) trait WorkLeases: Send + Sync + 'static {
    /// Runs `work` whenever this node holds the lease `name`, until `shutdown`.
    fn run_exclusive(
        &self,
        name: String,
        shutdown: CancellationToken,
        work: LeasedWork,
    ) -> BoxedRun;
}

/// Where the server's own consumers run.
#[derive(Clone, Default)]
pub(crate) enum Placement {
    /// On this node, always (one node, the embedded log).
    #[default]
    Here,
    /// On the node holding the worker's lease (a cluster): one node at a time.
    Leased(Arc<dyn WorkLeases>),
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::Here => f.write_str("Here"),
            Placement::Leased(_) => f.write_str("Leased"),
        }
    }
}

/// How the server's own consumers are supervised: where their failures are recorded and where
/// they run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Supervision {
    /// Which workers are down.
    pub health: WorkerHealth,
    /// Here, or by lease on a cluster.
    pub placement: Placement,
}

/// Runs the worker `run` makes on `tracker` until it returns `Ok` (shutdown, or the log
/// closed): each failure is recorded in `health` under `name` and the worker is made and run
/// again after a backoff. `run` is called once per attempt and builds the worker afresh (from
/// its committed offset). With [`Placement::Leased`], all this happens only while this node
/// holds the lease `name`.
pub(crate) fn spawn_supervised<F, Fut>(
    tracker: &TaskTracker,
    health: WorkerHealth,
    name: String,
    shutdown: CancellationToken,
    placement: &Placement,
    mut run: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    match placement {
        Placement::Here => {
            tracker.spawn(async move { supervise(&mut run, &health, &name, &shutdown).await });
        }
        Placement::Leased(leases) => {
            // The lease's runs never overlap (one ends before the next lease is taken), so the
            // lock is only ever taken by one of them.
            let run = Arc::new(tokio::sync::Mutex::new(run));
            let lease_name = name.clone();
            let work: LeasedWork = Box::new(move |stop: CancellationToken| {
                let (run, health, name) = (run.clone(), health.clone(), name.clone());
                Box::pin(async move {
                    let mut run = run.lock().await;
                    supervise(&mut *run, &health, &name, &stop).await;
                })
            });
            tracker.spawn(leases.run_exclusive(lease_name, shutdown, work));
        }
    }
}

/// Runs `run`'s workers one after the other until one returns `Ok` or `shutdown`, with a
/// doubling backoff between failures.
async fn supervise<F, Fut>(
    run: &mut F,
    health: &WorkerHealth,
    name: &str,
    shutdown: &CancellationToken,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        match run().await {
            Ok(()) | Err(PipelineError::Log(LogError::Closed)) => return,
            Err(e) => {
                tracing::error!(worker = %name, error = %e, retry_in = ?backoff, "worker failed; it starts again from its committed offset");
                health.set_failed(name, e.to_string());
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        health.set_running(name);
    }
}

/// Commits `next` for `group` and returns where the worker goes on: `next`, or the committed
/// offset when somebody moved it ahead (a commit conflict is logged, never a reason to stop).
pub(crate) fn commit_forward(
    log: &Log,
    group: &str,
    (topic, partition): (&str, u32),
    next: u64,
) -> Result<u64> {
    match log.commit_offset(group, topic, partition, next) {
        Ok(()) => Ok(next),
        Err(LogError::CommitRegression { committed, .. }) => {
            tracing::warn!(
                group,
                topic,
                partition,
                ours = next,
                committed,
                "the group's offset was moved ahead of this worker; going on from it"
            );
            Ok(committed)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::log::{LogConfig, Record, TopicConfig};

    #[tokio::test]
    async fn a_failed_worker_is_reported_then_run_again() {
        let health = WorkerHealth::default();
        let tracker = TaskTracker::new();
        let attempts = Arc::new(AtomicU32::new(0));
        let counted = attempts.clone();
        spawn_supervised(
            &tracker,
            health.clone(),
            "notify/0".into(),
            CancellationToken::new(),
            &Placement::Here,
            move || {
                let attempt = counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    if attempt == 0 {
                        Err(PipelineError::Worker("boom".into()))
                    } else {
                        Ok(())
                    }
                }
            },
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let failure = health
            .failure()
            .expect("the failure shows while it waits to run again");
        assert!(failure.starts_with("notify/0: "), "{failure}");
        tracker.close();
        tracker.wait().await;
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        assert_eq!(health.failure(), None, "running again, so healthy again");
    }

    #[tokio::test]
    async fn a_commit_conflict_goes_on_from_the_committed_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::log::Log::open(LogConfig::new(dir.path())).unwrap();
        log.create_topic("t", TopicConfig::with_partitions(1))
            .await
            .unwrap();
        let records = (0..10).map(|i| Record::new(vec![i])).collect();
        log.append("t", records).await.unwrap();
        log.commit_offset("g", "t", 0, 8).unwrap();
        assert_eq!(commit_forward(&log, "g", ("t", 0), 5).unwrap(), 8);
        assert_eq!(commit_forward(&log, "g", ("t", 0), 9).unwrap(), 9);
        assert_eq!(log.committed_offset("g", "t", 0).unwrap(), Some(9));
        log.shutdown();
    }
}
