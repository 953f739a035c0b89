//! Row 3: end-to-end chat delivery. `--pairs` receivers each hold a WebSocket open in their own
//! conversation (or room); `--senders` connections send to them round-robin (sender j to pair
//! j mod pairs); latency is send start → the receiver's `message` frame. Every send waits for
//! its acknowledgement before the next (one in flight per sender, as in row 1), so the senders
//! can keep at most `senders / ack latency` messages/s going: enough of them that the server,
//! not the generator's concurrency, is what a sweep finds the limit of. Rates
//! are swept upwards; a rate is *sustained* when the senders kept up (≥ 95 % of it), every send
//! was delivered, none failed, and the delivery p99 stayed under `--max-p99-ms`.
//!
//! The two sides: Tidings (HTTP send or `/ws` `send` frame → `/ws` `message` frame) in
//! [`tidings`], and a Socket.IO
//! server relaying through Redis Streams in [`socketio`]. Both use this same sender loop, the
//! same WebSocket library (tokio-tungstenite) and the same histograms. Starting the servers is
//! the run script's job.

mod socketio;
mod tidings;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::cpu::{CpuClock, CpuUse};
use crate::load::{new_histogram, record, Latency};
use crate::tidings::ServerArgs;

/// The systems a chat driver exists for.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// Tidings: HTTP send, `/ws` delivery.
    Tidings,
    /// Tidings: `/ws` `send` frame (the sender's own session), `/ws` delivery.
    TidingsWs,
    /// Tidings: Socket.IO `send` event (the sender's own socket), Socket.IO delivery.
    TidingsSocketio,
    /// The Socket.IO relay of `benches/peers/socketio/server.js`.
    Socketio,
    /// The same relay with each sender in a room of its own with its pair's receiver, so that
    /// the sender's socket gets each message it sends too (as Tidings' `/ws` and Socket.IO
    /// senders do): two deliveries per message.
    SocketioEcho,
}

/// Options of `peers chat`.
#[derive(Args, Debug)]
pub struct ChatArgs {
    /// Which system to load.
    #[arg(long, value_enum)]
    pub system: System,
    /// The server (its base URL is `http://127.0.0.1:PORT`).
    #[command(flatten)]
    pub server: ServerArgs,
    /// Receivers, one conversation or room each (with its own sender user on Tidings).
    #[arg(long, default_value_t = 64)]
    pub pairs: usize,
    /// Sending connections, one send in flight each; sender j sends to pair j mod pairs.
    #[arg(long, default_value_t = 256)]
    pub senders: usize,
    /// Total send rates to try, in messages/s, ascending.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,4000")]
    pub rates: Vec<u32>,
    /// Seconds at each rate.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of sending at the first rate before the sweep, not counted (connections,
    /// caches and the JIT of a Node server warm up).
    #[arg(long, default_value_t = 2.0)]
    pub warmup_seconds: f64,
    /// Message content bytes.
    #[arg(long, default_value_t = 200)]
    pub size: usize,
    /// A rate whose delivery p99 exceeds this is not sustained.
    #[arg(long, default_value_t = 100)]
    pub max_p99_ms: u64,
    /// Keep sweeping after the first rate that is not sustained.
    #[arg(long)]
    pub keep_going: bool,
}

/// One sender's connection: sends a message and resolves once the server acknowledged it.
pub trait ChatSender: Send + 'static {
    /// Sends `content`; resolves after the acknowledgement (HTTP 202 / Socket.IO ack).
    fn send(&mut self, content: String) -> impl Future<Output = Result<()>> + Send;
}

/// Runs the sweep and returns its JSON report.
pub async fn run(args: &ChatArgs) -> Result<serde_json::Value> {
    // One histogram per rate, and a last one for the warm-up.
    let deliveries = Deliveries::new(args.rates.len() + 1);
    let report = match args.system {
        System::Tidings => {
            let senders = tidings::connect(args, &deliveries).await?;
            sweep(args, senders, &deliveries).await?
        }
        System::TidingsWs => {
            let senders = tidings::connect_ws(args, &deliveries).await?;
            sweep(args, senders, &deliveries).await?
        }
        System::TidingsSocketio => {
            let senders = tidings::connect_socketio(args, &deliveries).await?;
            sweep(args, senders, &deliveries).await?
        }
        System::Socketio => {
            sweep(
                args,
                socketio::connect(args, &deliveries, false).await?,
                &deliveries,
            )
            .await?
        }
        System::SocketioEcho => {
            sweep(
                args,
                socketio::connect(args, &deliveries, true).await?,
                &deliveries,
            )
            .await?
        }
    };
    Ok(serde_json::to_value(report)?)
}

/// What the sweep measured.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SweepReport {
    pairs: usize,
    senders: usize,
    size: usize,
    seconds_per_rate: f64,
    max_p99_ms: u64,
    steps: Vec<StepReport>,
    /// The highest rate tried that was sustained (`None` when not even the first was).
    max_sustained_rate: Option<u32>,
}

/// One rate of the sweep.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StepReport {
    rate: u32,
    sent: u64,
    sent_per_sec: f64,
    delivered: u64,
    errors: u64,
    first_error: Option<String>,
    /// Send → delivered.
    delivery: Option<Latency>,
    /// Send → acknowledged.
    ack: Latency,
    sustained: bool,
    #[serde(flatten)]
    cpu: CpuUse,
}

async fn sweep<S: ChatSender>(
    args: &ChatArgs,
    mut senders: Vec<S>,
    deliveries: &Arc<Deliveries>,
) -> Result<SweepReport> {
    let first_rate = *args.rates.first().context("--rates names no rate")?;
    let warmup = Duration::from_secs_f64(args.warmup_seconds);
    let warmup_step = args.rates.len();
    (_, senders) = run_step(args, senders, deliveries, warmup_step, first_rate, warmup).await?;
    let duration = Duration::from_secs_f64(args.seconds);
    let mut steps = Vec::new();
    for (step, &rate) in args.rates.iter().enumerate() {
        let (report, returned) = run_step(args, senders, deliveries, step, rate, duration).await?;
        senders = returned;
        let sustained = report.sustained;
        steps.push(report);
        if !sustained && !args.keep_going {
            break;
        }
    }
    let max_sustained_rate = steps
        .iter()
        .take_while(|s| s.sustained)
        .map(|s| s.rate)
        .last();
    Ok(SweepReport {
        pairs: args.pairs,
        senders: args.senders,
        size: args.size,
        seconds_per_rate: args.seconds,
        max_p99_ms: args.max_p99_ms,
        steps,
        max_sustained_rate,
    })
}

/// How long deliveries may trail the last send of a step before the rest count as lost.
const DRAIN: Duration = Duration::from_secs(5);

async fn run_step<S: ChatSender>(
    args: &ChatArgs,
    senders: Vec<S>,
    deliveries: &Arc<Deliveries>,
    step: usize,
    rate: u32,
    duration: Duration,
) -> Result<(StepReport, Vec<S>)> {
    let interval = Duration::from_secs_f64(senders.len() as f64 / f64::from(rate));
    let clock = CpuClock::start(&args.server.server_pids);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (i, sender) in senders.into_iter().enumerate() {
        // Stagger the senders so the total rate is even, not 64 sends at each tick.
        let first = started + interval.mul_f64(i as f64 / args.senders as f64);
        let plan = SendPlan {
            step,
            first,
            interval,
            end: started + duration,
            size: args.size,
            epoch: deliveries.epoch,
        };
        tasks.spawn(send_on_schedule(sender, plan));
    }
    let mut senders = Vec::new();
    let mut tally = SenderTally::default();
    while let Some(joined) = tasks.join_next().await {
        let (sender, one) = joined?;
        senders.push(sender);
        tally.merge(one)?;
    }
    let sent_seconds = started.elapsed().as_secs_f64();
    deliveries.wait_for(step, tally.sent, DRAIN).await;
    let cpu = clock.stop();
    let (delivered, delivery) = deliveries.take(step);
    let delivery = (!delivery.is_empty()).then(|| Latency::of(&delivery));
    let sent_per_sec = tally.sent as f64 / sent_seconds;
    let sustained = sent_per_sec >= 0.95 * f64::from(rate)
        && delivered == tally.sent
        && tally.errors == 0
        && delivery.is_some_and(|d| d.p99_us <= args.max_p99_ms * 1000);
    let report = StepReport {
        rate,
        sent: tally.sent,
        sent_per_sec,
        delivered,
        errors: tally.errors,
        first_error: tally.first_error,
        delivery,
        ack: Latency::of(&tally.ack),
        sustained,
        cpu,
    };
    Ok((report, senders))
}

/// When one sender sends during a step.
struct SendPlan {
    step: usize,
    first: Instant,
    interval: Duration,
    end: Instant,
    size: usize,
    epoch: Instant,
}

struct SenderTally {
    sent: u64,
    errors: u64,
    first_error: Option<String>,
    ack: Histogram<u64>,
}

impl Default for SenderTally {
    fn default() -> Self {
        SenderTally {
            sent: 0,
            errors: 0,
            first_error: None,
            ack: new_histogram(),
        }
    }
}

impl SenderTally {
    fn merge(&mut self, other: SenderTally) -> Result<()> {
        self.sent += other.sent;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.ack.add(&other.ack)?;
        Ok(())
    }
}

/// Sends on the plan's schedule; a sender that falls behind sends at once (its ack is the limit).
async fn send_on_schedule<S: ChatSender>(mut sender: S, plan: SendPlan) -> (S, SenderTally) {
    let mut tally = SenderTally::default();
    let mut next = plan.first;
    while next < plan.end {
        tokio::time::sleep_until(next.into()).await;
        let sent = Instant::now();
        let content = stamped_content(plan.step, sent - plan.epoch, plan.size);
        match sender.send(content).await {
            Ok(()) => {
                tally.sent += 1;
                record(&mut tally.ack, sent.elapsed());
            }
            Err(error) => {
                tally.errors += 1;
                tally
                    .first_error
                    .get_or_insert_with(|| format!("{error:#}"));
            }
        }
        next += plan.interval;
    }
    (sender, tally)
}

/// Content of `size` bytes starting with the step and the send time, which the receiver reads
/// back: `"{step} {nanos since epoch} xxxx…"`.
fn stamped_content(step: usize, since_epoch: Duration, size: usize) -> String {
    let mut content = format!("{step} {} ", since_epoch.as_nanos());
    let padding = size.saturating_sub(content.len());
    content.extend(std::iter::repeat_n('x', padding));
    content
}

/// Every receiver's delivery latencies, per step of the sweep.
pub struct Deliveries {
    epoch: Instant,
    steps: Mutex<Vec<(u64, Histogram<u64>)>>,
}

impl Deliveries {
    fn new(steps: usize) -> Arc<Self> {
        Arc::new(Deliveries {
            epoch: Instant::now(),
            steps: Mutex::new((0..steps).map(|_| (0, new_histogram())).collect()),
        })
    }

    /// Records the delivery of a message whose content [`stamped_content`] made.
    pub fn delivered(&self, content: &str) -> Result<()> {
        let received = self.epoch.elapsed();
        let mut fields = content.split(' ');
        let (Some(step), Some(nanos)) = (fields.next(), fields.next()) else {
            bail!("a delivered message without a send stamp: {content:.40}");
        };
        let step: usize = step.parse()?;
        let sent = Duration::from_nanos(nanos.parse()?);
        let mut steps = self
            .steps
            .lock()
            .expect("no receiver panics while holding the lock");
        let Some((count, histogram)) = steps.get_mut(step) else {
            bail!("a delivered message of unknown step {step}");
        };
        *count += 1;
        record(histogram, received.saturating_sub(sent));
        Ok(())
    }

    fn count(&self, step: usize) -> u64 {
        self.steps
            .lock()
            .expect("no receiver panics while holding the lock")[step]
            .0
    }

    /// Waits until `step` has `expected` deliveries, or `limit` passed.
    async fn wait_for(&self, step: usize, expected: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.count(step) < expected && Instant::now() < deadline {
            // Polling keeps the receivers' path to one lock; the drain is not timed.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn take(&self, step: usize) -> (u64, Histogram<u64>) {
        let mut steps = self
            .steps
            .lock()
            .expect("no receiver panics while holding the lock");
        std::mem::replace(&mut steps[step], (0, new_histogram()))
    }
}
