//! Message routes: send (202 once durable in the log), history, one message, edit and delete.
//!
//! A write is validated completely against the store's in-memory view before anything is
//! appended (a rejected request changes nothing), then charged to the caller's write budget (a
//! send costs more the more participants it reaches) and checked against backpressure
//! ([`check_writable`]), then appended through the pipeline. The sender is always
//! the token's subject. A send with a `clientMessageId` is idempotent per (sender,
//! conversation, clientMessageId): see [`idempotency`](super::idempotency).
//!
//! Rules the edge adds to the store's: `replyTo` must name a stored message of the same
//! conversation; every `mentions` entry must be a participant; only a message's sender may edit
//! or delete it (another participant gets 403), and a deleted message can be neither (409).
//!
//! This module does not assign seqs or store anything: the store writer does.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::conversations::{require_participant, CHANGE_APPLY_WAIT};
use super::idempotency::{self, Claim, Lease, SendAck};
use super::problem::{ApiError, Json, Query};
use super::rate_limit::WriteCost;
use super::{blocking, AppState, Chat};
use crate::auth::Identity;
use crate::pipeline::PipelineError;
use crate::store::{
    now_rfc3339, validate_user_id, ChatCommand, DeleteMessage, EditMessage, HistoryPage, Message,
    SendMessage, StoreError,
};

/// Default page size of a history page.
pub(crate) const DEFAULT_HISTORY_PAGE: usize = 50;
/// Largest page size of a history page.
pub(crate) const MAX_HISTORY_PAGE: usize = 200;
/// Longest `clientMessageId`, in bytes.
pub(crate) const MAX_CLIENT_MESSAGE_ID_LEN: usize = 256;
/// Most entries in `mentions`.
pub(crate) const MAX_MENTIONS: usize = 100;

/// `POST …/messages` body. A field naming the sender (`senderId`, `senderName`) is ignored,
/// as API.md says (the sender is the token's); any other unknown field is a 400, so a typo
/// does not silently drop what the client meant.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SendBody {
    /// Text, 1 byte to `limits.maxContentBytes`.
    pub content: String,
    /// The sender's idempotency key.
    pub client_message_id: Option<String>,
    /// Id of a message of the same conversation this one answers.
    pub reply_to: Option<String>,
    /// Mentioned participants.
    #[serde(default)]
    pub mentions: Vec<String>,
    /// Ignored: the sender is the token's.
    #[serde(default, rename = "senderId")]
    #[schema(ignore)]
    pub _sender_id: Option<serde::de::IgnoredAny>,
    /// Ignored: the sender's name is the token's.
    #[serde(default, rename = "senderName")]
    #[schema(ignore)]
    pub _sender_name: Option<serde::de::IgnoredAny>,
}

/// `PATCH …/messages/{messageId}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EditBody {
    /// The new text.
    pub content: String,
}

/// `GET …/messages` query.
#[derive(Debug, Deserialize)]
pub(crate) struct HistoryQuery {
    /// Page size, 1–200 (default 50).
    pub limit: Option<usize>,
    /// Newest page below this seq.
    pub before: Option<u64>,
    /// Oldest page above this seq.
    pub after: Option<u64>,
}

/// The 202 body of an accepted edit or delete.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChangeAck {
    /// The message.
    pub id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// Always `"accepted"`.
    pub status: &'static str,
    /// Partition of the command in `messages`.
    pub partition: u32,
    /// Offset of the command in `messages`.
    pub offset: u64,
}

/// Refuses writes (503 with `Retry-After`) while the log refuses them (poisoned, or the disk
/// almost full), a store writer has failed, or the store lags more than `limits.maxStoreLag` records behind the log.
pub(crate) fn check_writable(state: &AppState) -> Result<(), ApiError> {
    if let Some(refusal) = state.log()?.write_refusal() {
        return Err(refusal.into());
    }
    let chat = state.chat()?;
    if let Some(failure) = chat.pipeline.failure() {
        // The same answer as `/readyz` gives (storage-unavailable, Retry-After 5): a stopped
        // writer is a storage failure, e.g. a full disk that another writer of the same
        // database met first, not a passing overload.
        tracing::debug!(%failure, "write refused: a store writer stopped");
        return Err(PipelineError::Worker(failure).into());
    }
    backpressure(chat.pipeline.lag()?, state.config().limits.max_store_lag)
}

/// 503 when `lag` (records appended, not yet stored) is above `max`.
pub(crate) fn backpressure(lag: u64, max: u64) -> Result<(), ApiError> {
    if lag > max {
        return Err(ApiError::Overloaded(format!(
            "the message store is {lag} records behind (limit {max}); try again later"
        )));
    }
    Ok(())
}

/// Checks a message's content: not blank (400), at most `max` bytes (413).
pub(crate) fn validate_content(content: &str, max: usize) -> Result<(), ApiError> {
    if content.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "invalid content: must not be empty".into(),
        ));
    }
    if content.len() > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "content is {} bytes; the limit is {max}",
            content.len()
        )));
    }
    Ok(())
}

fn validate_client_message_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_CLIENT_MESSAGE_ID_LEN
        && !id.chars().any(char::is_control);
    if ok {
        return Ok(());
    }
    Err(ApiError::BadRequest(format!(
        "invalid clientMessageId: 1–{MAX_CLIENT_MESSAGE_ID_LEN} bytes without control characters"
    )))
}

/// Validates a send body fully and builds the command (sender = the token's subject).
fn build_send(
    state: &AppState,
    chat: &Chat,
    caller: &Identity,
    conversation: String,
    body: SendBody,
) -> Result<SendMessage, ApiError> {
    validate_content(&body.content, state.config().limits.max_content_bytes)?;
    if let Some(id) = &body.client_message_id {
        validate_client_message_id(id)?;
    }
    if let Some(reply_to) = &body.reply_to {
        if chat.store.message(&conversation, reply_to).is_err() {
            return Err(ApiError::BadRequest(format!(
                "invalid replyTo: {reply_to:?} is not a message of this conversation"
            )));
        }
    }
    let mut mentions: Vec<String> = Vec::new();
    for user in body.mentions {
        validate_user_id("mentions", &user)?;
        if !chat.store.is_participant(&conversation, &user) {
            return Err(ApiError::BadRequest(format!(
                "invalid mentions: {user:?} is not a participant"
            )));
        }
        if !mentions.contains(&user) {
            mentions.push(user);
        }
    }
    if mentions.len() > MAX_MENTIONS {
        return Err(ApiError::BadRequest(format!(
            "invalid mentions: at most {MAX_MENTIONS}"
        )));
    }
    let name = caller
        .name
        .clone()
        .unwrap_or_else(|| caller.user_id.clone());
    let mut send = SendMessage::new(conversation, caller.user_id.clone(), name, body.content);
    send.client_message_id = body.client_message_id;
    send.reply_to = body.reply_to;
    send.mentions = mentions;
    Ok(send)
}

/// `POST /api/conversations/{id}/messages` → 202 [`SendAck`] once durable in the log.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/messages",
    tag = "messages",
    params(
        ("id" = String, Path, description = "The conversation id"),
    ),
    request_body = SendBody,
    responses(
        (status = 202, description = "Durable in the log: `{id, conversationId, clientMessageId, status, sentAt, partition, offset}`", body = serde_json::Value),
        (status = 413, description = "Content over the limit", body = crate::api::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn send(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(body): Json<SendBody>,
) -> Result<(StatusCode, Json<SendAck>), ApiError> {
    let ack = send_message(&state, &caller, id, body).await?;
    Ok((StatusCode::ACCEPTED, Json(ack)))
}

/// Sends a message as `caller` into `conversation`: validation, rate limit, backpressure,
/// idempotency and the durable append. The one path of every send: `POST …/messages` and the
/// WebSocket `send` frame.
pub(crate) async fn send_message(
    state: &AppState,
    caller: &Identity,
    conversation: String,
    body: SendBody,
) -> Result<SendAck, ApiError> {
    let chat = state.chat()?.clone();
    require_participant(&chat, &caller.user_id, &conversation)?;
    let command = build_send(state, &chat, caller, conversation, body)?;
    let reach = chat
        .store
        .participant_count(&command.conversation_id)
        .unwrap_or(1);
    state.charge_write(&caller.user_id, WriteCost::reaching(reach))?;
    check_writable(state)?;
    match command.client_message_id.clone() {
        None => append_send(&chat, command).await,
        Some(client_id) => idempotent_send(state, chat, command, client_id).await,
    }
}

async fn append_send(chat: &Chat, command: SendMessage) -> Result<SendAck, ApiError> {
    let (appended, command) = if command.client_message_id.is_some() {
        // On a cluster, a retry through another node may find the first copy stored.
        chat.pipeline.submit_send(&command).await?
    } else {
        let appended = chat
            .pipeline
            .submit(&ChatCommand::Send(command.clone()))
            .await?;
        (appended, command)
    };
    Ok(SendAck {
        id: command.id,
        conversation_id: command.conversation_id,
        client_message_id: command.client_message_id,
        status: "accepted",
        sent_at: command.sent_at,
        partition: appended.partition,
        offset: appended.offset,
    })
}

/// A send with a client message id: answered from the recent sends, the store's index, or by
/// appending it exactly once.
async fn idempotent_send(
    state: &AppState,
    chat: Chat,
    command: SendMessage,
    client_id: String,
) -> Result<SendAck, ApiError> {
    let key = (
        command.sender_id.clone(),
        command.conversation_id.clone(),
        client_id,
    );
    loop {
        match state.sends().claim(key.clone()) {
            Claim::Done(ack) => return Ok(ack),
            Claim::Wait(outcome) => {
                if let Some(ack) = idempotency::wait(outcome).await {
                    return Ok(ack);
                }
            }
            Claim::Lead(lease) => {
                // A task of its own: a client that hangs up must not abandon the lease between
                // the append and its completion.
                let lead = state.tasks().spawn(lead_send(chat, command, lease));
                return lead
                    .await
                    .map_err(|e| ApiError::Internal(format!("a send task failed: {e}")))?;
            }
        }
    }
}

async fn lead_send(chat: Chat, command: SendMessage, lease: Lease) -> Result<SendAck, ApiError> {
    let store = chat.store.clone();
    let probe = command.clone();
    let ack = match blocking(move || stored_ack(&store, &probe)).await? {
        Some(ack) => ack,
        None => append_send(&chat, command).await?,
    };
    lease.complete(ack.clone());
    Ok(ack)
}

/// The acknowledgement of a send the store holds already under the same client message id.
fn stored_ack(
    store: &crate::store::Store,
    send: &SendMessage,
) -> Result<Option<SendAck>, ApiError> {
    let Some(client_id) = &send.client_message_id else {
        return Ok(None);
    };
    let Some(found) = store.client_send(&send.sender_id, &send.conversation_id, client_id)? else {
        return Ok(None);
    };
    let message = store.message(&send.conversation_id, &found.message_id)?;
    let (partition, offset) = found.source.unwrap_or((0, 0));
    Ok(Some(SendAck {
        id: message.id,
        conversation_id: message.conversation_id,
        client_message_id: message.client_message_id,
        status: "accepted",
        sent_at: message.sent_at,
        partition,
        offset,
    }))
}

/// `GET /api/conversations/{id}/messages?limit=50&before=S|after=S`.
#[utoipa::path(
    get,
    path = "/api/conversations/{id}/messages",
    tag = "messages",
    params(
        ("id" = String, Path, description = "The conversation id"),
        ("limit" = Option<u32>, Query, description = "Page size, 1-200 (default 50)"),
        ("before" = Option<u64>, Query, description = "The newest page below this seq"),
        ("after" = Option<u64>, Query, description = "The oldest page above this seq"),
    ),
    responses(
        (status = 200, description = "`{items, hasMore}`, ascending seq", body = serde_json::Value),
    )
)]
pub(crate) async fn history(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<HistoryPage>, ApiError> {
    let chat = state.chat()?.clone();
    require_participant(&chat, &caller.user_id, &id)?;
    if query.before.is_some() && query.after.is_some() {
        return Err(ApiError::BadRequest(
            "invalid before: give before or after, not both".into(),
        ));
    }
    let limit = query.limit.unwrap_or(DEFAULT_HISTORY_PAGE);
    if !(1..=MAX_HISTORY_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "invalid limit: must be 1–{MAX_HISTORY_PAGE}"
        )));
    }
    let page =
        blocking(move || Ok(chat.store.history(&id, query.before, query.after, limit)?)).await?;
    Ok(Json(page))
}

/// `GET /api/conversations/{id}/messages/{messageId}`.
#[utoipa::path(
    get,
    path = "/api/conversations/{id}/messages/{messageId}",
    tag = "messages",
    params(
        ("id" = String, Path, description = "The conversation id"),
        ("messageId" = String, Path, description = "The message id"),
    ),
    responses(
        (status = 200, description = "The message", body = serde_json::Value),
    )
)]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((id, message_id)): Path<(String, String)>,
) -> Result<Json<Message>, ApiError> {
    let chat = state.chat()?;
    require_participant(chat, &caller.user_id, &id)?;
    Ok(Json(stored_message(chat, &id, &message_id).await?))
}

/// A message of the conversation as stored. One the store does not know yet is looked up again
/// once the store has applied what the conversation's partition held at the call (within
/// [`CHANGE_APPLY_WAIT`]): a message accepted with 202 a moment ago is found, not a 404.
async fn stored_message(chat: &Chat, id: &str, message_id: &str) -> Result<Message, ApiError> {
    match chat.store.message(id, message_id) {
        Err(StoreError::NotFound(_)) if chat.pipeline.caught_up(id, CHANGE_APPLY_WAIT).await => {
            Ok(chat.store.message(id, message_id)?)
        }
        found => Ok(found?),
    }
}

/// The caller's own, not deleted, stored message: 404 (unknown), 403 (someone else's), 409
/// (deleted).
async fn own_message(
    chat: &Chat,
    user: &str,
    id: &str,
    message_id: &str,
) -> Result<Message, ApiError> {
    require_participant(chat, user, id)?;
    let message = stored_message(chat, id, message_id).await?;
    if message.sender_id != user {
        return Err(ApiError::Forbidden(format!(
            "only the sender may change message {message_id:?}"
        )));
    }
    if message.deleted {
        return Err(ApiError::Conflict(format!(
            "message {message_id:?} is deleted"
        )));
    }
    Ok(message)
}

async fn submit_change(
    chat: &Chat,
    command: ChatCommand,
    message: Message,
) -> Result<ChangeAck, ApiError> {
    let appended = chat.pipeline.submit(&command).await?;
    Ok(ChangeAck {
        id: message.id,
        conversation_id: message.conversation_id,
        status: "accepted",
        partition: appended.partition,
        offset: appended.offset,
    })
}

/// `PATCH /api/conversations/{id}/messages/{messageId}` `{content}` → 202 (only the sender).
#[utoipa::path(
    patch,
    path = "/api/conversations/{id}/messages/{messageId}",
    tag = "messages",
    params(
        ("id" = String, Path, description = "The conversation id"),
        ("messageId" = String, Path, description = "The message id"),
    ),
    request_body = EditBody,
    responses(
        (status = 202, description = "The edit is durable in the log", body = serde_json::Value),
        (status = 413, description = "Content over the limit", body = crate::api::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn edit(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((id, message_id)): Path<(String, String)>,
    Json(body): Json<EditBody>,
) -> Result<(StatusCode, Json<ChangeAck>), ApiError> {
    let chat = state.chat()?;
    let message = own_message(chat, &caller.user_id, &id, &message_id).await?;
    validate_content(&body.content, state.config().limits.max_content_bytes)?;
    state.charge_write(&caller.user_id, WriteCost::ONE)?;
    check_writable(&state)?;
    let command = ChatCommand::Edit(EditMessage {
        message_id,
        conversation_id: id,
        sender_id: caller.user_id,
        content: body.content,
        at: now_rfc3339(),
    });
    let ack = submit_change(chat, command, message).await?;
    Ok((StatusCode::ACCEPTED, Json(ack)))
}

/// `DELETE /api/conversations/{id}/messages/{messageId}` → 202 (only the sender).
#[utoipa::path(
    delete,
    path = "/api/conversations/{id}/messages/{messageId}",
    tag = "messages",
    params(
        ("id" = String, Path, description = "The conversation id"),
        ("messageId" = String, Path, description = "The message id"),
    ),
    responses(
        (status = 202, description = "The delete is durable in the log", body = serde_json::Value),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((id, message_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<ChangeAck>), ApiError> {
    let chat = state.chat()?;
    let message = own_message(chat, &caller.user_id, &id, &message_id).await?;
    state.charge_write(&caller.user_id, WriteCost::ONE)?;
    check_writable(&state)?;
    let command = ChatCommand::Delete(DeleteMessage {
        message_id,
        conversation_id: id,
        sender_id: caller.user_id,
        at: now_rfc3339(),
    });
    let ack = submit_change(chat, command, message).await?;
    Ok((StatusCode::ACCEPTED, Json(ack)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backpressure_refuses_above_the_bound_only() {
        assert!(backpressure(10, 10).is_ok());
        let refused = backpressure(11, 10).unwrap_err();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn content_must_be_non_blank_and_within_the_limit() {
        assert!(validate_content("hi", 2).is_ok());
        assert_eq!(
            validate_content(" ", 2).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            validate_content("abc", 2).unwrap_err().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
