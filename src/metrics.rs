//! Prometheus metrics of one server: a registry per server, rendered as text format 0.0.4.
//!
//! Two kinds of metric end up on `GET /metrics`:
//! - **pushed** ones, recorded as things happen through [`Metrics::record`] (the `metrics` crate's
//!   macros, aimed at this server's own `PrometheusRecorder`), such as the HTTP latency
//!   histogram;
//! - **collected** ones, read at scrape time from a component's counters, such as the log's
//!   [`LogStats`] ([`render_log_stats`]). Their values are exact (counters may be fractional) and
//!   they need no bookkeeping between scrapes.
//!
//! Each server owns its recorder instead of installing one globally, so that several servers in
//! one process (the tests, an embedder) never mix their numbers. Components that record get a
//! [`Metrics`] clone; a bare `metrics::counter!` outside [`Metrics::record`] goes nowhere.
//!
//! This module knows nothing of HTTP routing: the request-timing layer and the `/metrics` handler
//! live in `api::metrics`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use metrics::Histogram;
use parking_lot::RwLock;

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::hub::HubStats;
use crate::log::{LogStats, PartitionLag};

/// Name of the HTTP request latency histogram (labels `method`, `route`, `status`).
pub(crate) const HTTP_REQUEST_DURATION: &str = "tidings_http_request_duration_seconds";

/// Name of the counter of notifications a sink finished (labels `sink`, `outcome` =
/// `delivered` | `dead`).
pub(crate) const NOTIFY_DELIVERIES: &str = "tidings_notify_deliveries_total";

/// Upper bounds of the HTTP latency buckets, in seconds.
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The Prometheus content type of the text exposition format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One server's metric registry; cheap to clone.
#[derive(Clone)]
pub(crate) struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    http: Arc<HttpSeries>,
}

/// The HTTP latency histogram of each route, method and status seen so far, so that a request
/// records into its series without building and hashing its labels again (allocation-free
/// once seen). As bounded as the series: routes are patterns, methods and statuses few.
#[derive(Default)]
struct HttpSeries(RwLock<HashMap<Box<str>, Vec<MethodStatus>>>);

/// One series of a route: its method, its status and its histogram.
type MethodStatus = (Box<str>, u16, Histogram);

impl HttpSeries {
    fn find(&self, method: &str, route: &str, status: u16) -> Option<Histogram> {
        let series = self.0.read();
        let of_route = series.get(route)?;
        of_route
            .iter()
            .find(|(m, s, _)| &**m == method && *s == status)
            .map(|(_, _, histogram)| histogram.clone())
    }

    fn keep(&self, method: &str, route: &str, status: u16, histogram: Histogram) {
        let mut series = self.0.write();
        let of_route = series.entry(route.into()).or_default();
        if !of_route
            .iter()
            .any(|(m, s, _)| &**m == method && *s == status)
        {
            of_route.push((method.into(), status, histogram));
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with the pushed metrics described.
    pub(crate) fn new() -> Metrics {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_REQUEST_DURATION.into()), HTTP_BUCKETS)
            .expect("the HTTP bucket list is a non-empty constant");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let metrics = Metrics {
            recorder: Arc::new(recorder),
            handle,
            http: Arc::default(),
        };
        metrics.record(|| {
            metrics::describe_histogram!(
                HTTP_REQUEST_DURATION,
                metrics::Unit::Seconds,
                "Time from receiving an HTTP request to its response head, per route and status."
            );
            metrics::describe_counter!(
                NOTIFY_DELIVERIES,
                "Notifications each sink finished: delivered, or dead (sent to message.new.dlq)."
            );
        });
        metrics
    }

    /// Runs `f` with this registry as the target of the `metrics` macros on this thread.
    pub(crate) fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(self.recorder.as_ref(), f)
    }

    /// Records one HTTP request's latency. `route` is the matched route pattern, never the raw
    /// path, so the number of series stays bounded.
    pub(crate) fn observe_http(&self, method: &str, route: &str, status: u16, seconds: f64) {
        if let Some(histogram) = self.http.find(method, route, status) {
            histogram.record(seconds);
            return;
        }
        let histogram = self.record(|| {
            metrics::histogram!(
                HTTP_REQUEST_DURATION,
                "method" => method.to_owned(),
                "route" => route.to_owned(),
                "status" => status.to_string(),
            )
        });
        histogram.record(seconds);
        self.http.keep(method, route, status, histogram);
    }

    /// Counts one notification that sink `sink` finished with `outcome` (`delivered` or
    /// `dead`). Sinks are configured, so the number of series stays bounded.
    pub(crate) fn count_notification(&self, sink: &str, outcome: &'static str) {
        self.record(|| {
            metrics::counter!(NOTIFY_DELIVERIES, "sink" => sink.to_owned(), "outcome" => outcome)
                .increment(1);
        });
    }

    /// The pushed metrics in text format.
    pub(crate) fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds buffered histogram samples into their buckets. Rendering does this too; a periodic
    /// call keeps memory bounded when nobody scrapes.
    pub(crate) fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// Appends the log's counters to `out` in text format.
pub(crate) fn render_log_stats(out: &mut String, stats: &LogStats) {
    let group_size = if stats.groups == 0 {
        0.0
    } else {
        stats.records as f64 / stats.groups as f64
    };
    let rows: [(&str, &str, &str, f64); 9] = [
        (
            "tidings_log_appends_total",
            "counter",
            "Append calls the log completed (acknowledged) since it was opened.",
            stats.append_requests as f64,
        ),
        (
            "tidings_log_records_total",
            "counter",
            "Records appended since the log was opened.",
            stats.records as f64,
        ),
        (
            "tidings_log_bytes_total",
            "counter",
            "Encoded record-batch bytes written since the log was opened.",
            stats.bytes as f64,
        ),
        (
            "tidings_log_batches_total",
            "counter",
            "Record batches written (one storage-engine insert each).",
            stats.batches as f64,
        ),
        (
            "tidings_log_groups_total",
            "counter",
            "Group commits: each gathers every append waiting at that moment.",
            stats.groups as f64,
        ),
        (
            "tidings_log_syncs_total",
            "counter",
            "Flush + fdatasync rounds issued by the log.",
            stats.syncs as f64,
        ),
        (
            "tidings_log_sync_seconds_total",
            "counter",
            "Time spent in flush + fdatasync rounds.",
            stats.sync_nanos as f64 / 1e9,
        ),
        (
            "tidings_log_group_size",
            "gauge",
            "Mean records per group commit since the log was opened.",
            group_size,
        ),
        (
            "tidings_log_cached_bytes",
            "gauge",
            "Bytes of records a cluster node keeps in memory to answer reads (cluster.replicaCacheBytes per partition); 0 on the embedded log.",
            stats.cached_bytes as f64,
        ),
    ];
    write_samples(out, &rows);
}

/// Writes one unlabelled sample per row: (name, type, help, value).
fn write_samples(out: &mut String, rows: &[(&str, &str, &str, f64)]) {
    for (name, kind, help, value) in rows {
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
}

/// Appends the hub's session gauge and counters to `out` in text format. Live delivery follows
/// the store writers, so what the sessions are behind is the lag of group `store` on `messages`
/// ([`render_consumer_lag`]).
pub(crate) fn render_hub_stats(out: &mut String, stats: &HubStats) {
    let rows: [(&str, &str, &str, f64); 5] = [
        (
            "tidings_ws_sessions",
            "gauge",
            "WebSocket sessions open now.",
            stats.sessions as f64,
        ),
        (
            "tidings_ws_sessions_opened_total",
            "counter",
            "WebSocket sessions opened since start.",
            stats.opened as f64,
        ),
        (
            "tidings_ws_sessions_refused_total",
            "counter",
            "WebSocket upgrades refused by the session limits (503 or 429).",
            stats.refused as f64,
        ),
        (
            "tidings_ws_sessions_closed_slow_total",
            "counter",
            "WebSocket sessions closed with 4008 because their outbound queue was full.",
            stats.closed_slow as f64,
        ),
        (
            "tidings_ws_deliveries_total",
            "counter",
            "Frames queued to WebSocket sessions (messages, receipts, presence, typing, replies).",
            stats.deliveries as f64,
        ),
    ];
    write_samples(out, &rows);
}

/// One consumer group's position on one partition.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerLag {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Committed offset, watermarks and lag of the partition.
    pub lag: PartitionLag,
}

/// Appends `tidings_consumer_lag{group,topic,partition}` (records the group has yet to read)
/// and `tidings_consumer_committed_offset{…}` to `out`.
pub(crate) fn render_consumer_lag(out: &mut String, lags: &[ConsumerLag]) {
    let _ = write!(
        out,
        "# HELP tidings_consumer_lag Records a consumer group has yet to read on a partition.\n\
         # TYPE tidings_consumer_lag gauge\n"
    );
    for l in lags {
        let _ = writeln!(
            out,
            "tidings_consumer_lag{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
            l.group, l.topic, l.lag.partition, l.lag.lag
        );
    }
    let _ = write!(
        out,
        "# HELP tidings_consumer_committed_offset Next offset a consumer group will read.\n\
         # TYPE tidings_consumer_committed_offset gauge\n"
    );
    for l in lags.iter().filter(|l| l.lag.committed.is_some()) {
        let _ = writeln!(
            out,
            "tidings_consumer_committed_offset{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
            l.group,
            l.topic,
            l.lag.partition,
            l.lag.committed.unwrap_or_default()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_lag_renders_one_sample_per_partition() {
        let lag = |partition, committed, lag| ConsumerLag {
            group: "store".into(),
            topic: "messages".into(),
            lag: PartitionLag {
                partition,
                committed,
                low: 0,
                high: 10,
                lag,
            },
        };
        let mut text = String::new();
        render_consumer_lag(&mut text, &[lag(0, Some(7), 3), lag(1, None, 10)]);
        assert!(text.contains(
            "tidings_consumer_lag{group=\"store\",topic=\"messages\",partition=\"0\"} 3\n"
        ));
        assert!(text.contains(
            "tidings_consumer_lag{group=\"store\",topic=\"messages\",partition=\"1\"} 10\n"
        ));
        assert!(text.contains("tidings_consumer_committed_offset{group=\"store\",topic=\"messages\",partition=\"0\"} 7\n"));
        assert!(!text.contains(
            "tidings_consumer_committed_offset{group=\"store\",topic=\"messages\",partition=\"1\"}"
        ));
    }

    #[test]
    fn http_latency_renders_as_a_histogram_with_route_labels() {
        let metrics = Metrics::new();
        metrics.observe_http("GET", "/healthz", 200, 0.002);
        let text = metrics.render();
        assert!(
            text.contains("# TYPE tidings_http_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(text.contains("route=\"/healthz\""), "{text}");
        assert!(
            text.contains("tidings_http_request_duration_seconds_count"),
            "{text}"
        );
    }

    #[test]
    fn repeated_observations_land_in_their_own_series() {
        let metrics = Metrics::new();
        for _ in 0..3 {
            metrics.observe_http("POST", "/api/topics/{name}/records", 202, 0.001);
        }
        metrics.observe_http("POST", "/api/topics/{name}/records", 404, 0.001);
        metrics.observe_http("GET", "/api/topics/{name}/records", 202, 0.001);
        let text = metrics.render();
        let count = |labels: &str| {
            let name = format!("tidings_http_request_duration_seconds_count{{{labels}}} ");
            let line = text.lines().find(|line| line.starts_with(&name));
            line.unwrap_or_else(|| panic!("{name} in {text}"))[name.len()..].to_owned()
        };
        let route = "route=\"/api/topics/{name}/records\"";
        assert_eq!(
            count(&format!("method=\"POST\",{route},status=\"202\"")),
            "3"
        );
        assert_eq!(
            count(&format!("method=\"POST\",{route},status=\"404\"")),
            "1"
        );
        assert_eq!(
            count(&format!("method=\"GET\",{route},status=\"202\"")),
            "1"
        );
    }

    #[test]
    fn two_registries_do_not_share_values() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.observe_http("GET", "/only-a", 200, 0.1);
        assert!(a.render().contains("/only-a"));
        assert!(!b.render().contains("/only-a"));
    }

    #[test]
    fn hub_stats_render_the_session_gauge_and_counters() {
        let stats = HubStats {
            sessions: 3,
            closed_slow: 1,
            deliveries: 42,
            ..HubStats::default()
        };
        let mut out = String::new();
        render_hub_stats(&mut out, &stats);
        assert!(
            out.contains("# TYPE tidings_ws_sessions gauge\ntidings_ws_sessions 3\n"),
            "{out}"
        );
        assert!(out.contains("tidings_ws_sessions_closed_slow_total 1\n"));
        assert!(out.contains("tidings_ws_deliveries_total 42\n"));
    }

    #[test]
    fn log_stats_render_with_types_and_mean_group_size() {
        let stats = LogStats {
            append_requests: 4,
            records: 10,
            groups: 4,
            syncs: 4,
            sync_nanos: 1_500_000_000,
            cached_bytes: 4096,
            ..LogStats::default()
        };
        let mut out = String::new();
        render_log_stats(&mut out, &stats);
        assert!(
            out.contains("# TYPE tidings_log_appends_total counter\ntidings_log_appends_total 4\n")
        );
        assert!(
            out.contains("tidings_log_sync_seconds_total 1.5\n"),
            "{out}"
        );
        assert!(out.contains("tidings_log_group_size 2.5\n"), "{out}");
        assert!(
            out.contains("# TYPE tidings_log_cached_bytes gauge\ntidings_log_cached_bytes 4096\n"),
            "{out}"
        );
    }
}
