//! `tidings bench send`: a load generator for the chat service over real HTTP.
//!
//! It mints its users' tokens with the server's secret (found as `tidings token` finds it),
//! creates two-member conversations, then sends from `--senders` keep-alive HTTP/1.1
//! connections (one request in flight each) for `--duration`, either as fast as the server
//! answers or at a fixed total `--rate`. It reports sends/s, the 202 latency, and — for one send
//! in `--sample-every` — the time from the 202 to the message being readable by id, plus the
//! generator's own CPU use (it shares the machine with the server). `--target healthz` runs the
//! same loop against `GET /healthz`, the reference the send rate is compared with.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use super::report::{
    process_cpu_seconds, progress_bar, run_and_print, tick_seconds, LatencyReport, ServerArgs,
};

/// What each sender's loop requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Target {
    /// `POST /api/conversations/{id}/messages`.
    Send,
    /// `GET /healthz`: the server's floor, for the ratio.
    Healthz,
}

/// Options of `tidings bench send`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchSendArgs {
    /// The server and where its secret is (`--server`, `--data-dir`, `--config`).
    #[command(flatten)]
    pub(crate) target_server: ServerArgs,
    /// Users to create tokens for.
    #[arg(long, default_value_t = 100)]
    pub(crate) users: usize,
    /// Two-member conversations to create.
    #[arg(long, default_value_t = 50)]
    pub(crate) conversations: usize,
    /// Concurrent keep-alive connections, one request in flight each.
    #[arg(long, default_value_t = 64)]
    pub(crate) senders: usize,
    /// How long to send, e.g. 10s, 1m.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,
    /// Total target rate in requests/s (open loop); unset: as fast as the server answers.
    #[arg(long)]
    pub(crate) rate: Option<u64>,
    /// Message content size in bytes.
    #[arg(long, default_value_t = 200)]
    pub(crate) size: usize,
    /// Measure 202 → readable for one send in this many.
    #[arg(long, default_value_t = 50)]
    pub(crate) sample_every: u64,
    /// What to request.
    #[arg(long, value_enum, default_value = "send")]
    pub(crate) target: Target,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub(crate) json: bool,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BenchSendReport {
    /// What was requested.
    pub(crate) target: Target,
    /// Connections.
    pub(crate) senders: usize,
    /// Target rate, if any.
    pub(crate) rate: Option<u64>,
    /// Wall time of the sending phase.
    pub(crate) seconds: f64,
    /// Successful answers (202 for sends, 200 for healthz).
    pub(crate) ok: u64,
    /// Successful answers per second.
    pub(crate) ok_per_sec: f64,
    /// Other answers by status (0: transport error).
    pub(crate) errors: BTreeMap<u16, u64>,
    /// Latency of successful answers, µs.
    pub(crate) p50_us: u64,
    /// 99th percentile, µs.
    pub(crate) p99_us: u64,
    /// 99.9th percentile, µs.
    pub(crate) p999_us: u64,
    /// Sampled sends whose message became readable.
    pub(crate) readable_samples: u64,
    /// Sampled sends not readable within 5 s.
    pub(crate) readable_timeouts: u64,
    /// 202 → readable by id, µs (median).
    pub(crate) readable_p50_us: Option<u64>,
    /// 202 → readable by id, µs (99th percentile).
    pub(crate) readable_p99_us: Option<u64>,
    /// CPU the generator used, in cores (user + system time / wall time).
    pub(crate) generator_cpu_cores: f64,
}

/// A user the generator acts as.
struct User {
    id: String,
    bearer: String,
}

/// A conversation and its two members (indexes into the users).
struct Conversation {
    id: String,
    members: [usize; 2],
}

struct Setup {
    users: Vec<User>,
    conversations: Vec<Conversation>,
}

/// Runs the generator and prints its report.
pub fn run(args: BenchSendArgs) -> anyhow::Result<()> {
    run_and_print(args.json, measure(&args), print_summary)
}

/// Sets up users and conversations, runs the load, returns the report.
pub(crate) async fn measure(args: &BenchSendArgs) -> anyhow::Result<BenchSendReport> {
    anyhow::ensure!(
        args.users >= 2 && args.conversations >= 1 && args.senders >= 1,
        "need at least 2 users, 1 conversation and 1 sender"
    );
    let server = args.target_server.base();
    let setup = Arc::new(set_up(args, &server).await?);
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let outcome = load(args, &server, setup).await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu_before;
    Ok(outcome.into_report(args, seconds, cpu))
}

async fn set_up(args: &BenchSendArgs, server: &str) -> anyhow::Result<Setup> {
    let authenticator = args.target_server.authenticator()?;
    let run_id = crate::store::new_message_id();
    let users: Vec<User> = (0..args.users)
        .map(|i| {
            let id = format!("bench-{i}");
            let token = authenticator.issue(&id, None, &[], Duration::from_secs(24 * 3600));
            User {
                id,
                bearer: format!("Bearer {token}"),
            }
        })
        .collect();
    let mut conversations = Vec::with_capacity(args.conversations);
    if args.target == Target::Send {
        let client = reqwest::Client::new();
        for i in 0..args.conversations {
            let members = [i % users.len(), (i + 1) % users.len()];
            let id = format!("bench-{run_id}-{i}");
            let response = client
                .post(format!("{server}/api/conversations"))
                .header("authorization", &users[members[0]].bearer)
                .json(&json!({"id": id, "participants": [users[members[1]].id]}))
                .send()
                .await
                .with_context(|| format!("cannot reach {server}"))?;
            anyhow::ensure!(
                response.status() == 201,
                "creating a conversation: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
            conversations.push(Conversation { id, members });
        }
    }
    Ok(Setup {
        users,
        conversations,
    })
}

/// Everything the senders observed.
#[derive(Default)]
struct Outcome {
    latencies: LatencyReport,
    readable: LatencyReport,
    readable_timeouts: u64,
    errors: BTreeMap<u16, u64>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.latencies.merge(&other.latencies);
        self.readable.merge(&other.readable);
        self.readable_timeouts += other.readable_timeouts;
        for (status, n) in other.errors {
            *self.errors.entry(status).or_default() += n;
        }
    }

    fn into_report(self, args: &BenchSendArgs, seconds: f64, cpu_seconds: f64) -> BenchSendReport {
        let ok = self.latencies.count();
        let sampled = self.readable.count();
        BenchSendReport {
            target: args.target,
            senders: args.senders,
            rate: args.rate,
            seconds,
            ok,
            ok_per_sec: ok as f64 / seconds,
            errors: self.errors,
            p50_us: self.latencies.quantile_us(0.5),
            p99_us: self.latencies.quantile_us(0.99),
            p999_us: self.latencies.quantile_us(0.999),
            readable_samples: sampled,
            readable_timeouts: self.readable_timeouts,
            readable_p50_us: (sampled > 0).then(|| self.readable.quantile_us(0.5)),
            readable_p99_us: (sampled > 0).then(|| self.readable.quantile_us(0.99)),
            generator_cpu_cores: cpu_seconds / seconds,
        }
    }
}

async fn load(args: &BenchSendArgs, server: &str, setup: Arc<Setup>) -> anyhow::Result<Outcome> {
    let deadline = Instant::now() + args.duration;
    let counter = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(args.duration.as_secs().max(1), "seconds");
    let per_sender_rate = args.rate.map(|r| r as f64 / args.senders as f64);
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..args.senders {
        let plan = SenderPlan {
            server: server.to_owned(),
            setup: setup.clone(),
            index: sender,
            senders: args.senders,
            target: args.target,
            content: "x".repeat(args.size),
            sample_every: args.sample_every.max(1),
            rate: per_sender_rate,
            deadline,
            counter: counter.clone(),
        };
        senders.spawn(plan.run());
    }
    let ticker = tick_seconds(&bar);
    let mut outcome = Outcome::default();
    while let Some(result) = senders.join_next().await {
        outcome.merge(result??);
    }
    ticker.abort();
    bar.finish_and_clear();
    Ok(outcome)
}

/// One connection's work.
struct SenderPlan {
    server: String,
    setup: Arc<Setup>,
    index: usize,
    senders: usize,
    target: Target,
    content: String,
    sample_every: u64,
    rate: Option<f64>,
    deadline: Instant,
    counter: Arc<AtomicU64>,
}

impl SenderPlan {
    async fn run(self) -> anyhow::Result<Outcome> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        let mut outcome = Outcome::default();
        let mut checks = tokio::task::JoinSet::new();
        let started = Instant::now();
        let mut sent = 0u64;
        while Instant::now() < self.deadline {
            if let Some(rate) = self.rate {
                tokio::time::sleep_until(
                    (started + Duration::from_secs_f64(sent as f64 / rate)).into(),
                )
                .await;
            }
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let request_started = Instant::now();
            match self.request(&client, sent).await {
                Ok(readable_check) => {
                    let answered = Instant::now();
                    outcome.latencies.record(answered - request_started);
                    if let Some(check) =
                        readable_check.filter(|_| n.is_multiple_of(self.sample_every))
                    {
                        checks.spawn(wait_readable(client.clone(), check, answered));
                    }
                }
                Err(status) => *outcome.errors.entry(status).or_default() += 1,
            }
            sent += 1;
        }
        while let Some(result) = checks.join_next().await {
            match result? {
                Some(elapsed) => outcome.readable.record(elapsed),
                None => outcome.readable_timeouts += 1,
            }
        }
        Ok(outcome)
    }

    /// One request; on success, what to poll to see the message readable (sends only).
    async fn request(
        &self,
        client: &reqwest::Client,
        sent: u64,
    ) -> Result<Option<ReadableCheck>, u16> {
        if self.target == Target::Healthz {
            let response = client
                .get(format!("{}/healthz", self.server))
                .send()
                .await
                .map_err(|_| 0u16)?;
            return if response.status() == 200 {
                Ok(None)
            } else {
                Err(response.status().as_u16())
            };
        }
        let conversations = &self.setup.conversations;
        let conversation =
            &conversations[(self.index + sent as usize * self.senders) % conversations.len()];
        let user = &self.setup.users[conversation.members[(sent % 2) as usize]];
        let response = client
            .post(format!(
                "{}/api/conversations/{}/messages",
                self.server, conversation.id
            ))
            .header("authorization", &user.bearer)
            .json(&json!({"content": self.content}))
            .send()
            .await
            .map_err(|_| 0u16)?;
        if response.status() != 202 {
            return Err(response.status().as_u16());
        }
        let body: serde_json::Value = response.json().await.map_err(|_| 0u16)?;
        let id = body["id"].as_str().ok_or(0u16)?.to_owned();
        Ok(Some(ReadableCheck {
            url: format!(
                "{}/api/conversations/{}/messages/{id}",
                self.server, conversation.id
            ),
            bearer: user.bearer.clone(),
        }))
    }
}

struct ReadableCheck {
    url: String,
    bearer: String,
}

/// Polls the message by id every millisecond; the time from the 202 until it answers 200, or
/// `None` after 5 s.
async fn wait_readable(
    client: reqwest::Client,
    check: ReadableCheck,
    accepted: Instant,
) -> Option<Duration> {
    while accepted.elapsed() < Duration::from_secs(5) {
        let response = client
            .get(&check.url)
            .header("authorization", &check.bearer)
            .send()
            .await;
        if response.is_ok_and(|r| r.status() == 200) {
            return Some(accepted.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

fn print_summary(r: &BenchSendReport) {
    let what = match r.target {
        Target::Send => "sends (202)",
        Target::Healthz => "GET /healthz (200)",
    };
    println!(
        "send bench: {} connections, {:.1} s, target {what}",
        r.senders, r.seconds
    );
    println!(
        "  {:.0}/s ({} in all), errors {:?}",
        r.ok_per_sec, r.ok, r.errors
    );
    println!(
        "  latency p50 {} us, p99 {} us, p999 {} us",
        r.p50_us, r.p99_us, r.p999_us
    );
    if let (Some(p50), Some(p99)) = (r.readable_p50_us, r.readable_p99_us) {
        println!(
            "  202 -> readable: p50 {p50} us, p99 {p99} us ({} samples, {} timeouts)",
            r.readable_samples, r.readable_timeouts
        );
    }
    println!("  generator CPU: {:.2} cores", r.generator_cpu_cores);
}
