//! `GET /metrics` and the edge stage that times every HTTP request.
//!
//! The scrape renders the server's registry ([`crate::metrics`]) followed by the values collected
//! at scrape time (the log's counters, the hub's sessions and deliveries, consumer lag). The latency stage labels each observation with the
//! matched route pattern (`/api/conversations/{id}`), or `unmatched` for the 404 fallback, so a
//! client probing random paths cannot grow the number of series.
//!
//! What is measured, and how it is rendered, is `crate::metrics`'s business, not this file's.

use std::future::Future;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::log::{Log, LogStats};
use crate::metrics::{
    render_consumer_lag, render_hub_stats, render_log_stats, ConsumerLag, Metrics, CONTENT_TYPE,
};

/// Route label of requests no route matched.
pub(crate) const UNMATCHED_ROUTE: &str = "unmatched";

/// `GET /metrics` → Prometheus text format 0.0.4.
pub(crate) async fn scrape(State(state): State<AppState>) -> Response {
    let mut body = state.metrics().render();
    let stats = state
        .log()
        .map(|log| log.stats())
        .unwrap_or(LogStats::default());
    render_log_stats(&mut body, &stats);
    render_hub_stats(&mut body, &state.hub().stats());
    if let Ok(log) = state.log() {
        render_consumer_lag(&mut body, &consumer_lags(log));
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// Every group's lag on every partition of every topic it committed on. A group or topic that
/// vanishes between the listing and the lookup is skipped: a scrape never fails for it.
fn consumer_lags(log: &Log) -> Vec<ConsumerLag> {
    let groups = log.group_names().unwrap_or_default();
    let mut lags = Vec::new();
    for group in groups {
        for topic in log.group_topics(&group).unwrap_or_default() {
            for lag in log.group_lag(&group, &topic).unwrap_or_default() {
                lags.push(ConsumerLag {
                    group: group.clone(),
                    topic: topic.clone(),
                    lag,
                });
            }
        }
    }
    lags
}

/// Edge stage: records the time to the response head, per method, route and status.
pub(crate) async fn track_latency<Fut: Future<Output = Response>>(
    metrics: &Metrics,
    req: Request,
    inner: impl FnOnce(Request) -> Fut,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let response = inner(req).await;
    metrics.observe_http(
        method.as_str(),
        route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
