//! The soak's measurements over time: every `--sample-every` it reads the server's resident set
//! and open descriptors (from /proc), the data directory's size, and the load's progress, writes
//! them as one CSV row and prints a progress line on stderr. At the end it judges whether memory
//! and descriptors were flat once warm: the middle third of the run against the last third.
//!
//! It reads the server from outside like `ps` would; it does not talk to it.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::server::{disk_bytes, process_figures};
use super::Shared;

/// The CSV's first line.
const CSV_HEADER: &str = "elapsed_s,server_pid,rss_kib,fds,disk_bytes,acked,sends_per_s,\
                          sessions,notified,closed_slow,restarts";
/// The server's counter of sessions it closed with 4008.
const CLOSED_SLOW_METRIC: &str = "tidings_ws_sessions_closed_slow_total";

/// Growth under which a series counts as flat whatever its ratio (a small server's RSS moves by
/// a few MiB with its allocator's caches; descriptors by the sessions open at that moment).
const FLAT_RSS_GROWTH_KIB: f64 = 32.0 * 1024.0;
const FLAT_FD_GROWTH: f64 = 16.0;
/// Ratio of last third to middle third under which a series counts as flat.
const FLAT_RATIO: f64 = 1.2;

/// One row.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Sample {
    /// Seconds since the load started.
    pub(crate) elapsed_s: f64,
    /// The server's process id (0: restarting).
    pub(crate) server_pid: u32,
    /// Its resident set, KiB.
    pub(crate) rss_kib: Option<u64>,
    /// Its open descriptors.
    pub(crate) fds: Option<u64>,
    /// Bytes of the files in the data directory.
    pub(crate) disk_bytes: u64,
    /// Acknowledged sends so far.
    pub(crate) acked: u64,
    /// Acknowledged sends per second since the previous sample.
    pub(crate) sends_per_s: f64,
    /// The soak's sessions open now.
    pub(crate) sessions: u64,
    /// Webhook requests answered 200 so far.
    pub(crate) notified: u64,
    /// Sessions the server closed with 4008 so far, over every server process (as of each
    /// process's last sample).
    pub(crate) closed_slow: u64,
    /// Restarts so far.
    pub(crate) restarts: u64,
}

impl Sample {
    fn csv_row(&self) -> String {
        let opt = |v: Option<u64>| v.map_or_else(String::new, |v| v.to_string());
        format!(
            "{:.1},{},{},{},{},{},{:.1},{},{},{},{}",
            self.elapsed_s,
            self.server_pid,
            opt(self.rss_kib),
            opt(self.fds),
            self.disk_bytes,
            self.acked,
            self.sends_per_s,
            self.sessions,
            self.notified,
            self.closed_slow,
            self.restarts
        )
    }

    fn progress_line(&self) -> String {
        let mib = |kib: Option<u64>| {
            kib.map_or_else(|| "-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
        };
        format!(
            "[{:>6.0}s] rss {} MiB, fds {}, disk {:.1} MiB, acked {} ({:.0}/s), sessions {}, \
             notified {}, closed slow {}, restarts {}",
            self.elapsed_s,
            mib(self.rss_kib),
            self.fds.map_or_else(|| "-".into(), |f| f.to_string()),
            self.disk_bytes as f64 / (1024.0 * 1024.0),
            self.acked,
            self.sends_per_s,
            self.sessions,
            self.notified,
            self.closed_slow,
            self.restarts
        )
    }
}

/// Sums the server's 4008 counter over its processes (each restart starts it at 0 again).
#[derive(Debug, Default)]
struct SlowCloses {
    /// Counted by processes that have ended.
    ended: u64,
    pid: u32,
    /// The running process's last value.
    current: u64,
}

impl SlowCloses {
    fn observe(&mut self, pid: u32, value: Option<u64>) -> u64 {
        if pid != 0 && pid != self.pid {
            self.ended += self.current;
            self.pid = pid;
            self.current = 0;
        }
        if let Some(value) = value.filter(|_| pid != 0) {
            self.current = self.current.max(value);
        }
        self.ended + self.current
    }
}

/// The server's 4008 counter from `/metrics` (`None` when it cannot be read).
async fn read_closed_slow(shared: &Shared) -> Option<u64> {
    let base = shared.base.borrow().clone()?;
    let text = shared
        .client
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    parse_counter(&text, CLOSED_SLOW_METRIC)
}

/// The value of an unlabelled metric in Prometheus text.
fn parse_counter(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
}

/// What the sampler reads besides the shared state.
pub(crate) struct Probe {
    /// The running server's pid (0 while it restarts).
    pub(crate) pid: Arc<AtomicU32>,
    /// Restarts so far.
    pub(crate) restarts: Arc<AtomicU64>,
    /// The data directory.
    pub(crate) data_dir: PathBuf,
}

/// Samples every `every` until `stop`, writing rows to `out`; returns every sample.
pub(crate) async fn run(
    shared: Arc<Shared>,
    probe: Probe,
    every: Duration,
    out: PathBuf,
    stop: CancellationToken,
) -> anyhow::Result<Vec<Sample>> {
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&out).with_context(|| format!("cannot create {}", out.display()))?,
    );
    writeln!(file, "{CSV_HEADER}")?;
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut slow_closes = SlowCloses::default();
    let mut ticks = tokio::time::interval_at((started + every).into(), every);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let mut sample = take(&shared, &probe, started, samples.last());
        let closed_slow = read_closed_slow(&shared).await;
        sample.closed_slow = slow_closes.observe(sample.server_pid, closed_slow);
        writeln!(file, "{}", sample.csv_row())?;
        file.flush()?;
        eprintln!("{}", sample.progress_line());
        samples.push(sample);
    }
    Ok(samples)
}

fn take(shared: &Shared, probe: &Probe, started: Instant, previous: Option<&Sample>) -> Sample {
    let pid = probe.pid.load(Ordering::Relaxed);
    let (rss_kib, fds) = if pid == 0 {
        (None, None)
    } else {
        process_figures(pid)
    };
    let elapsed_s = started.elapsed().as_secs_f64();
    let acked = shared.ledger.total.load(Ordering::Relaxed);
    let (before_s, before_acked) = previous.map_or((0.0, 0), |p| (p.elapsed_s, p.acked));
    Sample {
        elapsed_s,
        server_pid: pid,
        rss_kib,
        fds,
        disk_bytes: disk_bytes(&probe.data_dir),
        acked,
        sends_per_s: (acked - before_acked) as f64 / (elapsed_s - before_s).max(1e-3),
        sessions: shared.presence.live.load(Ordering::Relaxed),
        notified: shared.inbox.accepted.load(Ordering::Relaxed),
        closed_slow: 0,
        restarts: probe.restarts.load(Ordering::Relaxed),
    }
}

/// Whether memory and descriptors stayed flat once warm.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Flatness {
    /// Median RSS of the middle third of the run, MiB.
    pub(crate) rss_middle_mib: Option<f64>,
    /// Median RSS of the last third, MiB.
    pub(crate) rss_last_mib: Option<f64>,
    /// Last / middle.
    pub(crate) rss_ratio: Option<f64>,
    /// Last − middle, MiB.
    pub(crate) rss_growth_mib: Option<f64>,
    /// Median open descriptors of the middle third.
    pub(crate) fds_middle: Option<f64>,
    /// Median open descriptors of the last third.
    pub(crate) fds_last: Option<f64>,
    /// Last / middle.
    pub(crate) fds_ratio: Option<f64>,
    /// Last − middle.
    pub(crate) fds_growth: Option<f64>,
    /// Growth of the data directory over the last two thirds (least squares), MiB per hour.
    pub(crate) disk_growth_mib_per_hour: Option<f64>,
    /// Disk growth per acknowledged send over the same span, bytes.
    pub(crate) disk_bytes_per_acked: Option<f64>,
    /// RSS and descriptors both flat: last third at most 1.2x the middle one, or grown by at
    /// most 32 MiB and 16 descriptors.
    pub(crate) flat: bool,
}

/// Compares the middle third of the samples with the last third.
pub(crate) fn flatness(samples: &[Sample]) -> Flatness {
    let Some(end) = samples.last().map(|s| s.elapsed_s) else {
        return Flatness::default();
    };
    let third = |s: &&Sample| ((s.elapsed_s / end) * 3.0).floor().min(2.0) as usize;
    let middle: Vec<&Sample> = samples.iter().filter(|s| third(s) == 1).collect();
    let last: Vec<&Sample> = samples.iter().filter(|s| third(s) == 2).collect();
    let rss = |part: &[&Sample]| median(part.iter().filter_map(|s| s.rss_kib).collect());
    let fds = |part: &[&Sample]| median(part.iter().filter_map(|s| s.fds).collect());
    let (rss_middle, rss_last) = (rss(&middle), rss(&last));
    let (fds_middle, fds_last) = (fds(&middle), fds(&last));
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b / a.max(1.0));
    let growth = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
    let flat_series = |r: Option<f64>, g: Option<f64>, floor: f64| {
        r.zip(g).is_some_and(|(r, g)| r <= FLAT_RATIO || g <= floor)
    };
    let warm: Vec<&Sample> = samples.iter().filter(|s| third(s) >= 1).collect();
    let disk_slope = slope(&warm, |s| s.disk_bytes as f64);
    let acked_slope = slope(&warm, |s| s.acked as f64);
    Flatness {
        rss_middle_mib: rss_middle.map(|k| k / 1024.0),
        rss_last_mib: rss_last.map(|k| k / 1024.0),
        rss_ratio: ratio(rss_middle, rss_last),
        rss_growth_mib: growth(rss_middle, rss_last).map(|k| k / 1024.0),
        fds_middle,
        fds_last,
        fds_ratio: ratio(fds_middle, fds_last),
        fds_growth: growth(fds_middle, fds_last),
        disk_growth_mib_per_hour: disk_slope.map(|b| b * 3600.0 / (1024.0 * 1024.0)),
        disk_bytes_per_acked: disk_slope
            .zip(acked_slope)
            .filter(|(_, a)| *a > 0.0)
            .map(|(d, a)| d / a),
        flat: flat_series(
            ratio(rss_middle, rss_last),
            growth(rss_middle, rss_last),
            FLAT_RSS_GROWTH_KIB,
        ) && flat_series(
            ratio(fds_middle, fds_last),
            growth(fds_middle, fds_last),
            FLAT_FD_GROWTH,
        ),
    }
}

fn median(mut values: Vec<u64>) -> Option<f64> {
    values.sort_unstable();
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2] as f64),
        _ => Some((values[n / 2 - 1] + values[n / 2]) as f64 / 2.0),
    }
}

/// Least-squares slope of `y` over elapsed seconds (per second).
fn slope(samples: &[&Sample], y: impl Fn(&Sample) -> f64) -> Option<f64> {
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return None;
    }
    let mean_x = samples.iter().map(|s| s.elapsed_s).sum::<f64>() / n;
    let mean_y = samples.iter().map(|s| y(s)).sum::<f64>() / n;
    let (mut covariance, mut variance) = (0.0, 0.0);
    for s in samples {
        covariance += (s.elapsed_s - mean_x) * (y(s) - mean_y);
        variance += (s.elapsed_s - mean_x).powi(2);
    }
    (variance > 0.0).then(|| covariance / variance)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, rss_mib: u64, fds: u64, disk: u64) -> Sample {
        Sample {
            elapsed_s: t,
            server_pid: 1,
            rss_kib: Some(rss_mib * 1024),
            fds: Some(fds),
            disk_bytes: disk,
            acked: t as u64 * 10,
            sends_per_s: 10.0,
            sessions: 0,
            notified: 0,
            closed_slow: 0,
            restarts: 0,
        }
    }

    #[test]
    fn slow_closes_add_up_over_restarts() {
        let mut closes = SlowCloses::default();
        assert_eq!(closes.observe(10, Some(2)), 2);
        assert_eq!(closes.observe(10, None), 2);
        assert_eq!(closes.observe(0, None), 2);
        assert_eq!(closes.observe(11, Some(1)), 3);
        let text = "# TYPE x counter\ntidings_ws_sessions_closed_slow_total 4\n";
        assert_eq!(parse_counter(text, CLOSED_SLOW_METRIC), Some(4));
        assert_eq!(parse_counter(text, "tidings_ws_sessions"), None);
    }

    #[test]
    fn a_steady_run_is_flat_and_a_leak_is_not() {
        let steady: Vec<Sample> = (1..=30)
            .map(|t| sample(t as f64, 100, 50, t * 1000))
            .collect();
        let verdict = flatness(&steady);
        assert!(verdict.flat);
        assert_eq!(verdict.rss_ratio, Some(1.0));
        let disk = verdict.disk_growth_mib_per_hour.unwrap();
        assert!((disk - 3600.0 * 1000.0 / 1048576.0).abs() < 1e-6);
        assert!((verdict.disk_bytes_per_acked.unwrap() - 100.0).abs() < 1e-6);

        let leaking: Vec<Sample> = (1..=30)
            .map(|t| sample(t as f64, 100 + t * 20, 50 + t * 5, 0))
            .collect();
        assert!(!flatness(&leaking).flat);
    }

    #[test]
    fn restarts_leave_gaps_that_do_not_count() {
        let mut samples: Vec<Sample> = (1..=9).map(|t| sample(t as f64, 100, 50, 0)).collect();
        samples[7].rss_kib = None;
        samples[7].fds = None;
        let verdict = flatness(&samples);
        assert!(verdict.flat);
        assert_eq!(verdict.fds_last, Some(50.0));
    }
}
