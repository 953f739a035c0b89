//! The soak's report: what one run found (one JSON object with `--json`) and its printed
//! summary. It computes nothing; [`super`] fills it in.

use serde::Serialize;

use super::{load, receiver, samples, sessions, verify};

/// What one run found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BenchSoakReport {
    /// The server's durability mode.
    pub(crate) durability: String,
    /// Wall time of the load, s.
    pub(crate) seconds: f64,
    /// Target writes/s.
    pub(crate) rate: u64,
    /// The history check (acked, found, lost, duplicated, seq gaps …).
    #[serde(flatten)]
    pub(crate) history: verify::HistoryCheck,
    /// Restarts during the load (the final one not counted).
    pub(crate) restarts: u64,
    /// Of which graceful (SIGTERM).
    pub(crate) graceful_restarts: u64,
    /// Of which SIGKILL.
    pub(crate) killed_restarts: u64,
    /// Times the server had ended by itself when a restart came.
    pub(crate) unexpected_exits: u64,
    /// Whether the server came back after every stop (restarts and the final one).
    pub(crate) server_came_back: bool,
    /// Why it did not, if it did not (the run ended there).
    pub(crate) failure: Option<String>,
    /// Graceful stops (SIGTERM) that did not end with exit 0 within 60 s; the soak then killed
    /// the server and went on. Each fails the run.
    pub(crate) stop_failures: Vec<String>,
    /// Samples written to the CSV.
    pub(crate) samples: usize,
    /// Sessions the server closed with 4008 (slow consumers), from its metrics.
    pub(crate) closed_slow_by_server: u64,
    /// The CSV file.
    pub(crate) csv: String,
    /// The HTTP load.
    pub(crate) load: load::LoadReport,
    /// The WebSocket clients.
    pub(crate) sessions: sessions::SessionReport,
    /// Notifications: the webhook's counts and the server's topics.
    pub(crate) notifications: Notifications,
    /// Memory, descriptors and disk over time.
    pub(crate) flatness: samples::Flatness,
    /// CPU the generator used, in cores.
    pub(crate) generator_cpu_cores: f64,
    /// Passed: nothing lost or duplicated, history dense, the server always came back.
    pub(crate) passed: bool,
}

/// Notifications, received against expected (not required to match: sessions open and close
/// around the moment the server decides who is offline).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Notifications {
    /// The webhook receiver's counts.
    #[serde(flatten)]
    pub(crate) inbox: receiver::InboxCounts,
    /// Due by the soak's own view of who was offline at each 202.
    pub(crate) expected_approx: u64,
    /// Records in `message.new` (what the server produced).
    pub(crate) produced: u64,
    /// Records in `message.new.dlq` (given up after both attempts failed).
    pub(crate) dead_lettered: u64,
}

pub(crate) fn print_summary(r: &BenchSoakReport) {
    println!(
        "soak: {:.0} s at {} writes/s, durability {}, {} restarts ({} graceful, {} killed), \
         {} samples in {}",
        r.seconds,
        r.rate,
        r.durability,
        r.restarts,
        r.graceful_restarts,
        r.killed_restarts,
        r.samples,
        r.csv
    );
    let h = &r.history;
    println!(
        "  acked {}, found {}, lost {}, duplicated {}, seq gaps {} ({} stored without a 202)",
        h.acked, h.found, h.lost, h.duplicated, h.seq_gaps, h.unacknowledged_stored
    );
    let l = &r.load;
    println!(
        "  edits {}, deletes {}, read marks {}, skipped {}, errors {:?}",
        l.edits, l.deletes, l.read_marks, l.skipped, l.errors
    );
    let s = &r.sessions;
    println!(
        "  sessions: {} opened ({} failed), {} clean and {} abrupt drops, {} resumes, closed by \
         the server {:?}; slow consumers: {} stalls, ended {:?}, {} closed with 4008 by the server; {} messages, {} gaps, {} \
         duplicates",
        s.connects, s.connect_failures, s.clean_drops, s.abrupt_drops, s.resumes, s.closed_by_server,
        s.slow_stalls, s.slow_closed, r.closed_slow_by_server, s.messages, s.gaps, s.duplicates
    );
    let n = &r.notifications;
    println!(
        "  notifications: {} produced, ~{} expected, {} delivered ({} requests, {} refused on \
         purpose, {} bad signatures), {} dead-lettered",
        n.produced,
        n.expected_approx,
        n.inbox.distinct_delivered,
        n.inbox.received,
        n.inbox.refused,
        n.inbox.bad_signatures,
        n.dead_lettered
    );
    let f = &r.flatness;
    let num = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1}"));
    println!(
        "  RSS {} -> {} MiB (x{}), fds {} -> {} (x{}), disk +{} MiB/h ({} B per acked): {}",
        num(f.rss_middle_mib),
        num(f.rss_last_mib),
        num(f.rss_ratio.map(|r| r * 10.0).map(|r| r.round() / 10.0)),
        num(f.fds_middle),
        num(f.fds_last),
        num(f.fds_ratio),
        num(f.disk_growth_mib_per_hour),
        num(f.disk_bytes_per_acked),
        if f.flat { "flat" } else { "NOT flat" }
    );
    for failure in &r.stop_failures {
        println!("  graceful stop failed {failure}");
    }
    if let Some(failure) = &r.failure {
        println!("  server failure: {failure}");
    }
    println!(
        "  generator CPU: {:.2} cores; {}",
        r.generator_cpu_cores,
        if r.passed { "PASSED" } else { "FAILED" }
    );
}
