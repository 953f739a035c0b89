//! `POST /api/dlq/replay`: dead-letter replay inside the server, for the web console and
//! anyone with an `admin` token (the rules, the consumer group and the report are
//! [`crate::pipeline::replay`]'s, as `tidings dlq replay` on a data directory runs them).
//!
//! This module owns the route's body and its refusals; it does not decide what a replay does.

use axum::extract::State;
use serde::Deserialize;

use super::auth::Caller;
use super::groups::guard_internal;
use super::problem::{ApiError, Json};
use super::AppState;
use crate::auth::ADMIN_SCOPE;
use crate::pipeline::replay::{ranges, replay, ReplayError, ReplayPlan, ReplayReport};
use crate::pipeline::sinks::DLQ_TOPIC;

/// `POST /api/dlq/replay` body; every field optional (`{}` replays all of `message.new.dlq`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ReplayBody {
    /// The dead-letter topic (`SOURCE.dlq`; default `message.new.dlq`).
    topic: Option<String>,
    /// Replay only the dead letters this sink failed (to this sink only).
    sink: Option<String>,
    /// The consumer group that remembers how far replays got (default `dlq-replay`, or
    /// `dlq-replay.NAME` with `sink`).
    group: Option<String>,
}

/// `POST /api/dlq/replay` (admin) → 200 with what was replayed, once the replayed records are
/// durable in their topic and the replay's group committed past them.
#[utoipa::path(
    post,
    path = "/api/dlq/replay",
    tag = "dlq",
    request_body = ReplayBody,
    responses(
        (status = 200, description = "`{topic, group, replayed, skipped, otherSinks, to}`", body = serde_json::Value),
        (status = 400, description = "The topic is not a dead-letter topic", body = crate::api::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn replay_dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ReplayBody>,
) -> Result<Json<ReplayReport>, ApiError> {
    caller.require_scope(ADMIN_SCOPE)?;
    let topic = body.topic.as_deref().unwrap_or(DLQ_TOPIC);
    let plan = ReplayPlan::new(topic, body.group, body.sink).map_err(refusal)?;
    guard_internal(plan.group())?;
    let log = state.log()?;
    log.describe_topic(plan.topic())?;
    let ranges = ranges(log, &plan)?;
    let report = replay(log, &plan, ranges, || {}).await.map_err(refusal)?;
    Ok(Json(report))
}

fn refusal(error: ReplayError) -> ApiError {
    match error {
        ReplayError::NotDeadLetters(_) => ApiError::BadRequest(error.to_string()),
        ReplayError::Log(e) => e.into(),
    }
}
