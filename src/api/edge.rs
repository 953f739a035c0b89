//! The router's one outer layer: what every request passes through on its way in and out.
//!
//! In order, outermost first:
//! 1. [`access::log_requests`]: the request id and the access-log line;
//! 2. [`Origins::guard`]: CORS on `/api`, the `Origin` check on the sockets;
//! 3. [`metrics::track_latency`]: the latency histogram, per route and status;
//! 4. [`http_limits::problem_bodies`]: problem+json for the router's own text rejections;
//! 5. [`http_limits::enforce`]: the target, head and body-deadline limits;
//!
//! then the route (with its body-size limit). Each stage is a plain async function that gets
//! the request and the stages inside it as a closure, so the whole edge is one future and one
//! layer: as five `from_fn` layers, every request boxed five futures and cloned the service
//! stack below each layer, about a tenth of a publish's CPU spent on the way to the handler.
//!
//! What each stage decides is its own module's business; this one only fixes their order.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::http_limits::{self, RequestLimits};
use super::origins::Origins;
use super::{access, metrics, AppState};
use crate::metrics::Metrics;

/// What the edge's stages need, shared by every request (one reference count per request).
#[derive(Debug, Clone)]
pub(crate) struct Edge(Arc<Stages>);

#[derive(Debug)]
struct Stages {
    origins: Origins,
    metrics: Metrics,
    limits: RequestLimits,
}

impl Edge {
    /// The edge of the server whose state is `state`.
    pub(crate) fn of(state: &AppState) -> Edge {
        Edge(Arc::new(Stages {
            origins: Origins::new(state.config()),
            metrics: state.metrics().clone(),
            limits: RequestLimits::from(&state.config().http),
        }))
    }
}

/// Middleware: the stages of the module doc around the route.
pub(crate) async fn edge(State(edge): State<Edge>, request: Request, next: Next) -> Response {
    let stages = &*edge.0;
    access::log_requests(request, |request| {
        stages.origins.guard(request, |request| {
            metrics::track_latency(&stages.metrics, request, |request| {
                http_limits::problem_bodies(request, |request| {
                    http_limits::enforce(&stages.limits, request, |request| next.run(request))
                })
            })
        })
    })
    .await
}
