//! `GET /metrics` and the layer that times every HTTP request.
//!
//! The scrape renders the server's registry ([`crate::metrics`]) followed by the values collected
//! at scrape time (the log's counters). The latency layer labels each observation with the
//! matched route pattern (`/api/conversations/{id}`), or `unmatched` for the 404 fallback, so a
//! client probing random paths cannot grow the number of series.
//!
//! What is measured, and how it is rendered, is `crate::metrics`'s business, not this file's.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::log::LogStats;
use crate::metrics::{render_log_stats, Metrics, CONTENT_TYPE};

/// Route label of requests no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// `GET /metrics` → Prometheus text format 0.0.4.
pub async fn scrape(State(state): State<AppState>) -> Response {
    let mut body = state.metrics().render();
    let stats = state
        .log()
        .map(|log| log.stats())
        .unwrap_or(LogStats::default());
    render_log_stats(&mut body, &stats);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// Middleware: records the time to the response head, per method, route and status.
pub async fn track_latency(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    let response = next.run(req).await;
    metrics.observe_http(
        method.as_str(),
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
