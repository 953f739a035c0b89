//! Consumer-group routes of the event bus: join, poll, commit, leave, list and describe, and
//! the admin's offset reset.
//!
//! Membership and assignment live in the [`Coordinator`](crate::bus::Coordinator); committed
//! offsets live in the log. A poll reads each assigned partition from the member's position
//! (the committed offset after every rebalance; the earliest retained record — or the high
//! watermark with `autoOffsetReset: "latest"` — without one) and long-polls on all of them at
//! once. Delivery is at least once: what a member returned but did not commit is delivered
//! again after a rebalance.
//!
//! Scopes are those of the topic routes ([`super::topics::authorize`]): every route needs
//! `events:consume` but the reset, which needs `admin`; chat's `messages` topic is for `admin`
//! only, so a non-admin's patterns never match it. Records are rendered by [`super::records`].
//!
//! The groups of the server's own workers (`store`, `notify`, `notify.sink.*`) are
//! never joined, committed or reset here, whatever the token (403); a member id works only for
//! the user that joined with it (another one's gets 404, as an unknown id). A join is a write
//! (the caller's write budget) and the number of groups is capped (`limits.maxGroups`).
//!
//! A reset is refused (409) while the group has live members, as Kafka refuses to reset an
//! active group: they would go on from their own positions and commit over it. The check and the
//! reset happen under the coordinator's lock, so no member joins in between.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::auth::Caller;
use super::problem::{ApiError, Json};
use super::rate_limit::WriteCost;
use super::records::{read_blocking, read_record, ReadRecord, MAX_READ_LIMIT, MAX_WAIT};
use super::topics::{authorize, visible_to, Action, CONSUME_SCOPE};
use super::{blocking, AppState};
use crate::auth::ADMIN_SCOPE;
use crate::bus::{is_pattern, Lease, MemberView, OffsetReset, Subscription, TopicPartition};
use crate::log::{
    validate_group_name, validate_topic_name, Log, LogError, PartitionLag, ResetPlan, ResetTo,
};
use crate::pipeline::{is_internal_group, MESSAGES_TOPIC};

/// `POST /api/groups/{group}/members` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct JoinBody {
    /// Topic names or patterns (`*` one word, `#` any number of words); at least one.
    pub topics: Vec<String>,
    /// `"earliest"` (default) or `"latest"`: where to start without a committed offset.
    pub auto_offset_reset: Option<String>,
    /// Session timeout in ms (100–300 000; default 10 000).
    pub session_timeout_ms: Option<u64>,
}

/// `POST /api/groups/{group}/members` answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JoinAnswer {
    member_id: String,
    assignment: Vec<TopicPartition>,
}

/// `POST …/members/{memberId}/poll` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PollBody {
    /// Most records in total, 1–1000 (default 100).
    pub limit: Option<usize>,
    /// How long to wait when there is no record yet, in ms (default 0, at most 30 000).
    pub wait_ms: Option<u64>,
}

/// `POST …/members/{memberId}/poll` answer.
#[derive(Debug, Serialize)]
pub(crate) struct PollAnswer {
    records: Vec<ReadRecord>,
    assignment: Vec<TopicPartition>,
}

/// `POST /api/groups/{group}/offsets` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CommitBody {
    /// The committing member; it must own every partition.
    pub member_id: String,
    /// Offsets to commit: the next offset to read on each partition.
    pub offsets: Vec<CommitOffset>,
}

/// One offset to commit.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommitOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Next offset to read.
    pub offset: u64,
}

/// `POST /api/groups/{group}/offsets/reset` body: `to` or `shiftBy`, not both.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ResetBody {
    /// The topic whose partitions to reset.
    pub topic: String,
    /// `"earliest"`, `"latest"`, an offset (a number), or an RFC 3339 UTC time (a string).
    pub to: Option<serde_json::Value>,
    /// Records to move each committed offset by (negative: back), clamped to the retained range.
    pub shift_by: Option<i64>,
    /// The partitions to reset; every partition of the topic when absent or empty.
    #[serde(default)]
    pub partitions: Vec<u32>,
    /// Answer the offsets the reset would commit, and commit nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /api/groups/{group}/offsets/reset` answer: the new committed offset of each partition.
#[derive(Debug, Serialize)]
pub(crate) struct ResetAnswer {
    group: String,
    topic: String,
    offsets: Vec<ResetOffset>,
}

/// One partition's new committed offset.
#[derive(Debug, Serialize)]
pub(crate) struct ResetOffset {
    partition: u32,
    offset: u64,
}

/// `GET /api/groups` answer.
#[derive(Debug, Serialize)]
pub(crate) struct GroupList {
    items: Vec<GroupName>,
}

/// One group in the list.
#[derive(Debug, Serialize)]
pub(crate) struct GroupName {
    group: String,
}

/// `GET /api/groups/{group}` answer.
#[derive(Debug, Serialize)]
pub(crate) struct GroupView {
    group: String,
    members: Vec<MemberView>,
    offsets: Vec<TopicOffsets>,
}

/// A group's committed offsets and lag on one topic.
#[derive(Debug, Serialize)]
pub(crate) struct TopicOffsets {
    topic: String,
    partitions: Vec<LagView>,
}

/// A group's position on one partition: `committed` (absent if never), the partition's
/// watermarks and the records left to read.
#[derive(Debug, Serialize)]
pub(crate) struct LagView {
    partition: u32,
    committed: Option<u64>,
    low: u64,
    high: u64,
    lag: u64,
}

impl From<PartitionLag> for LagView {
    fn from(p: PartitionLag) -> Self {
        LagView {
            partition: p.partition,
            committed: p.committed,
            low: p.low,
            high: p.high,
            lag: p.lag,
        }
    }
}

/// 403 for the groups the server's own workers consume with ([`is_internal_group`]), whatever
/// the token: they may be described, never joined, committed or reset over this API (their
/// offsets can be reset with the server stopped, on the data directory).
pub(super) fn guard_internal(group: &str) -> Result<(), ApiError> {
    if is_internal_group(group) {
        return Err(ApiError::Forbidden(format!(
            "consumer group {group:?} belongs to the server's own workers: no token may join, \
             commit or reset it"
        )));
    }
    Ok(())
}

/// 409 when `group` is new and the bus knows `limits.maxGroups` groups already (live ones and
/// those with committed offsets): every group's offsets stay on disk until its topics go.
async fn check_group_capacity(state: &AppState, log: &Log, group: &str) -> Result<(), ApiError> {
    let max = state.config().limits.max_groups;
    let mut known = log.group_names()?;
    known.extend(state.groups().groups().await?);
    known.sort();
    known.dedup();
    if known.binary_search_by(|g| g.as_str().cmp(group)).is_ok() || known.len() < max {
        return Ok(());
    }
    Err(ApiError::Conflict(format!(
        "the bus knows {} consumer groups, the most it may (limits.maxGroups = {max}); \
         reuse a group or delete the topics of unused ones",
        known.len()
    )))
}

/// Existing topics with their partition counts, for the coordinator.
fn topic_partitions(log: &Log) -> Result<Vec<(String, u32)>, ApiError> {
    let mut topics = Vec::new();
    for name in log.topic_names() {
        match log.describe_topic(&name) {
            Ok(info) => topics.push((name, info.config.partitions)),
            Err(LogError::UnknownTopic(_)) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(topics)
}

fn subscription(caller: &Caller, body: JoinBody) -> Result<Subscription, ApiError> {
    if body.topics.is_empty() {
        return Err(ApiError::BadRequest(
            "topics: name at least one topic or pattern".into(),
        ));
    }
    for entry in &body.topics {
        if is_pattern(entry) {
            for word in entry.split('.').filter(|w| *w != "*" && *w != "#") {
                validate_topic_name(word)?;
            }
        } else {
            validate_topic_name(entry)?;
            authorize(caller, entry, Action::Read)?;
        }
    }
    let reset = match body.auto_offset_reset.as_deref() {
        None | Some("earliest") => OffsetReset::Earliest,
        Some("latest") => OffsetReset::Latest,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "autoOffsetReset must be \"earliest\" or \"latest\", got {other:?}"
            )))
        }
    };
    let hidden = if caller.0.has_scope(ADMIN_SCOPE) {
        Vec::new()
    } else {
        vec![MESSAGES_TOPIC.to_owned()]
    };
    Ok(Subscription {
        topics: body.topics,
        hidden,
        reset,
        session_timeout: body.session_timeout_ms.map(Duration::from_millis),
    })
}

/// `POST /api/groups/{group}/members` → 200 `{"memberId","assignment"}`; a rebalance.
#[utoipa::path(
    post,
    path = "/api/groups/{group}/members",
    tag = "groups",
    params(
        ("group" = String, Path, description = "The consumer group"),
    ),
    request_body = JoinBody,
    responses(
        (status = 200, description = "`{memberId, assignment}`", body = serde_json::Value),
    )
)]
pub(crate) async fn join(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    Json(body): Json<JoinBody>,
) -> Result<Response, ApiError> {
    caller.require_scope(CONSUME_SCOPE)?;
    validate_group_name(&group)?;
    guard_internal(&group)?;
    let subscription = subscription(&caller, body)?;
    let log = state.log()?;
    check_group_capacity(&state, log, &group).await?;
    state.charge_write(&caller.0.user_id, WriteCost::ONE)?;
    let topics = topic_partitions(log)?;
    let joined = state
        .groups()
        .join(&group, &caller.0.user_id, subscription, &topics)
        .await?;
    let answer = JoinAnswer {
        member_id: joined.member_id,
        assignment: joined.assignment,
    };
    Ok((StatusCode::OK, Json(answer)).into_response())
}

/// `DELETE /api/groups/{group}/members/{memberId}` → 204; a rebalance. 404 unknown member.
#[utoipa::path(
    delete,
    path = "/api/groups/{group}/members/{memberId}",
    tag = "groups",
    params(
        ("group" = String, Path, description = "The consumer group"),
        ("memberId" = String, Path, description = "The member id the join answered"),
    ),
    responses(
        (status = 204, description = "Left; the group rebalances"),
    )
)]
pub(crate) async fn leave(
    State(state): State<AppState>,
    caller: Caller,
    Path((group, member)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_scope(CONSUME_SCOPE)?;
    validate_group_name(&group)?;
    let topics = topic_partitions(state.log()?)?;
    state
        .groups()
        .leave(&group, &member, &caller.0.user_id, &topics)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where the member reads each leased partition: its position, else the committed offset,
/// else the reset point; never below the low watermark. A start past this node's copy of a
/// shared log (committed through another node a moment ago) is waited for, so that the member
/// does not read again what the group already has.
async fn start_positions(
    log: &Log,
    group: &str,
    lease: &Lease,
) -> Result<Vec<(TopicPartition, u64)>, ApiError> {
    let mut starts = Vec::with_capacity(lease.partitions.len());
    for (tp, position) in &lease.partitions {
        let (low, high) = log.watermarks(&tp.topic, tp.partition)?;
        let start = match position {
            Some(position) => *position,
            None => match log.committed_offset(group, &tp.topic, tp.partition)? {
                Some(committed) => committed,
                None if lease.reset == OffsetReset::Latest => high,
                None => low,
            },
        };
        let (low, high) = log
            .watermarks_reaching(&tp.topic, tp.partition, start)
            .await?;
        starts.push((tp.clone(), start.clamp(low, high)));
    }
    Ok(starts)
}

/// Reads up to `limit` records in total from the partitions, in order; returns them with the
/// positions after them.
async fn read_all(
    log: &Log,
    starts: &[(TopicPartition, u64)],
    limit: usize,
) -> Result<(Vec<ReadRecord>, Vec<(TopicPartition, u64)>), ApiError> {
    let mut records = Vec::new();
    let mut positions = Vec::with_capacity(starts.len());
    for (tp, start) in starts {
        let room = limit - records.len();
        let mut next = *start;
        if room > 0 {
            for record in read_blocking(log, &tp.topic, tp.partition, *start, room).await? {
                next = record.offset + 1;
                records.push(read_record(&tp.topic, record)?);
            }
        }
        positions.push((tp.clone(), next));
    }
    Ok((records, positions))
}

/// Waits until any of the partitions has a record at its start, `wait` elapses or the server
/// shuts down.
async fn wait_any(state: &AppState, log: &Log, starts: &[(TopicPartition, u64)], wait: Duration) {
    let mut waiters = JoinSet::new();
    for (tp, start) in starts {
        let (log, tp, start) = (log.clone(), tp.clone(), *start);
        waiters.spawn(async move { log.wait_for(&tp.topic, tp.partition, start, wait).await });
    }
    let any = async {
        while let Some(done) = waiters.join_next().await {
            if matches!(done, Ok(Ok(true))) {
                return;
            }
        }
        // Nothing assigned, or every waiter timed out or failed: wait out the rest.
        if starts.is_empty() {
            tokio::time::sleep(wait).await;
        }
    };
    tokio::select! {
        () = any => {}
        () = state.shutdown().cancelled() => {}
    }
}

/// `POST /api/groups/{group}/members/{memberId}/poll` → `{"records","assignment"}`; the
/// member's heartbeat. Long-polls up to `waitMs` when no assigned partition has a record.
#[utoipa::path(
    post,
    path = "/api/groups/{group}/members/{memberId}/poll",
    tag = "groups",
    params(
        ("group" = String, Path, description = "The consumer group"),
        ("memberId" = String, Path, description = "The member id the join answered"),
    ),
    request_body = PollBody,
    responses(
        (status = 200, description = "`{records, assignment}`", body = serde_json::Value),
    )
)]
pub(crate) async fn poll(
    State(state): State<AppState>,
    caller: Caller,
    Path((group, member)): Path<(String, String)>,
    Json(body): Json<PollBody>,
) -> Result<Json<PollAnswer>, ApiError> {
    caller.require_scope(CONSUME_SCOPE)?;
    validate_group_name(&group)?;
    let limit = body.limit.unwrap_or(super::records::DEFAULT_READ_LIMIT);
    if limit == 0 || limit > MAX_READ_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_READ_LIMIT}, got {limit}"
        )));
    }
    let wait = Duration::from_millis(body.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let log = state.log()?.clone();
    let topics = topic_partitions(&log)?;
    let lease = state
        .groups()
        .lease(&group, &member, &caller.0.user_id, &topics)
        .await?;
    let starts = start_positions(&log, &group, &lease).await?;
    let (mut records, mut positions) = read_all(&log, &starts, limit).await?;
    if records.is_empty() && !wait.is_zero() {
        wait_any(&state, &log, &starts, wait).await;
        (records, positions) = read_all(&log, &starts, limit).await?;
    }
    state
        .groups()
        .advance(&group, &member, lease.generation, &positions)
        .await?;
    let assignment = lease.partitions.into_iter().map(|(tp, _)| tp).collect();
    Ok(Json(PollAnswer {
        records,
        assignment,
    }))
}

/// `POST /api/groups/{group}/offsets` → 204. All or nothing: 404 unknown member, 409 a
/// partition it does not own or a commit that moves backwards, 416 beyond the high watermark.
#[utoipa::path(
    post,
    path = "/api/groups/{group}/offsets",
    tag = "groups",
    params(
        ("group" = String, Path, description = "The consumer group"),
    ),
    request_body = CommitBody,
    responses(
        (status = 204, description = "Committed"),
        (status = 409, description = "A partition not assigned to the member", body = crate::api::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn commit(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    Json(body): Json<CommitBody>,
) -> Result<StatusCode, ApiError> {
    caller.require_scope(CONSUME_SCOPE)?;
    validate_group_name(&group)?;
    guard_internal(&group)?;
    let log = state.log()?;
    let topics = topic_partitions(log)?;
    let partitions: Vec<TopicPartition> = body
        .offsets
        .iter()
        .map(|o| TopicPartition {
            topic: o.topic.clone(),
            partition: o.partition,
        })
        .collect();
    state
        .groups()
        .check_owner(
            &group,
            (&body.member_id, &caller.0.user_id),
            &partitions,
            &topics,
        )
        .await?;
    for o in &body.offsets {
        precheck_commit(log, &group, o).await?;
    }
    for o in &body.offsets {
        log.commit_offset(&group, &o.topic, o.partition, o.offset)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The log's own commit checks, made before anything is committed so that a refused batch
/// changes nothing. An offset past this node's copy of a shared log is waited for: the records
/// may have been read through another node.
async fn precheck_commit(log: &Log, group: &str, o: &CommitOffset) -> Result<(), ApiError> {
    let (low, high) = log
        .watermarks_reaching(&o.topic, o.partition, o.offset)
        .await?;
    if o.offset > high {
        return Err(LogError::OffsetOutOfRange {
            topic: o.topic.clone(),
            partition: o.partition,
            offset: o.offset,
            earliest: low,
            latest: high,
        }
        .into());
    }
    match log.committed_offset(group, &o.topic, o.partition)? {
        Some(committed) if committed > o.offset => Err(LogError::CommitRegression {
            group: group.to_owned(),
            topic: o.topic.clone(),
            partition: o.partition,
            offset: o.offset,
            committed,
        }
        .into()),
        Some(_) | None => Ok(()),
    }
}

/// `POST /api/groups/{group}/offsets/reset` (admin) → 200 `{"group","topic","offsets"}` once the
/// new offsets are durable (a dry run commits nothing and answers what it would commit). 400 a
/// bad `to`/`shiftBy`, 404 unknown topic or partition, 409 a group with live members, 403 one the
/// server itself consumes with.
#[utoipa::path(
    post,
    path = "/api/groups/{group}/offsets/reset",
    tag = "groups",
    params(
        ("group" = String, Path, description = "The consumer group"),
    ),
    request_body = ResetBody,
    responses(
        (status = 200, description = "`{group, topic, offsets}`", body = serde_json::Value),
        (status = 409, description = "The group has live members", body = crate::api::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn reset(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    Json(body): Json<ResetBody>,
) -> Result<Json<ResetAnswer>, ApiError> {
    caller.require_scope(ADMIN_SCOPE)?;
    validate_group_name(&group)?;
    validate_topic_name(&body.topic)?;
    let plan = ResetPlan {
        to: reset_place(&body)?,
        partitions: body.partitions.clone(),
        dry_run: body.dry_run,
    };
    guard_internal(&group)?;
    let log = state.log()?.clone();
    log.describe_topic(&body.topic)?;
    let topics = topic_partitions(&log)?;
    let coordinator = state.groups().for_reset(&group, &topics).await?;
    let moved = {
        let (log, group, topic) = (log.clone(), group.clone(), body.topic.clone());
        blocking(move || {
            let reset = || log.reset_offsets_by_plan(&group, &topic, &plan);
            Ok(coordinator.while_inactive(&group, &topics, reset)??)
        })
        .await?
    };
    log.sync().await?;
    let offsets = moved
        .into_iter()
        .map(|(partition, offset)| ResetOffset { partition, offset })
        .collect();
    Ok(Json(ResetAnswer {
        group,
        topic: body.topic,
        offsets,
    }))
}

/// Where a reset body moves the offsets: exactly one of `to` and `shiftBy`.
fn reset_place(body: &ResetBody) -> Result<ResetTo, ApiError> {
    match (&body.to, body.shift_by) {
        (Some(to), None) => reset_target(to),
        (None, Some(delta)) => Ok(ResetTo::ShiftBy(delta)),
        _ => Err(ApiError::BadRequest(
            "give exactly one of to (where to move the offsets) and shiftBy (how many records \
             to move them by)"
                .into(),
        )),
    }
}

/// A reset's `to`: `"earliest"`, `"latest"`, an offset, or an RFC 3339 UTC time.
fn reset_target(to: &serde_json::Value) -> Result<ResetTo, ApiError> {
    let invalid = || {
        ApiError::BadRequest(format!(
            "to must be \"earliest\", \"latest\", an offset (a number) or an RFC 3339 UTC time \
             such as \"2024-05-01T10:00:00Z\", got {to}"
        ))
    };
    match to {
        serde_json::Value::Number(n) => n.as_u64().map(ResetTo::Offset).ok_or_else(invalid),
        serde_json::Value::String(s) if s == "earliest" => Ok(ResetTo::Earliest),
        serde_json::Value::String(s) if s == "latest" => Ok(ResetTo::Latest),
        serde_json::Value::String(s) => {
            let time = humantime::parse_rfc3339(s).map_err(|_| invalid())?;
            let since_epoch = time
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| invalid())?;
            let ms = i64::try_from(since_epoch.as_millis()).map_err(|_| invalid())?;
            Ok(ResetTo::Timestamp(ms))
        }
        _ => Err(invalid()),
    }
}

/// `GET /api/groups` → `{"items":[{"group"}…]}`: groups with committed offsets or live members.
#[utoipa::path(
    get,
    path = "/api/groups",
    tag = "groups",
    responses(
        (status = 200, description = "`{items: [{group}]}`", body = serde_json::Value),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<GroupList>, ApiError> {
    caller.require_scope(CONSUME_SCOPE)?;
    let mut names = state.log()?.group_names()?;
    names.extend(state.groups().groups().await?);
    names.sort();
    names.dedup();
    let items = names.into_iter().map(|group| GroupName { group }).collect();
    Ok(Json(GroupList { items }))
}

/// `GET /api/groups/{group}` → members with their assignment, and committed offsets and lag
/// per topic the group has offsets on or is assigned. 404 for a group with neither.
#[utoipa::path(
    get,
    path = "/api/groups/{group}",
    tag = "groups",
    params(
        ("group" = String, Path, description = "The consumer group"),
    ),
    responses(
        (status = 200, description = "Members with their assignment, committed offsets and lag", body = serde_json::Value),
    )
)]
pub(crate) async fn describe(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
) -> Result<Json<GroupView>, ApiError> {
    caller.require_scope(CONSUME_SCOPE)?;
    validate_group_name(&group)?;
    let log = state.log()?;
    let topics = topic_partitions(log)?;
    let members = state.groups().describe(&group, &topics).await?;
    let mut names = log.group_topics(&group)?;
    names.extend(
        members
            .iter()
            .flat_map(|m| m.assignment.iter().map(|tp| tp.topic.clone())),
    );
    names.sort();
    names.dedup();
    if names.is_empty() && members.is_empty() {
        return Err(ApiError::NotFound(format!("consumer group {group:?}")));
    }
    let mut offsets = Vec::new();
    for topic in names.into_iter().filter(|t| visible_to(&caller.0, t)) {
        match log.group_lag(&group, &topic) {
            Ok(lags) => {
                let partitions = lags.into_iter().map(LagView::from).collect();
                offsets.push(TopicOffsets { topic, partitions });
            }
            Err(LogError::UnknownTopic(_)) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(Json(GroupView {
        group,
        members,
        offsets,
    }))
}
