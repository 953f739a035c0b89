//! Liveness and readiness probes: `GET /healthz` and `GET /readyz`.
//!
//! `/healthz` answers 200 while the process can answer at all. `/readyz` answers 200 once the
//! log is open (and, later, recovery is done) and until shutdown begins, 503 problem+json
//! otherwise, so a load balancer stops sending traffic before the server stops.
//!
//! This module decides nothing about readiness; `server.rs` sets it on [`AppState`].

use axum::extract::State;
use serde_json::{json, Value};

use super::problem::{ApiError, Json};
use super::AppState;

/// `GET /healthz` → 200 `{"status":"ok"}`.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz` → 200 `{"status":"ready"}`, or 503 problem+json saying why not (starting or
/// stopping, storage failure, store writer failure).
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.readiness()?;
    Ok(Json(json!({ "status": "ready" })))
}
