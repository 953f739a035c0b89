//! `tidings bench fanout`: real-time delivery measured end to end over real WebSockets.
//!
//! It mints tokens for `--connections` users (finding the server's secret as `tidings token`
//! does), creates `--conversations` conversations of `--members` members each (member j of
//! conversation i is user (i·M + j) mod N), opens one WebSocket session per user and waits until
//! each is ready: `/ws` sessions say `ready`, SignalR ones (`--protocol signalr`) finish their
//! handshake and join their user's conversations, Socket.IO ones (`--protocol socketio`, on
//! its WebSocket transport) get their CONNECT answered (`session_protocol.rs` speaks all
//! three). Then it sends `--rate` messages/s over HTTP from `--senders` keep-alive connections for `--duration`, each send from the next member of the next conversation.
//! Every session checks what it receives: per conversation, each message exactly once and in
//! `seq` order. After the last send it waits up to `--drain` for the deliveries still due and
//! reports deliveries/s, the send→delivered latency of every delivery (p50/p99/p999), and the
//! lost, duplicated and out-of-order deliveries, which must all be 0. With `--server-pid` it
//! also reports the server's resident memory per idle session (RSS before and after opening
//! the sessions).
//!
//! The send time travels in the message content (microseconds since the generator started, in
//! the first `STAMP_LEN` bytes), so measuring a delivery needs no lookup. Run the server with
//! `--rate-limit 0`: the generator's users send faster than people do.
//!
//! This module only drives a server from outside, like any client would; it knows nothing of
//! the hub's internals.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_util::sync::CancellationToken;

use super::report::{
    process_cpu_seconds, progress_bar, resident_mib, run_and_print, tick_seconds, LatencyReport,
    ServerArgs,
};
use super::session_protocol::{SessionProtocol, Socket};

/// Bytes of content that carry the send time (zero-padded decimal microseconds).
pub(crate) const STAMP_LEN: usize = 20;
/// Latency histograms the sessions spread over, so that they rarely wait for each other.
const LATENCY_SHARDS: usize = 16;
/// How long a session may take to connect and say `ready`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server's memory settles after the sessions opened before it is read.
const SETTLE: Duration = Duration::from_secs(2);

/// Options of `tidings bench fanout`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchFanoutArgs {
    /// The server and where its secret is.
    #[command(flatten)]
    pub(crate) target_server: ServerArgs,
    /// WebSocket sessions to open, one user each.
    #[arg(long, default_value_t = 1000)]
    pub(crate) connections: usize,
    /// Conversations to create.
    #[arg(long, default_value_t = 100)]
    pub(crate) conversations: usize,
    /// Members of each conversation (at most --connections).
    #[arg(long, default_value_t = 10)]
    pub(crate) members: usize,
    /// Total sends per second over HTTP (open loop).
    #[arg(long, default_value_t = 1000)]
    pub(crate) rate: u64,
    /// How long to send, e.g. 10s, 1m.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,
    /// HTTP keep-alive connections the sends spread over (one request in flight each).
    #[arg(long, default_value_t = 32)]
    pub(crate) senders: usize,
    /// Message content size in bytes (at least 20: the send time travels in it).
    #[arg(long, default_value_t = 100)]
    pub(crate) size: usize,
    /// How long to wait after the last send for deliveries still due, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) drain: Duration,
    /// Sessions being opened at once.
    #[arg(long, default_value_t = 200)]
    pub(crate) connect_concurrency: usize,
    /// A node of a cluster to spread the sessions and the senders over (repeat it for each
    /// node; user i's session and sender i go to node i mod nodes, so most deliveries cross
    /// nodes). The first node creates the conversations. Without it, everything goes to
    /// --server.
    #[arg(long = "node", value_name = "URL")]
    pub(crate) nodes: Vec<String>,
    /// The server's process id (same machine): report its memory per idle session.
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
    /// The protocol the sessions speak: `ws` (`/ws`), `signalr` (`/chathub`, each session
    /// joining its user's conversations) or `socketio` (`/socket.io/`, WebSocket transport).
    #[arg(long, value_enum, default_value_t = SessionProtocol::Ws)]
    pub(crate) protocol: SessionProtocol,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub(crate) json: bool,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BenchFanoutReport {
    /// The protocol of the sessions.
    pub(crate) protocol: SessionProtocol,
    /// Nodes the sessions and senders were spread over (1: one server).
    pub(crate) nodes: usize,
    /// Sessions asked for.
    pub(crate) connections: usize,
    /// Sessions that opened and said `ready`.
    pub(crate) sessions_held: usize,
    /// Sessions that could not open.
    pub(crate) connect_failures: usize,
    /// Conversations.
    pub(crate) conversations: usize,
    /// Members per conversation.
    pub(crate) members: usize,
    /// Target sends/s.
    pub(crate) rate: u64,
    /// Time to open every session, s.
    pub(crate) connect_seconds: f64,
    /// Time spent sending, s.
    pub(crate) send_seconds: f64,
    /// Sends answered 202.
    pub(crate) sends_accepted: u64,
    /// Sends/s answered 202.
    pub(crate) sends_per_sec: f64,
    /// Other answers to sends by status (0: transport error).
    pub(crate) send_errors: BTreeMap<u16, u64>,
    /// Deliveries due: every accepted send times its conversation's open sessions.
    pub(crate) deliveries_expected: u64,
    /// `message` frames received for the run's conversations (duplicates included).
    pub(crate) deliveries: u64,
    /// Deliveries per second, from the first send to the last delivery.
    pub(crate) deliveries_per_sec: f64,
    /// Send → delivered, µs (median over deliveries).
    pub(crate) p50_us: u64,
    /// 99th percentile, µs.
    pub(crate) p99_us: u64,
    /// 99.9th percentile, µs.
    pub(crate) p999_us: u64,
    /// Deliveries due that never arrived.
    pub(crate) lost: u64,
    /// Messages a session received more than once.
    pub(crate) duplicated: u64,
    /// Messages that arrived after a higher `seq` of the same conversation.
    pub(crate) out_of_order: u64,
    /// Sessions the server closed during the run, by close code (0: connection error).
    pub(crate) closed_by_server: BTreeMap<u16, u64>,
    /// Server RSS before the sessions opened, MiB (with `--server-pid`).
    pub(crate) server_rss_before_mib: Option<f64>,
    /// Server RSS with every session open and idle, MiB.
    pub(crate) server_rss_idle_mib: Option<f64>,
    /// Server RSS at the end of the run, MiB.
    pub(crate) server_rss_end_mib: Option<f64>,
    /// (idle − before) / sessions held, KiB.
    pub(crate) idle_session_kib: Option<f64>,
    /// CPU the generator used while sending, in cores.
    pub(crate) generator_cpu_cores: f64,
}

/// Users, tokens and conversations of one run.
struct Setup {
    /// Bearer tokens, by user index.
    tokens: Vec<String>,
    /// Conversation ids, by index.
    conversations: Vec<String>,
    /// Conversation index by id, for the sessions.
    index: HashMap<String, usize>,
    members: usize,
    users: usize,
}

impl Setup {
    /// The user index of member `j` of conversation `i`.
    fn member(&self, conversation: usize, j: usize) -> usize {
        (conversation * self.members + j) % self.users
    }

    /// The conversations user `u` is a member of.
    fn conversations_of(&self) -> Vec<Vec<usize>> {
        let mut of = vec![Vec::new(); self.users];
        for c in 0..self.conversations.len() {
            for j in 0..self.members {
                let user = self.member(c, j);
                if !of[user].contains(&c) {
                    of[user].push(c);
                }
            }
        }
        of
    }
}

/// Runs the generator and prints its report.
pub fn run(args: BenchFanoutArgs) -> anyhow::Result<()> {
    run_and_print(args.json, measure(&args), print_summary)
}

/// Sets up, opens the sessions, sends, drains and returns the report.
pub(crate) async fn measure(args: &BenchFanoutArgs) -> anyhow::Result<BenchFanoutReport> {
    check_args(args)?;
    raise_open_file_limit(args.connections + args.senders)?;
    let nodes = nodes(args);
    let setup = Arc::new(set_up(args, &nodes[0]).await?);
    let shared = Arc::new(Shared::new());
    let rss_before = args.server_pid.map(|pid| resident_mib(Some(pid)));
    let connecting = Instant::now();
    let (sessions, connect_failures) = open_sessions(args, &nodes, &setup, &shared).await?;
    let connect_seconds = connecting.elapsed().as_secs_f64();
    let held = sessions.len();
    let rss_idle = match args.server_pid {
        Some(pid) => {
            tokio::time::sleep(SETTLE).await;
            Some(resident_mib(Some(pid)))
        }
        None => None,
    };
    let cpu_before = process_cpu_seconds();
    let sending = Instant::now();
    let sent = send_phase(args, &nodes, &setup, &shared).await?;
    let send_seconds = sending.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu_before;
    let members_online = count_open_members(&setup, &sessions);
    let expected: u64 = sent
        .accepted
        .iter()
        .zip(&members_online)
        .map(|(accepted, online)| accepted.load(Ordering::Relaxed) * *online as u64)
        .sum();
    drain(args, &shared, expected).await;
    shared.stop.cancel();
    let checked = check_deliveries(&setup, sessions, &sent).await;
    let accepted: u64 = sent
        .accepted
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum();
    let latencies = shared.merged_latencies();
    let deliveries = shared.delivered.load(Ordering::Relaxed);
    let active_us = shared
        .last_delivery_us
        .load(Ordering::Relaxed)
        .saturating_sub(sent.first_send_us);
    Ok(BenchFanoutReport {
        protocol: args.protocol,
        nodes: nodes.len(),
        connections: args.connections,
        sessions_held: held,
        connect_failures,
        conversations: args.conversations,
        members: args.members,
        rate: args.rate,
        connect_seconds,
        send_seconds,
        sends_accepted: accepted,
        sends_per_sec: accepted as f64 / send_seconds,
        send_errors: sent.errors,
        deliveries_expected: expected,
        deliveries,
        deliveries_per_sec: deliveries as f64 / (active_us.max(1) as f64 / 1e6),
        p50_us: latencies.quantile_us(0.5),
        p99_us: latencies.quantile_us(0.99),
        p999_us: latencies.quantile_us(0.999),
        lost: checked.lost,
        duplicated: checked.duplicated,
        out_of_order: checked.out_of_order,
        closed_by_server: checked.closed,
        server_rss_before_mib: rss_before,
        server_rss_idle_mib: rss_idle,
        server_rss_end_mib: args.server_pid.map(|pid| resident_mib(Some(pid))),
        idle_session_kib: rss_before
            .zip(rss_idle)
            .filter(|_| held > 0)
            .map(|(before, idle)| (idle - before) * 1024.0 / held as f64),
        generator_cpu_cores: cpu / send_seconds,
    })
}

fn check_args(args: &BenchFanoutArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.connections >= 2 && args.conversations >= 1 && args.senders >= 1,
        "need at least 2 connections, 1 conversation and 1 sender"
    );
    anyhow::ensure!(
        (2..=args.connections).contains(&args.members),
        "--members must be between 2 and --connections ({})",
        args.connections
    );
    anyhow::ensure!(args.rate >= 1, "--rate must be at least 1");
    anyhow::ensure!(
        args.size >= STAMP_LEN,
        "--size must be at least {STAMP_LEN} bytes: the send time travels in the content"
    );
    Ok(())
}

/// The base URLs sessions and senders go to: the `--node`s, or `--server` alone.
fn nodes(args: &BenchFanoutArgs) -> Vec<String> {
    if args.nodes.is_empty() {
        return vec![args.target_server.base()];
    }
    args.nodes
        .iter()
        .map(|node| node.trim_end_matches('/').to_owned())
        .collect()
}

/// Raises this process's open-file limit to fit `descriptors` sockets, or says why it cannot.
fn raise_open_file_limit(descriptors: usize) -> anyhow::Result<()> {
    let limit = rlimit::increase_nofile_limit(u64::MAX).context("cannot read RLIMIT_NOFILE")?;
    let needed = descriptors as u64 + 64;
    anyhow::ensure!(
        limit >= needed,
        "the open-file limit is {limit}, {needed} are needed; raise it (ulimit -n) or open \
         fewer connections"
    );
    Ok(())
}

/// Mints the tokens and creates the conversations (fresh ids per run).
async fn set_up(args: &BenchFanoutArgs, server: &str) -> anyhow::Result<Setup> {
    let authenticator = args.target_server.authenticator()?;
    let run_id = crate::store::new_message_id();
    let run = &run_id[run_id.len() - 8..];
    let tokens: Vec<String> = (0..args.connections)
        .map(|i| {
            authenticator.issue(
                &format!("fan-{run}-{i}"),
                None,
                &[],
                Duration::from_secs(24 * 3600),
            )
        })
        .collect();
    let mut setup = Setup {
        tokens,
        conversations: (0..args.conversations)
            .map(|i| format!("fan-{run}-{i}"))
            .collect(),
        index: HashMap::new(),
        members: args.members,
        users: args.connections,
    };
    setup.index = setup
        .conversations
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), i))
        .collect();
    let client = reqwest::Client::new();
    for (c, id) in setup.conversations.iter().enumerate() {
        let others: Vec<String> = (1..args.members)
            .map(|j| format!("fan-{run}-{}", setup.member(c, j)))
            .collect();
        let response = client
            .post(format!("{server}/api/conversations"))
            .bearer_auth(&setup.tokens[setup.member(c, 0)])
            .json(&json!({"id": id, "participants": others}))
            .send()
            .await
            .with_context(|| format!("cannot reach {server}"))?;
        anyhow::ensure!(
            response.status() == 201,
            "creating conversation {id}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(setup)
}

/// What the sessions share: the run's clock, delivery counters and latency histograms.
struct Shared {
    base: Instant,
    delivered: AtomicU64,
    last_delivery_us: AtomicU64,
    latencies: Vec<Mutex<LatencyReport>>,
    stop: CancellationToken,
}

impl Shared {
    fn new() -> Self {
        Shared {
            base: Instant::now(),
            delivered: AtomicU64::new(0),
            last_delivery_us: AtomicU64::new(0),
            latencies: (0..LATENCY_SHARDS)
                .map(|_| Mutex::new(LatencyReport::default()))
                .collect(),
            stop: CancellationToken::new(),
        }
    }

    fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }

    fn record_delivery(&self, shard: usize, sent_us: u64) {
        let now = self.now_us();
        self.latencies[shard % LATENCY_SHARDS]
            .lock()
            .record(Duration::from_micros(now.saturating_sub(sent_us)));
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.last_delivery_us.fetch_max(now, Ordering::Relaxed);
    }

    fn merged_latencies(&self) -> LatencyReport {
        let mut merged = LatencyReport::default();
        for shard in &self.latencies {
            merged.merge(&shard.lock());
        }
        merged
    }
}

/// A session's reading task and the user it belongs to.
struct OpenSession {
    user: usize,
    task: tokio::task::JoinHandle<SessionOutcome>,
}

/// Opens one session per user, at most `--connect-concurrency` at a time; returns the open
/// ones (each already reading) and how many failed.
async fn open_sessions(
    args: &BenchFanoutArgs,
    nodes: &[String],
    setup: &Arc<Setup>,
    shared: &Arc<Shared>,
) -> anyhow::Result<(Vec<OpenSession>, usize)> {
    let ws_bases = nodes
        .iter()
        .map(|node| websocket_url(node))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let permits = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let bar = progress_bar(args.connections as u64, "sessions");
    let mut connecting = JoinSet::new();
    let protocol = args.protocol;
    let conversations_of = setup.conversations_of();
    for (user, conversations) in conversations_of.into_iter().enumerate() {
        let url = protocol.url(&ws_bases[user % ws_bases.len()], &setup.tokens[user]);
        let ids: Vec<String> = conversations
            .iter()
            .map(|&c| setup.conversations[c].clone())
            .collect();
        let permits = permits.clone();
        connecting.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            (user, protocol.connect(&url, &ids, CONNECT_TIMEOUT).await)
        });
    }
    let mut sessions = Vec::with_capacity(args.connections);
    let mut failures = 0;
    let mut first_error = None;
    while let Some(joined) = connecting.join_next().await {
        let (user, connected) = joined?;
        bar.inc(1);
        match connected {
            Ok(socket) => {
                let reader = SessionReader {
                    protocol,
                    shard: user,
                    setup: setup.clone(),
                    shared: shared.clone(),
                };
                sessions.push(OpenSession {
                    user,
                    task: tokio::spawn(reader.run(socket)),
                });
            }
            Err(e) => {
                failures += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    bar.finish_and_clear();
    if let Some(e) = first_error {
        tracing::warn!(failures, error = %e, "some sessions did not open");
    }
    anyhow::ensure!(!sessions.is_empty(), "no session opened");
    Ok((sessions, failures))
}

/// `http://host:port` → `ws://host:port`.
fn websocket_url(server: &str) -> anyhow::Result<String> {
    if let Some(rest) = server.strip_prefix("http://") {
        return Ok(format!("ws://{rest}"));
    }
    anyhow::bail!("--server must be an http:// URL, got {server:?}")
}

/// What one session received of one conversation.
#[derive(Debug, Default)]
struct Received {
    seqs: HashSet<u64>,
    highest: u64,
    duplicated: u64,
    out_of_order: u64,
}

impl Received {
    fn note(&mut self, seq: u64) {
        if !self.seqs.insert(seq) {
            self.duplicated += 1;
        } else if seq < self.highest {
            self.out_of_order += 1;
        }
        self.highest = self.highest.max(seq);
    }
}

/// How a session ended and what it received, by conversation index.
#[derive(Debug, Default)]
struct SessionOutcome {
    received: HashMap<usize, Received>,
    /// Close code if the server (not the generator) ended the session; 0: connection error.
    closed_by_server: Option<u16>,
}

struct SessionReader {
    protocol: SessionProtocol,
    shard: usize,
    setup: Arc<Setup>,
    shared: Arc<Shared>,
}

impl SessionReader {
    /// Reads frames until the generator stops or the server closes the session.
    async fn run(self, mut socket: Socket) -> SessionOutcome {
        let mut outcome = SessionOutcome::default();
        // SignalR sessions must speak every 15 s or the server drops them; `/ws` needs nothing.
        let keep_alive = self.protocol.keep_alive();
        let every = keep_alive
            .as_ref()
            .map_or(Duration::from_secs(3600), |(every, _)| *every);
        let mut keep_alive_due =
            tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                biased;
                () = self.shared.stop.cancelled() => {
                    let _ = socket.close(None).await;
                    break;
                }
                _ = keep_alive_due.tick(), if keep_alive.is_some() => {
                    let Some((_, ping)) = &keep_alive else { continue };
                    if socket.send(ping.clone()).await.is_err() {
                        outcome.closed_by_server = Some(0);
                        break;
                    }
                }
                frame = socket.next() => match frame {
                    Some(Ok(Frame::Text(text))) => self.on_text(text.as_str(), &mut outcome),
                    Some(Ok(Frame::Close(close))) => {
                        outcome.closed_by_server = Some(close.map_or(1005, |c| c.code.into()));
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        outcome.closed_by_server = Some(0);
                        break;
                    }
                },
            }
        }
        outcome
    }

    fn on_text(&self, text: &str, outcome: &mut SessionOutcome) {
        for message in self.protocol.delivered(text) {
            let Some(&conversation) = self.setup.index.get(message.conversation_id.as_ref()) else {
                continue;
            };
            if let Some(sent_us) = parse_stamp(&message.content) {
                self.shared.record_delivery(self.shard, sent_us);
            }
            outcome
                .received
                .entry(conversation)
                .or_default()
                .note(message.seq);
        }
    }
}

/// The send time at the start of a generated content.
fn parse_stamp(content: &str) -> Option<u64> {
    content.get(..STAMP_LEN)?.parse().ok()
}

/// A content of `size` bytes stamped with `sent_us`.
fn stamped_content(sent_us: u64, size: usize) -> String {
    let mut content = format!("{sent_us:0width$}", width = STAMP_LEN);
    content.extend(std::iter::repeat_n('x', size.saturating_sub(STAMP_LEN)));
    content
}

/// What the send phase did.
struct Sent {
    /// Sends answered 202, by conversation index.
    accepted: Vec<AtomicU64>,
    errors: BTreeMap<u16, u64>,
    first_send_us: u64,
}

/// Sends at `--rate` for `--duration` from `--senders` connections.
async fn send_phase(
    args: &BenchFanoutArgs,
    nodes: &[String],
    setup: &Arc<Setup>,
    shared: &Arc<Shared>,
) -> anyhow::Result<Sent> {
    let accepted: Arc<Vec<AtomicU64>> = Arc::new(
        (0..setup.conversations.len())
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let first_send_us = shared.now_us();
    let deadline = Instant::now() + args.duration;
    let bar = progress_bar(args.duration.as_secs().max(1), "seconds");
    let mut senders = JoinSet::new();
    for index in 0..args.senders {
        let plan = SenderPlan {
            server: nodes[index % nodes.len()].clone(),
            setup: setup.clone(),
            shared: shared.clone(),
            accepted: accepted.clone(),
            index,
            senders: args.senders,
            rate: args.rate as f64 / args.senders as f64,
            size: args.size,
            deadline,
        };
        senders.spawn(plan.run());
    }
    let ticker = tick_seconds(&bar);
    let mut errors = BTreeMap::new();
    while let Some(joined) = senders.join_next().await {
        for (status, n) in joined?? {
            *errors.entry(status).or_default() += n;
        }
    }
    ticker.abort();
    bar.finish_and_clear();
    let accepted = Arc::try_unwrap(accepted)
        .map_err(|_| anyhow::anyhow!("a sender outlived the send phase"))?;
    Ok(Sent {
        accepted,
        errors,
        first_send_us,
    })
}

/// One HTTP connection's sends.
struct SenderPlan {
    server: String,
    setup: Arc<Setup>,
    shared: Arc<Shared>,
    accepted: Arc<Vec<AtomicU64>>,
    index: usize,
    senders: usize,
    rate: f64,
    size: usize,
    deadline: Instant,
}

impl SenderPlan {
    /// Sends on schedule until the deadline; returns failed sends by status.
    async fn run(self) -> anyhow::Result<BTreeMap<u16, u64>> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        let mut errors = BTreeMap::new();
        let started = Instant::now();
        let mut n = 0u64;
        while Instant::now() < self.deadline {
            let due = started + Duration::from_secs_f64(n as f64 / self.rate);
            tokio::time::sleep_until(due.into()).await;
            let turn = self.index + n as usize * self.senders;
            let conversation = turn % self.setup.conversations.len();
            let member = (turn / self.setup.conversations.len()) % self.setup.members;
            match self.send(&client, conversation, member).await {
                Ok(()) => {
                    self.accepted[conversation].fetch_add(1, Ordering::Relaxed);
                }
                Err(status) => *errors.entry(status).or_default() += 1,
            }
            n += 1;
        }
        Ok(errors)
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        conversation: usize,
        member: usize,
    ) -> Result<(), u16> {
        let user = self.setup.member(conversation, member);
        let content = stamped_content(self.shared.now_us(), self.size);
        let response = client
            .post(format!(
                "{}/api/conversations/{}/messages",
                self.server, self.setup.conversations[conversation]
            ))
            .bearer_auth(&self.setup.tokens[user])
            .json(&json!({ "content": content }))
            .send()
            .await
            .map_err(|_| 0u16)?;
        match response.status().as_u16() {
            202 => Ok(()),
            status => Err(status),
        }
    }
}

/// Open sessions per conversation (one session per user).
fn count_open_members(setup: &Setup, sessions: &[OpenSession]) -> Vec<usize> {
    let of = setup.conversations_of();
    let mut online = vec![0; setup.conversations.len()];
    for session in sessions {
        for &c in &of[session.user] {
            online[c] += 1;
        }
    }
    online
}

/// Waits until `expected` deliveries arrived or `--drain` passed.
async fn drain(args: &BenchFanoutArgs, shared: &Shared, expected: u64) {
    let deadline = Instant::now() + args.drain;
    while shared.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lost, duplicated and reordered deliveries over all sessions, and how sessions ended.
#[derive(Debug, Default)]
struct Checked {
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    closed: BTreeMap<u16, u64>,
}

/// Stops every session and compares what each received with what was accepted.
async fn check_deliveries(setup: &Setup, sessions: Vec<OpenSession>, sent: &Sent) -> Checked {
    let of = setup.conversations_of();
    let mut checked = Checked::default();
    for session in sessions {
        let outcome = session.task.await.unwrap_or_default();
        if let Some(code) = outcome.closed_by_server {
            *checked.closed.entry(code).or_default() += 1;
        }
        for &c in &of[session.user] {
            let accepted = sent.accepted[c].load(Ordering::Relaxed);
            let received = outcome.received.get(&c);
            let distinct = received.map_or(0, |r| r.seqs.len() as u64);
            checked.lost += accepted.saturating_sub(distinct);
        }
        for received in outcome.received.values() {
            checked.duplicated += received.duplicated;
            checked.out_of_order += received.out_of_order;
        }
    }
    checked
}

fn print_summary(r: &BenchFanoutReport) {
    println!(
        "fanout bench ({:?} sessions on {} node(s)): {} of {} held ({} failed, opened in \
         {:.1} s), {} conversations x {} members",
        r.protocol,
        r.nodes,
        r.sessions_held,
        r.connections,
        r.connect_failures,
        r.connect_seconds,
        r.conversations,
        r.members
    );
    println!(
        "  sends: {:.0}/s of {}/s target ({} accepted in {:.1} s), errors {:?}",
        r.sends_per_sec, r.rate, r.sends_accepted, r.send_seconds, r.send_errors
    );
    println!(
        "  deliveries: {} of {} due, {:.0}/s",
        r.deliveries, r.deliveries_expected, r.deliveries_per_sec
    );
    println!(
        "  send -> delivered: p50 {} us, p99 {} us, p999 {} us",
        r.p50_us, r.p99_us, r.p999_us
    );
    println!(
        "  lost {}, duplicated {}, out of order {}; closed by the server {:?}",
        r.lost, r.duplicated, r.out_of_order, r.closed_by_server
    );
    if let (Some(before), Some(idle), Some(per)) = (
        r.server_rss_before_mib,
        r.server_rss_idle_mib,
        r.idle_session_kib,
    ) {
        println!(
            "  server RSS: {before:.0} MiB before, {idle:.0} MiB with sessions idle \
             ({per:.1} KiB per session), {:.0} MiB at the end",
            r.server_rss_end_mib.unwrap_or(0.0)
        );
    }
    println!("  generator CPU: {:.2} cores", r.generator_cpu_cores);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_time_travels_in_the_content() {
        let content = stamped_content(1_234_567, 100);
        assert_eq!(content.len(), 100);
        assert_eq!(parse_stamp(&content), Some(1_234_567));
        assert_eq!(parse_stamp("short"), None);
    }

    #[test]
    fn duplicates_and_reordering_are_counted() {
        let mut received = Received::default();
        for seq in [1, 2, 2, 4, 3] {
            received.note(seq);
        }
        assert_eq!(received.seqs.len(), 4);
        assert_eq!(received.duplicated, 1);
        assert_eq!(received.out_of_order, 1);
    }

    #[test]
    fn members_wrap_around_the_users() {
        let setup = Setup {
            tokens: vec![String::new(); 5],
            conversations: vec!["a".into(), "b".into()],
            index: HashMap::new(),
            members: 3,
            users: 5,
        };
        assert_eq!(setup.member(1, 0), 3);
        assert_eq!(setup.member(1, 2), 0);
        let of = setup.conversations_of();
        assert_eq!(of[0], vec![0, 1]);
        assert_eq!(of[4], vec![1]);
    }

    #[test]
    fn only_plain_http_servers_are_accepted() {
        assert_eq!(
            websocket_url("http://127.0.0.1:8787").unwrap(),
            "ws://127.0.0.1:8787"
        );
        assert!(websocket_url("https://example.org").is_err());
    }
}
