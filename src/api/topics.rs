//! Topic routes of the event bus: create, list, describe and delete topics of the embedded log,
//! and who may touch which topic ([`authorize`]).
//!
//! Scopes: creating needs `events:publish` (a producer owns the topics it writes to), listing
//! and describing need `events:consume`, deleting needs `admin`; `admin` implies every scope.
//! The topics the server writes are guarded on top of the scopes, for `admin` too
//! ([`internal_topic`]): nobody creates, deletes or publishes to them over this API (dead
//! letters go back into `message.new` through `POST /api/dlq/replay`, which the server runs
//! itself); `messages` (chat commands) is read by `admin` only, the others with
//! `events:consume`.
//!
//! Records are published and read in [`super::records`]. This module does not validate names or
//! retention values: the log does ([`crate::log::validate_topic_name`], `TopicConfig::validate`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::problem::{ApiError, Json};
use super::rate_limit::WriteCost;
use super::AppState;
use crate::auth::{Identity, ADMIN_SCOPE};
use crate::log::{LogError, TopicConfig, TopicInfo};
use crate::pipeline::sinks::DLQ_TOPIC;
use crate::pipeline::{EVENTS_TOPIC, MESSAGES_TOPIC};

/// Scope needed to publish records and create topics.
pub(crate) const PUBLISH_SCOPE: &str = "events:publish";
/// Scope needed to list and describe topics and read records.
pub(crate) const CONSUME_SCOPE: &str = "events:consume";
/// The topic of per-recipient notifications chat produces (API.md, "Events other services
/// consume").
pub(crate) use crate::pipeline::notify::NOTIFICATIONS_TOPIC;

/// What a request does to a topic; decides the scope it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Create a topic (`events:publish`).
    Create,
    /// List or describe a topic (`events:consume`).
    Describe,
    /// Read records (`events:consume`).
    Read,
    /// Publish records (`events:publish`).
    Publish,
    /// Delete a topic (`admin`).
    Delete,
}

impl Action {
    fn scope(self) -> &'static str {
        match self {
            Action::Create | Action::Publish => PUBLISH_SCOPE,
            Action::Describe | Action::Read => CONSUME_SCOPE,
            Action::Delete => ADMIN_SCOPE,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Describe => "describe",
            Action::Read => "read",
            Action::Publish => "publish to",
            Action::Delete => "delete",
        }
    }
}

/// The topics the server itself writes, and how each may be reached over this API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InternalTopic {
    /// `messages`, chat's command log: the store writer applies every record in it as a chat
    /// write, so only the chat routes (which check who may write what) append to it. Readable
    /// by `admin` only (it holds every conversation's text).
    Commands,
    /// `messages.sent`, the events chat produces for other services: readable with
    /// `events:consume`, written by the server only.
    Events,
    /// `message.new`, the offline notifications: readable with `events:consume`, written by the
    /// server only (`admin` puts dead letters back with `POST /api/dlq/replay`).
    Notifications,
    /// `message.new.dlq`, notifications a sink gave up on: readable with `events:consume`,
    /// written by the server only (a forged dead letter would be replayed by an operator).
    DeadLetters,
}

/// Whether `topic` is one the server writes, and which.
pub(crate) fn internal_topic(topic: &str) -> Option<InternalTopic> {
    match topic {
        MESSAGES_TOPIC => Some(InternalTopic::Commands),
        EVENTS_TOPIC => Some(InternalTopic::Events),
        NOTIFICATIONS_TOPIC => Some(InternalTopic::Notifications),
        DLQ_TOPIC => Some(InternalTopic::DeadLetters),
        _ => None,
    }
}

impl InternalTopic {
    /// Whether a caller (`admin` or not) may do `action` on this topic over the API. Nobody
    /// creates or deletes the server's topics: chat depends on them.
    fn allows(self, action: Action, admin: bool) -> bool {
        match action {
            Action::Create | Action::Delete => false,
            Action::Describe | Action::Read => admin || self != InternalTopic::Commands,
            Action::Publish => false,
        }
    }
}

/// 403 unless `caller` may do `action` on `topic`: first the action's scope
/// ([`ApiError::MissingScope`]), then the guard of the server's own topics
/// ([`ApiError::Forbidden`]), which holds for `admin` too.
pub(crate) fn authorize(caller: &Caller, topic: &str, action: Action) -> Result<(), ApiError> {
    caller.require_scope(action.scope())?;
    let Some(internal) = internal_topic(topic) else {
        return Ok(());
    };
    let admin = caller.0.has_scope(ADMIN_SCOPE);
    if internal.allows(action, admin) {
        return Ok(());
    }
    let who = if internal.allows(action, true) {
        "only the admin scope may"
    } else {
        "no token may"
    };
    Err(ApiError::Forbidden(format!(
        "topic {topic:?} is written by the server itself: {who} {} it",
        action.verb()
    )))
}

/// Whether `identity` may see `topic` at all (`messages` is for `admin` only).
pub(super) fn visible_to(identity: &Identity, topic: &str) -> bool {
    identity.has_scope(ADMIN_SCOPE) || internal_topic(topic) != Some(InternalTopic::Commands)
}

/// `POST /api/topics` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateTopic {
    /// Topic name: 1–249 characters of `[A-Za-z0-9._-]`.
    pub name: String,
    /// Number of partitions, 1–4096.
    pub partitions: u32,
    /// Delete batches older than this many milliseconds (optional, positive).
    pub retention_ms: Option<u64>,
    /// Delete the oldest batches while a partition holds more bytes (optional, positive).
    pub retention_bytes: Option<u64>,
}

/// A topic as this API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TopicView {
    name: String,
    partitions: Vec<PartitionView>,
    retention_ms: Option<u64>,
    retention_bytes: Option<u64>,
}

/// One partition's retained range: `low` is the first readable offset, `high` one past the last.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PartitionView {
    partition: u32,
    low: u64,
    high: u64,
}

impl From<TopicInfo> for TopicView {
    fn from(info: TopicInfo) -> Self {
        TopicView {
            partitions: info
                .partitions
                .iter()
                .map(|p| PartitionView {
                    partition: p.partition,
                    low: p.low,
                    high: p.high,
                })
                .collect(),
            name: info.name,
            retention_ms: info.config.retention_ms,
            retention_bytes: info.config.retention_bytes,
        }
    }
}

/// `GET /api/topics` body: every topic the caller may see, by name.
#[derive(Debug, Serialize)]
pub(crate) struct TopicList {
    items: Vec<TopicView>,
}

/// `POST /api/topics` → 201 with the new topic; 409 if the name is taken.
#[utoipa::path(
    post,
    path = "/api/topics",
    tag = "topics",
    request_body = CreateTopic,
    responses(
        (status = 201, description = "The topic with its partitions' watermarks", body = serde_json::Value),
        (status = 409, description = "The name is taken", body = crate::api::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateTopic>,
) -> Result<Response, ApiError> {
    authorize(&caller, &body.name, Action::Create)?;
    state.charge_write(&caller.0.user_id, WriteCost::ONE)?;
    let config = TopicConfig {
        partitions: body.partitions,
        retention_ms: body.retention_ms,
        retention_bytes: body.retention_bytes,
        protected_groups: Vec::new(),
    };
    let info = state.log()?.create_topic(&body.name, config).await?;
    Ok((StatusCode::CREATED, Json(TopicView::from(info))).into_response())
}

/// `GET /api/topics` → `{"items":[topic…]}`, sorted by name; `messages` only for `admin`.
#[utoipa::path(
    get,
    path = "/api/topics",
    tag = "topics",
    responses(
        (status = 200, description = "`{items}`: the topics, sorted by name", body = serde_json::Value),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TopicList>, ApiError> {
    caller.require_scope(CONSUME_SCOPE)?;
    let log = state.log()?;
    let mut items = Vec::new();
    for name in log.topic_names() {
        if !visible_to(&caller.0, &name) {
            continue;
        }
        match log.describe_topic(&name) {
            Ok(info) => items.push(TopicView::from(info)),
            // Deleted since the names were taken: it is simply no longer listed.
            Err(LogError::UnknownTopic(_)) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(Json(TopicList { items }))
}

/// `GET /api/topics/{name}` → the topic with its partitions' watermarks.
#[utoipa::path(
    get,
    path = "/api/topics/{name}",
    tag = "topics",
    params(
        ("name" = String, Path, description = "The topic name"),
    ),
    responses(
        (status = 200, description = "`{name, partitions: [{partition, low, high}], retentionMs, retentionBytes}`", body = serde_json::Value),
    )
)]
pub(crate) async fn describe(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<TopicView>, ApiError> {
    authorize(&caller, &name, Action::Describe)?;
    Ok(Json(state.log()?.describe_topic(&name)?.into()))
}

/// `DELETE /api/topics/{name}` (admin) → 204; its records and group offsets go with it.
#[utoipa::path(
    delete,
    path = "/api/topics/{name}",
    tag = "topics",
    params(
        ("name" = String, Path, description = "The topic name"),
    ),
    responses(
        (status = 204, description = "Deleted with its records and group offsets"),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&caller, &name, Action::Delete)?;
    state.log()?.delete_topic(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
