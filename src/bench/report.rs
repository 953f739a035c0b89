//! Latency recording and progress display shared by the load generators.

use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

/// A latency histogram in microseconds (1 µs .. 60 s, 3 significant digits).
#[derive(Debug, Clone)]
pub struct LatencyReport {
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
    pub fn record(&mut self, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, 60_000_000);
        self.histogram
            .record(micros)
            .expect("value clamped into the histogram's range");
    }

    /// Adds another report's samples.
    pub fn merge(&mut self, other: &LatencyReport) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms share bounds");
    }

    /// The latency at quantile `q` (0..=1), in microseconds.
    pub fn quantile_us(&self, q: f64) -> u64 {
        self.histogram.value_at_quantile(q)
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
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
