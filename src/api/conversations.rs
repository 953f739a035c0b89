//! Conversation routes: create, list, get, rename, delete, add and remove participants, change
//! a participant's role, and read marks. Who may do what (owners and members) is the store's
//! rule (`store::conversations`): a member asking for an owner's change gets 403.
//!
//! Every write is charged to the caller's write budget (a new conversation by its participants,
//! see [`WriteCost`]). Every route answers 404 to a caller who is not a participant, with the
//! same body as for a conversation that does not exist ([`require_participant`]).
//!
//! Every change goes through the log like a message: the route checks it against the store's
//! view (a 4xx changes nothing), appends its command, and answers once the store writer
//! applied it, with the writer's outcome (which settles races between callers); a conversation
//! command not applied within [`CHANGE_APPLY_WAIT`] is answered 503 `not-applied` (it is durable
//! and applies later), a read mark is answered after [`READ_APPLY_WAIT`] anyway. The writer
//! announces what changed to the live sessions: a participant, role or title change as
//! `conversation.updated`, a deletion as `conversation.deleted`, a read mark as a `read`
//! receipt.
//!
//! This module does not validate ids or count unread messages: the store does.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::Caller;
use super::problem::{ApiError, Json, Query};
use super::rate_limit::WriteCost;
use super::{AppState, Chat};

use crate::store::{
    now_rfc3339, ChangeParticipant, ChatCommand, ConversationPage, ConversationView,
    DeleteConversation, MarkRead, RenameConversation, Role, SetRole, StoreError,
};

/// Default page size of `GET /api/conversations`.
pub(crate) const DEFAULT_CONVERSATION_PAGE: usize = 20;
/// Largest page size of `GET /api/conversations`.
pub(crate) const MAX_CONVERSATION_PAGE: usize = 100;
/// How long `POST …/read` waits for the store to apply the mark before answering anyway.
pub(crate) const READ_APPLY_WAIT: Duration = Duration::from_secs(5);
/// How long a conversation command waits for the store to apply it before answering 503
/// `not-applied` (it is durable and will apply).
pub(crate) const CHANGE_APPLY_WAIT: Duration = Duration::from_secs(10);

/// `POST /api/conversations` body. Unknown fields are a 400 (a misspelt `participants` must
/// not create a room of one).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateConversation {
    /// The caller's id for it (optional).
    pub id: Option<String>,
    /// Optional title.
    pub title: Option<String>,
    /// The other participants (the caller is added).
    #[serde(default)]
    pub participants: Vec<String>,
}

/// `GET /api/conversations` query.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    /// Page size, 1–100 (default 20).
    pub limit: Option<usize>,
    /// The previous page's `nextCursor`.
    pub cursor: Option<String>,
}

/// `POST …/participants` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AddParticipant {
    /// The user to add.
    pub user_id: String,
}

/// `PATCH /api/conversations/{id}` body: `{"title": "…"}`, or `{"title": null}` to remove it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Rename {
    /// The new title; present (a string or null), or the body is a 400.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = true)]
    pub title: Option<Option<String>>,
}

/// A field that may be null but must be there: `Some(None)` for null, `None` when absent.
fn present<'de, D>(deserializer: D) -> Result<Option<Option<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<String>::deserialize(deserializer).map(Some)
}

/// `PATCH …/participants/{userId}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RoleChange {
    /// `"owner"` or `"member"`.
    #[schema(value_type = String, example = "owner")]
    pub role: Role,
}

/// `POST …/read` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadMark {
    /// Highest seq read.
    pub seq: u64,
}

/// 404 unless `user` is a participant of `conversation`; the same answer whether it does not
/// exist or the user is not in it.
pub(crate) fn require_participant(
    chat: &Chat,
    user: &str,
    conversation: &str,
) -> Result<(), ApiError> {
    if chat.store.is_participant(conversation, user) {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("conversation {conversation:?}")).into())
    }
}

/// `POST /api/conversations` → 201 with the conversation as the caller sees it.
#[utoipa::path(
    post,
    path = "/api/conversations",
    tag = "conversations",
    request_body = CreateConversation,
    responses(
        (status = 201, description = "The conversation as the caller sees it", body = serde_json::Value),
        (status = 409, description = "The id is taken", body = crate::api::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(body): Json<CreateConversation>,
) -> Result<Response, ApiError> {
    let chat = state.chat()?.clone();
    let user = caller.user_id.clone();
    // What the conversation can reach: listed duplicates cost nothing more.
    let max = state.config().limits.max_participants;
    let reach = body.participants.len().min(max).saturating_add(1);
    state.charge_write(&user, WriteCost::reaching(reach))?;
    let command = chat
        .store
        .prepare_conversation(&user, body.id, body.title, body.participants)?;
    super::messages::check_writable(&state)?;
    let id = command.conversation_id.clone();
    let command = ChatCommand::CreateConversation(command);
    chat.pipeline
        .change_conversation(&command, CHANGE_APPLY_WAIT)
        .await?;
    let created = chat.store.conversation_for(&user, &id)?;
    let location = format!("/api/conversations/{}", created.id);
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `GET /api/conversations?limit=20&cursor=C` → `{items, nextCursor}`.
#[utoipa::path(
    get,
    path = "/api/conversations",
    tag = "conversations",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1-100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "The previous page's nextCursor"),
    ),
    responses(
        (status = 200, description = "`{items, nextCursor}`: the caller's conversations, most recent activity first", body = serde_json::Value),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<ConversationPage>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_CONVERSATION_PAGE);
    if !(1..=MAX_CONVERSATION_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "invalid limit: must be 1–{MAX_CONVERSATION_PAGE}"
        )));
    }
    let page =
        state
            .chat()?
            .store
            .conversations_of(&caller.user_id, limit, query.cursor.as_deref())?;
    Ok(Json(page))
}

/// `GET /api/conversations/{id}`.
#[utoipa::path(
    get,
    path = "/api/conversations/{id}",
    tag = "conversations",
    params(
        ("id" = String, Path, description = "The conversation id"),
    ),
    responses(
        (status = 200, description = "The conversation", body = serde_json::Value),
    )
)]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<ConversationView>, ApiError> {
    Ok(Json(
        state.chat()?.store.conversation_for(&caller.user_id, &id)?,
    ))
}

/// `POST /api/conversations/{id}/participants` `{userId}` → 204; the participants' sessions
/// get `conversation.updated`.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/participants",
    tag = "conversations",
    params(
        ("id" = String, Path, description = "The conversation id"),
    ),
    request_body = AddParticipant,
    responses(
        (status = 204, description = "Added"),
    )
)]
pub(crate) async fn add_participant(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(body): Json<AddParticipant>,
) -> Result<StatusCode, ApiError> {
    let command = ChangeParticipant {
        conversation_id: id,
        actor: caller.user_id,
        user_id: body.user_id,
        at: now_rfc3339(),
    };
    let actor = command.actor.clone();
    change_membership(&state, &actor, ChatCommand::AddParticipant(command)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/conversations/{id}/participants/{userId}` → 204; 404 if that user is not a
/// participant, 403 if the caller removes someone else and is not an owner. A user may always
/// remove itself. The remaining participants and the removed user get `conversation.updated`.
#[utoipa::path(
    delete,
    path = "/api/conversations/{id}/participants/{userId}",
    tag = "conversations",
    params(
        ("id" = String, Path, description = "The conversation id"),
        ("userId" = String, Path, description = "The participant to remove"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "The caller removes someone else and is not an owner", body = crate::api::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove_participant(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((id, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let command = ChangeParticipant {
        conversation_id: id,
        actor: caller.user_id,
        user_id: user,
        at: now_rfc3339(),
    };
    let actor = command.actor.clone();
    change_membership(&state, &actor, ChatCommand::RemoveParticipant(command)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PATCH /api/conversations/{id}` `{title}` (owners) → 200 with the conversation; the
/// participants' sessions get `conversation.updated`.
#[utoipa::path(
    patch,
    path = "/api/conversations/{id}",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation id")),
    request_body = Rename,
    responses(
        (status = 200, description = "The renamed conversation as the caller sees it", body = serde_json::Value),
        (status = 403, description = "The caller is not an owner", body = crate::api::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn rename(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(body): Json<Rename>,
) -> Result<Json<ConversationView>, ApiError> {
    let Some(title) = body.title else {
        return Err(ApiError::BadRequest(
            "title is required: the new title, or null to remove it".into(),
        ));
    };
    let command = RenameConversation {
        conversation_id: id.clone(),
        actor: caller.user_id.clone(),
        title,
        at: now_rfc3339(),
    };
    change_membership(
        &state,
        &caller.user_id,
        ChatCommand::RenameConversation(command),
    )
    .await?;
    Ok(Json(
        state.chat()?.store.conversation_for(&caller.user_id, &id)?,
    ))
}

/// `DELETE /api/conversations/{id}` (owners) → 204 once the conversation and its messages are
/// gone (reads answer 404 after); its participants' sessions get `conversation.deleted`.
#[utoipa::path(
    delete,
    path = "/api/conversations/{id}",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation id")),
    responses(
        (status = 204, description = "Deleted, with its messages"),
        (status = 403, description = "The caller is not an owner", body = crate::api::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_conversation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let command = DeleteConversation {
        conversation_id: id,
        actor: caller.user_id.clone(),
        at: now_rfc3339(),
    };
    change_membership(
        &state,
        &caller.user_id,
        ChatCommand::DeleteConversation(command),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PATCH /api/conversations/{id}/participants/{userId}` `{role}` (owners) → 204; 404 if that
/// user is not a participant, 409 for the last owner made a member. The participants' sessions
/// get `conversation.updated` (with its `owners`).
#[utoipa::path(
    patch,
    path = "/api/conversations/{id}/participants/{userId}",
    tag = "conversations",
    params(
        ("id" = String, Path, description = "The conversation id"),
        ("userId" = String, Path, description = "The participant whose role changes"),
    ),
    request_body = RoleChange,
    responses(
        (status = 204, description = "The role is changed"),
        (status = 403, description = "The caller is not an owner", body = crate::api::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last owner would become a member", body = crate::api::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn set_role(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((id, user)): Path<(String, String)>,
    Json(body): Json<RoleChange>,
) -> Result<StatusCode, ApiError> {
    let command = SetRole {
        conversation_id: id,
        actor: caller.user_id.clone(),
        user_id: user,
        role: body.role,
        at: now_rfc3339(),
    };
    change_membership(&state, &caller.user_id, ChatCommand::SetRole(command)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks a conversation change against the store's view (a 4xx changes nothing), charges
/// `actor`'s write budget, appends it and returns once the store applied it (the store writer
/// announces it to the sessions: `conversation.updated` to the participants and to one just
/// removed, `conversation.deleted` to the participants of a deleted one).
async fn change_membership(
    state: &AppState,
    actor: &str,
    command: ChatCommand,
) -> Result<(), ApiError> {
    let chat = state.chat()?;
    chat.store.check_conversation_command(&command)?;
    state.charge_write(actor, WriteCost::ONE)?;
    super::messages::check_writable(state)?;
    chat.pipeline
        .change_conversation(&command, CHANGE_APPLY_WAIT)
        .await?;
    Ok(())
}

/// `POST /api/conversations/{id}/read` `{seq}` → 204. Read state only moves forward: a seq at
/// or below the caller's `lastReadSeq` changes nothing, one above `lastSeq` counts as `lastSeq`.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/read",
    tag = "conversations",
    params(
        ("id" = String, Path, description = "The conversation id"),
    ),
    request_body = ReadMark,
    responses(
        (status = 204, description = "The read mark is applied"),
    )
)]
pub(crate) async fn mark_read(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(body): Json<ReadMark>,
) -> Result<StatusCode, ApiError> {
    mark_read_as(&state, &caller.user_id, id, body.seq).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Moves `user`'s read mark in `conversation` up to `seq` through the log and waits for the
/// store to apply it; then every participant's sessions get the `read` receipt. The one path
/// of `POST …/read` and the WebSocket `read` frame. A mark that moves nothing changes nothing
/// and sends no receipt.
pub(crate) async fn mark_read_as(
    state: &AppState,
    user: &str,
    conversation: String,
    seq: u64,
) -> Result<(), ApiError> {
    let chat = state.chat()?;
    let view = chat.store.conversation_for(user, &conversation)?;
    let seq = seq.min(view.last_seq);
    if seq <= view.last_read_seq {
        return Ok(());
    }
    state.charge_write(user, WriteCost::ONE)?;
    super::messages::check_writable(state)?;
    let command = ChatCommand::Read(MarkRead {
        conversation_id: conversation.clone(),
        user_id: user.to_owned(),
        seq,
    });
    let appended = chat.pipeline.submit(&command).await?;
    // The store writer sends the receipt once it applied the mark; the answer waits for that
    // too, so a client that reads its conversations next sees the mark.
    if !chat.pipeline.wait_applied(appended, READ_APPLY_WAIT).await {
        tracing::warn!(
            ?appended,
            "read mark not applied within the wait; answered anyway"
        );
    }
    Ok(())
}
