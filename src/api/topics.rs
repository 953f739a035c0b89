//! Topic routes of the event bus: create, list, describe and delete topics of the embedded log,
//! and who may touch which topic ([`authorize`]).
//!
//! Scopes: creating needs `events:publish` (a producer owns the topics it writes to), listing
//! and describing need `events:consume`, deleting needs `admin`; `admin` implies every scope.
//! Chat's own topics are guarded on top of the scopes ([`internal_topic`]): `messages` (chat
//! commands) is for `admin` only, whatever the action; `messages.sent` and `message.new` (events
//! chat produces for other services) may be listed, described and read with `events:consume`,
//! but only `admin` may publish to, create or delete them.
//!
//! Records are published and read in [`super::records`]. This module does not validate names or
//! retention values: the log does ([`crate::log::validate_topic_name`], `TopicConfig::validate`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::problem::{ApiError, Json};
use super::AppState;
use crate::auth::{Identity, ADMIN_SCOPE};
use crate::log::{LogError, TopicConfig, TopicInfo};
use crate::pipeline::{EVENTS_TOPIC, MESSAGES_TOPIC};

/// Scope needed to publish records and create topics.
pub const PUBLISH_SCOPE: &str = "events:publish";
/// Scope needed to list and describe topics and read records.
pub const CONSUME_SCOPE: &str = "events:consume";
/// The topic of per-recipient notifications chat produces (API.md, "Events other services
/// consume").
pub use crate::pipeline::notify::NOTIFICATIONS_TOPIC;

/// What a request does to a topic; decides the scope it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
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

/// How chat uses one of its topics, for the topics it owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalTopic {
    /// Chat's command log: nobody but `admin` touches it over this API.
    Private,
    /// Events chat produces for other services: readable, written by chat only.
    Produced,
}

/// Whether `topic` belongs to chat, and how.
pub fn internal_topic(topic: &str) -> Option<InternalTopic> {
    if topic == MESSAGES_TOPIC {
        Some(InternalTopic::Private)
    } else if topic == EVENTS_TOPIC || topic == NOTIFICATIONS_TOPIC {
        Some(InternalTopic::Produced)
    } else {
        None
    }
}

/// 403 unless `caller` may do `action` on `topic`: first the action's scope
/// ([`ApiError::MissingScope`]), then the chat-topic guard ([`ApiError::Forbidden`]).
pub fn authorize(caller: &Caller, topic: &str, action: Action) -> Result<(), ApiError> {
    caller.require_scope(action.scope())?;
    if caller.0.has_scope(ADMIN_SCOPE) {
        return Ok(());
    }
    let allowed = match internal_topic(topic) {
        None => true,
        Some(InternalTopic::Private) => false,
        Some(InternalTopic::Produced) => matches!(action, Action::Describe | Action::Read),
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "topic {topic:?} is internal to chat: only the admin scope may {} it",
            action.verb()
        )))
    }
}

/// Whether `identity` may see `topic` at all (`messages` is for `admin` only).
pub(super) fn visible_to(identity: &Identity, topic: &str) -> bool {
    identity.has_scope(ADMIN_SCOPE) || internal_topic(topic) != Some(InternalTopic::Private)
}

/// `POST /api/topics` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTopic {
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
pub struct TopicView {
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
pub struct TopicList {
    items: Vec<TopicView>,
}

/// `POST /api/topics` → 201 with the new topic; 409 if the name is taken.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateTopic>,
) -> Result<Response, ApiError> {
    authorize(&caller, &body.name, Action::Create)?;
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
pub async fn list(
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
pub async fn describe(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<TopicView>, ApiError> {
    authorize(&caller, &name, Action::Describe)?;
    Ok(Json(state.log()?.describe_topic(&name)?.into()))
}

/// `DELETE /api/topics/{name}` (admin) → 204; its records and group offsets go with it.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&caller, &name, Action::Delete)?;
    state.log()?.delete_topic(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
