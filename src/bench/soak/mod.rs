//! `tidings bench soak`: a long run of mixed chat load against a server the soak starts, kills
//! and restarts itself, checking that memory, descriptors and disk stay flat once warm and
//! that every acknowledged message is kept exactly once.
//!
//! Layout: `server` starts and stops the `tidings serve` child; `receiver` is the webhook
//! endpoint its notification sink posts to (failing 10 % of requests); `chat` holds the
//! users, conversations and the ledger of 202s; `load` sends, edits, deletes and marks read
//! at a fixed rate; `sessions` are the WebSocket clients that come and go (and the slow
//! consumers); `samples` measures the server over time; `verify` checks history at the end.
//! This file runs the phases in order and reports.
//!
//! It drives the server from outside only, through the documented HTTP and WebSocket API.

mod chat;
mod load;
mod random;
mod receiver;
mod samples;
mod server;
mod sessions;
mod summary;
mod verify;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::report::{process_cpu_seconds, run_and_print};
use chat::{Ledger, Presence, Shape, World};
use random::{hex, random_bytes};
use server::{RunningServer, ServerCommand, Stop};
use summary::print_summary;
pub(crate) use summary::{BenchSoakReport, Notifications};

/// Share of webhook requests the receiver answers 503.
const WEBHOOK_FAILURES: f64 = 0.10;
/// Attempts the soak's sink makes before a dead letter: 2, so that 1 % of notifications (both
/// attempts refused) exercise `message.new.dlq`.
const WEBHOOK_ATTEMPTS: u32 = 2;
/// How long the webhook may take after the load to deliver what is still due.
const NOTIFY_DRAIN: Duration = Duration::from_secs(20);

/// Options of `tidings bench soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchSoakArgs {
    /// How long the load runs, e.g. 60s, 1h.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,
    /// Chat writes per second in all (85 % sends, 6 % edits, 3 % deletes, 6 % read marks).
    #[arg(long, default_value_t = 200)]
    pub(crate) rate: u64,
    /// Restart the server this often, alternately with SIGTERM and SIGKILL.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub(crate) restart_every: Duration,
    /// Measure the server this often.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) sample_every: Duration,
    /// The CSV file the samples go to.
    #[arg(long, default_value = "soak.csv")]
    pub(crate) out: PathBuf,
    /// The server's data directory (kept) [default: a temporary one, removed afterwards].
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Users in all.
    #[arg(long, default_value_t = 100)]
    pub(crate) users: usize,
    /// Two-member conversations.
    #[arg(long, default_value_t = 60)]
    pub(crate) pairs: usize,
    /// Larger conversations.
    #[arg(long, default_value_t = 4)]
    pub(crate) groups: usize,
    /// Members of each larger conversation.
    #[arg(long, default_value_t = 10)]
    pub(crate) group_members: usize,
    /// Share of writes that go to a larger conversation (0 to 1).
    #[arg(long, default_value_t = 0.2)]
    pub(crate) group_share: f64,
    /// Users with a WebSocket client that comes and goes (the rest stay offline).
    #[arg(long, default_value_t = 60)]
    pub(crate) sessions: usize,
    /// Slow consumers (members of every larger conversation) that stop reading until the
    /// server closes them with 4008.
    #[arg(long, default_value_t = 2)]
    pub(crate) slow_consumers: usize,
    /// Message content size in bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) size: usize,
    /// The server's durability mode.
    #[arg(long, default_value = "always")]
    pub(crate) durability: String,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub(crate) json: bool,
}

/// What the clients, the load and the sampler share.
pub(crate) struct Shared {
    client: reqwest::Client,
    /// The running server's base URL; `None` while it restarts.
    base: watch::Receiver<Option<String>>,
    world: World,
    presence: Presence,
    ledger: Ledger,
    load: load::LoadCounters,
    sessions: sessions::SessionCounters,
    inbox: Arc<receiver::Inbox>,
}

/// Runs the soak, prints its report, and fails if anything acknowledged was lost or duplicated
/// or the server did not come back.
pub fn run(args: BenchSoakArgs) -> anyhow::Result<()> {
    let json = args.json;
    let passed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let verdict = passed.clone();
    let measure = async move {
        let report = measure(&args).await?;
        verdict.store(report.passed, Ordering::Relaxed);
        Ok(report)
    };
    run_and_print(json, measure, print_summary)?;
    anyhow::ensure!(
        passed.load(Ordering::Relaxed),
        "the soak failed: see lost, duplicated, seqGaps and serverCameBack above"
    );
    Ok(())
}

fn check_args(args: &BenchSoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.users >= 2, "--users must be at least 2");
    anyhow::ensure!(
        args.pairs + args.groups >= 1,
        "need at least one conversation"
    );
    anyhow::ensure!(
        args.sessions + args.slow_consumers <= args.users,
        "--sessions + --slow-consumers must be at most --users"
    );
    anyhow::ensure!(
        args.group_members >= 2 && args.group_members <= args.users,
        "--group-members must be between 2 and --users"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.group_share),
        "--group-share is between 0 and 1"
    );
    anyhow::ensure!(args.rate >= 1, "--rate must be at least 1");
    anyhow::ensure!(
        !args.restart_every.is_zero() && !args.sample_every.is_zero(),
        "--restart-every and --sample-every must be above 0"
    );
    Ok(())
}

/// Everything of the run: the phases in order.
async fn measure(args: &BenchSoakArgs) -> anyhow::Result<BenchSoakReport> {
    check_args(args)?;
    let work = tempfile::Builder::new()
        .prefix("tidings-soak-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| work.path().join("data"));
    let stop_receiver = CancellationToken::new();
    let _stop_receiver_on_exit = stop_receiver.clone().drop_guard();
    let secret = hex(&random_bytes::<16>());
    let receiver = receiver::start(secret.clone(), WEBHOOK_FAILURES, stop_receiver).await?;
    let config = work.path().join("tidings.toml");
    std::fs::write(&config, config_file(&receiver.url, &secret))
        .context("cannot write the server's configuration")?;
    let command = ServerCommand {
        exe: std::env::current_exe().context("cannot find the tidings executable")?,
        data_dir: data_dir.clone(),
        config: config.clone(),
        log_file: work.path().join("server.log"),
        durability: args.durability.clone(),
    };
    let server = command.start().await?;
    let authenticator =
        crate::cli::token::running_server_authenticator(Some(&config), Some(data_dir.clone()))?;
    let run_id = crate::store::new_message_id();
    let world = World::new(shape(args), &run_id[run_id.len() - 8..], &authenticator);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()?;
    world.create(&client, &server.base).await?;
    let (base_tx, base_rx) = watch::channel(Some(server.base.clone()));
    let shared = Arc::new(Shared {
        client,
        base: base_rx,
        presence: Presence::new(world.user_ids.len()),
        ledger: Ledger::new(world.conversations.len()),
        world,
        load: load::LoadCounters::default(),
        sessions: sessions::SessionCounters::default(),
        inbox: receiver.inbox.clone(),
    });
    let admin = authenticator.issue(
        "soak-admin",
        None,
        &["admin".to_owned()],
        Duration::from_secs(7 * 24 * 3600),
    );
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let mut run = Run {
        args,
        shared: shared.clone(),
        command,
        base_tx,
        pid: Arc::new(AtomicU32::new(server.pid)),
        restarts: Arc::new(AtomicU64::new(0)),
        graceful: 0,
        killed: 0,
        unexpected_exits: 0,
        stop_failures: Vec::new(),
        started,
    };
    let outcome = run.under_load(server, &data_dir).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu_before;
    let (samples, ending) = outcome?;
    let (history, notifications, failure) = match ending {
        Ok(server) => run.finish(server, &admin).await,
        Err(e) => (
            verify::HistoryCheck {
                acked: shared.ledger.total.load(Ordering::Relaxed),
                ..verify::HistoryCheck::default()
            },
            Notifications {
                inbox: shared.inbox.counts(),
                ..Notifications::default()
            },
            Some(format!("{e:#}")),
        ),
    };
    let server_came_back = failure.is_none();
    let passed = server_came_back
        && run.stop_failures.is_empty()
        && history.lost == 0
        && history.duplicated == 0
        && history.seq_gaps == 0;
    Ok(BenchSoakReport {
        durability: args.durability.clone(),
        seconds,
        rate: args.rate,
        history,
        restarts: run.restarts.load(Ordering::Relaxed),
        graceful_restarts: run.graceful,
        killed_restarts: run.killed,
        unexpected_exits: run.unexpected_exits,
        server_came_back,
        failure,
        stop_failures: run.stop_failures.clone(),
        samples: samples.len(),
        closed_slow_by_server: samples.last().map_or(0, |s| s.closed_slow),
        csv: args.out.display().to_string(),
        load: shared.load.report(),
        sessions: shared.sessions.report(),
        notifications: Notifications {
            expected_approx: shared.load.notifications_expected.load(Ordering::Relaxed),
            ..notifications
        },
        flatness: samples::flatness(&samples),
        generator_cpu_cores: cpu / seconds.max(1e-3),
        passed,
    })
}

fn shape(args: &BenchSoakArgs) -> Shape {
    Shape {
        users: args.users,
        pairs: args.pairs,
        groups: args.groups,
        group_members: args.group_members,
        slow_users: if args.groups > 0 {
            args.slow_consumers
        } else {
            0
        },
    }
}

/// The server's configuration file: the webhook sink (fast retries, two attempts).
fn config_file(url: &str, secret: &str) -> String {
    format!(
        "[[notify.sinks]]\nname = \"soak\"\ntype = \"webhook\"\nurl = \"{url}\"\n\
         secret = \"{secret}\"\nmaxAttempts = {WEBHOOK_ATTEMPTS}\ntimeoutMs = 2000\n\
         backoffBaseMs = 50\nbackoffMaxMs = 500\n"
    )
}

/// The state of the run while the server comes and goes.
struct Run<'a> {
    args: &'a BenchSoakArgs,
    shared: Arc<Shared>,
    command: ServerCommand,
    base_tx: watch::Sender<Option<String>>,
    pid: Arc<AtomicU32>,
    restarts: Arc<AtomicU64>,
    graceful: u64,
    killed: u64,
    unexpected_exits: u64,
    /// Graceful stops that did not end in time (the process was killed and the run went on).
    stop_failures: Vec<String>,
    started: Instant,
}

/// The samples, and the server still running after the load (or why it is not).
type LoadOutcome = (Vec<samples::Sample>, anyhow::Result<RunningServer>);

impl Run<'_> {
    /// Starts the load, the clients and the sampler, restarts the server on schedule until
    /// `--duration` passed, then stops them all.
    async fn under_load(
        &mut self,
        server: RunningServer,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<LoadOutcome> {
        let stop = CancellationToken::new();
        let stop_sampler = CancellationToken::new();
        let plan = load::LoadPlan {
            rate: self.args.rate,
            size: self.args.size,
            group_share: self.args.group_share,
        };
        let load = tokio::spawn(load::run(self.shared.clone(), plan, stop.clone()));
        let clients = self.spawn_clients(&stop);
        let probe = samples::Probe {
            pid: self.pid.clone(),
            restarts: self.restarts.clone(),
            data_dir: data_dir.to_owned(),
        };
        let sampler = tokio::spawn(samples::run(
            self.shared.clone(),
            probe,
            self.args.sample_every,
            self.args.out.clone(),
            stop_sampler.clone(),
        ));
        let ending = self.restart_on_schedule(server).await;
        stop.cancel();
        load.await?;
        for client in clients {
            client.await?;
        }
        stop_sampler.cancel();
        let samples = sampler.await??;
        Ok((samples, ending))
    }

    fn spawn_clients(&self, stop: &CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        let timing = sessions::Timing {
            stay: (Duration::from_secs(5), Duration::from_secs(60)),
            offline: (Duration::from_secs(1), Duration::from_secs(20)),
        };
        // Slow consumers are users 0.. (members of every group); ordinary clients follow.
        let slow = shape(self.args).slow_users;
        (0..slow + self.args.sessions)
            .map(|user| {
                let client = sessions::Client {
                    shared: self.shared.clone(),
                    user,
                    slow: user < slow,
                    timing,
                    stop: stop.clone(),
                };
                tokio::spawn(client.run())
            })
            .collect()
    }

    /// Restarts every `--restart-every` until `--duration` passed; the server that runs at the
    /// end, or the error that left none running.
    async fn restart_on_schedule(
        &mut self,
        mut server: RunningServer,
    ) -> anyhow::Result<RunningServer> {
        let started = Instant::now();
        let deadline = started + self.args.duration;
        let mut next = started + self.args.restart_every;
        while next < deadline {
            tokio::time::sleep_until(next.into()).await;
            let how = if self.restarts.load(Ordering::Relaxed).is_multiple_of(2) {
                Stop::Graceful
            } else {
                Stop::Kill
            };
            server = self.restart(server, how).await?;
            next += self.args.restart_every;
        }
        tokio::time::sleep_until(deadline.into()).await;
        Ok(server)
    }

    /// Stops the server `how` and starts it again on the same data directory.
    async fn restart(
        &mut self,
        mut server: RunningServer,
        how: Stop,
    ) -> anyhow::Result<RunningServer> {
        if server.exited() {
            self.unexpected_exits += 1;
        }
        let stopped = server.stop(how).await;
        self.pid.store(0, Ordering::Relaxed);
        self.base_tx.send_replace(None);
        self.note_stop_failure(stopped);
        match how {
            Stop::Graceful => self.graceful += 1,
            Stop::Kill => self.killed += 1,
        }
        self.restarts.fetch_add(1, Ordering::Relaxed);
        let server = self
            .command
            .start()
            .await
            .context("the server did not come back")?;
        tracing::info!(?how, base = %server.base, "server restarted");
        self.pid.store(server.pid, Ordering::Relaxed);
        self.base_tx.send_replace(Some(server.base.clone()));
        Ok(server)
    }

    /// Records a stop that failed (the server is gone anyway: it was killed) and goes on, so the
    /// run still yields its curves and its history check.
    fn note_stop_failure(&mut self, stopped: anyhow::Result<()>) {
        if let Err(e) = stopped {
            let at = self.started.elapsed().as_secs();
            tracing::error!(error = %format!("{e:#}"), at, "graceful stop failed");
            self.stop_failures.push(format!("at {at} s: {e:#}"));
        }
    }

    /// Lets the webhook catch up, reads the notification topics, restarts the server once more
    /// (gracefully) and checks history on it; stops it at the end. A fatal failure (the server did
    /// not come back, history unreadable) is the third item.
    async fn finish(
        &mut self,
        server: RunningServer,
        admin: &str,
    ) -> (verify::HistoryCheck, Notifications, Option<String>) {
        let notifications = self.settle_notifications(&server.base, admin).await;
        let checked = async {
            let stopped = server.stop(Stop::Graceful).await;
            self.note_stop_failure(stopped);
            let server = self
                .command
                .start()
                .await
                .context("the server did not come back")?;
            let acked = self.shared.ledger.acknowledged();
            let history =
                verify::check_history(&self.shared.client, &server.base, &self.shared.world, acked)
                    .await;
            let stopped = server.stop(Stop::Graceful).await;
            self.note_stop_failure(stopped);
            history
        };
        match checked.await {
            Ok(history) => (history, notifications, None),
            Err(e) => (
                verify::HistoryCheck {
                    acked: self.shared.ledger.total.load(Ordering::Relaxed),
                    ..verify::HistoryCheck::default()
                },
                notifications,
                Some(format!("{e:#}")),
            ),
        }
    }

    /// Waits (at most [`NOTIFY_DRAIN`]) until every produced notification was delivered or
    /// dead-lettered, then counts.
    async fn settle_notifications(&self, base: &str, admin: &str) -> Notifications {
        let deadline = Instant::now() + NOTIFY_DRAIN;
        loop {
            let client = &self.shared.client;
            let produced = verify::topic_records(client, base, admin, "message.new").await;
            let dead = verify::topic_records(client, base, admin, "message.new.dlq").await;
            let inbox = self.shared.inbox.counts();
            let (produced, dead_lettered) = match (produced, dead) {
                (Ok(p), Ok(d)) => (p, d),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the notification topics");
                    (0, 0)
                }
            };
            if inbox.distinct_delivered + dead_lettered >= produced || Instant::now() >= deadline {
                return Notifications {
                    inbox,
                    expected_approx: 0,
                    produced,
                    dead_lettered,
                };
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_names_the_sink() {
        let toml = config_file("http://127.0.0.1:9/hook", "s3cret");
        let value: toml::Value = toml::from_str(&toml).unwrap();
        let sink = &value["notify"]["sinks"][0];
        assert_eq!(sink["url"].as_str(), Some("http://127.0.0.1:9/hook"));
        assert_eq!(sink["maxAttempts"].as_integer(), Some(2));
    }
}
