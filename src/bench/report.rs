//! What the load generators share: latency recording, progress display, and the options that
//! name the server under load and where its token secret is.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

/// A latency histogram in microseconds (1 µs .. 60 s, 3 significant digits).
#[derive(Debug, Clone)]
pub(crate) struct LatencyReport {
    histogram: Histogram<u64>,
}

impl Default for LatencyReport {
    fn default() -> Self {
        LatencyReport {
            histogram: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }
}

impl LatencyReport {
    /// Records one latency.
    pub(crate) fn record(&mut self, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, 60_000_000);
        self.histogram
            .record(micros)
            .expect("value clamped into the histogram's range");
    }

    /// Adds another report's samples.
    pub(crate) fn merge(&mut self, other: &LatencyReport) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms share bounds");
    }

    /// The latency at quantile `q` (0..=1), in microseconds.
    pub(crate) fn quantile_us(&self, q: f64) -> u64 {
        self.histogram.value_at_quantile(q)
    }

    /// Number of samples.
    pub(crate) fn count(&self) -> u64 {
        self.histogram.len()
    }
}

/// A progress bar on a terminal, nothing elsewhere.
pub(crate) fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("valid progress template")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// Moves `bar` to the seconds elapsed since now, four times a second, until the returned task is
/// aborted.
pub(crate) fn tick_seconds(bar: &ProgressBar) -> tokio::task::JoinHandle<()> {
    let bar = bar.clone();
    let started = std::time::Instant::now();
    tokio::spawn(async move {
        loop {
            bar.set_position(started.elapsed().as_secs());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// User + system CPU seconds of this process so far (Linux; 0 elsewhere).
pub(crate) fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident set size in KiB of process `pid`, or of this process (Linux; `None` elsewhere or
/// when the process is gone).
pub(crate) fn resident_kib(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident set size in MiB of process `pid` or of this process (0 when unknown).
pub(crate) fn resident_mib(pid: Option<u32>) -> f64 {
    resident_kib(pid).map_or(0.0, |kib| kib as f64 / 1024.0)
}

/// The server a generator loads, and where to find the secret its tokens are signed with.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServerArgs {
    /// Base URL of a running server.
    #[arg(long, default_value = "http://127.0.0.1:8787")]
    pub(crate) server: String,
    /// The server's data directory, whose secret.key signs the tokens [default: ./data].
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub(crate) data_dir: Option<PathBuf>,
    /// The server's configuration file (its auth.jwtSecret or dataDir gives the secret).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

impl ServerArgs {
    /// The base URL without a trailing slash.
    pub(crate) fn base(&self) -> String {
        self.server.trim_end_matches('/').to_owned()
    }

    /// The server's token authenticator (found as `tidings token` finds it).
    pub(crate) fn authenticator(&self) -> anyhow::Result<crate::auth::Authenticator> {
        crate::cli::token::server_authenticator(self.config.as_deref(), self.data_dir.clone())
    }
}

/// Runs `measure` on a multi-threaded runtime and prints its report: one JSON object with
/// `json`, else `summary`'s text.
pub(crate) fn run_and_print<R: serde::Serialize>(
    json: bool,
    measure: impl Future<Output = anyhow::Result<R>>,
    summary: impl FnOnce(&R),
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(measure)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        summary(&report);
    }
    Ok(())
}
