//! The group APIs of the classic protocol: FindCoordinator (this broker alone; on a cluster the
//! node holding the group's lease, see `placement`), JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, ListGroups and DescribeGroups. Each group is owned by its own task (`group`);
//! [`Groups`] starts it on first use and hands it requests. On a cluster a node that does not
//! coordinate a group answers its calls `NOT_COORDINATOR`.
//!
//! Groups live in memory: a restart forgets members (they rejoin, as after a coordinator
//! failover) but never committed offsets, which are the log's (`offsets`).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    BrokerId, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::access::Session;
use super::group::{self, Command, GroupView, JoinArgs, Joined};
use super::{placement, Broker};

/// Commands queued to one group's task before senders wait.
const GROUP_QUEUE: usize = 256;

/// The live groups, each a handle to its owner task.
#[derive(Debug)]
pub(super) struct Groups {
    live: Mutex<HashMap<String, mpsc::Sender<Command>>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Groups {
    pub(super) fn new(shutdown: CancellationToken, tasks: TaskTracker) -> Groups {
        Groups {
            live: Mutex::new(HashMap::new()),
            shutdown,
            tasks,
        }
    }

    /// The group's task, started on first use.
    fn handle(&self, name: &str) -> mpsc::Sender<Command> {
        let mut live = self.live.lock();
        if let Some(sender) = live.get(name).filter(|s| !s.is_closed()) {
            return sender.clone();
        }
        let (sender, receiver) = mpsc::channel(GROUP_QUEUE);
        self.tasks
            .spawn(run_group(name.to_owned(), receiver, self.shutdown.clone()));
        live.insert(name.to_owned(), sender.clone());
        sender
    }

    /// Sends a command to the group and waits for its answer; `None` when the server stops.
    /// A group whose task ended idle between the lookup and the send gets a new task.
    pub(super) async fn ask<T>(
        &self,
        name: &str,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(command)) = self.handle(name).send(command(reply)).await {
            self.handle(name).send(command).await.ok()?;
        }
        answer.await.ok()
    }

    /// Drops the group's task (this node no longer coordinates it): it ends once the calls
    /// in flight are answered, and its members rejoin wherever the group is coordinated now.
    pub(super) fn forget(&self, name: &str) {
        if self.live.lock().remove(name).is_some() {
            tracing::info!(
                group = name,
                "kafka: this node no longer coordinates the group"
            );
        }
    }

    /// Names of the groups with a task; the entries of ended tasks are dropped.
    pub(super) fn live_names(&self) -> Vec<String> {
        let mut live = self.live.lock();
        live.retain(|_, sender| !sender.is_closed());
        live.keys().cloned().collect()
    }
}

/// `limits.maxGroups` over Kafka: one count with the HTTP event bus's groups.
pub(crate) struct GroupLimit {
    /// Most groups: Kafka's live ones, HTTP's live ones and every group with committed offsets.
    pub(crate) max: usize,
    /// The HTTP event bus's live groups.
    pub(crate) http_groups: Box<dyn Fn() -> Vec<String> + Send + Sync>,
}

impl std::fmt::Debug for GroupLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupLimit")
            .field("max", &self.max)
            .finish()
    }
}

/// Whether a join of `name` would make one group more than `limits.maxGroups`.
fn over_group_limit(broker: &Broker, name: &str) -> bool {
    let limit = &broker.group_limit;
    let mut known = broker.groups.live_names();
    known.extend(broker.log.group_names().unwrap_or_default());
    known.extend((limit.http_groups)());
    known.sort();
    known.dedup();
    known.binary_search_by(|g| g.as_str().cmp(name)).is_err() && known.len() >= limit.max
}

/// Runs the group's owner task until `shutdown` or until every handle to it is gone.
pub(super) async fn run_group(
    name: String,
    mut commands: mpsc::Receiver<Command>,
    shutdown: CancellationToken,
) {
    let mut group = group::Group::new(name);
    let mut idle_since = Some(Instant::now());
    loop {
        let wake = group.next_deadline();
        let idle_end = idle_since.map(|since| since + group.idle_timeout());
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => group.apply(command, Instant::now()),
                None => break,
            },
            () = sleep_until_some(wake) => group.tick(Instant::now()),
            () = sleep_until_some(idle_end) => {
                end_idle(&mut group, &mut commands);
                break;
            }
            () = shutdown.cancelled() => break,
        }
        idle_since = match group.is_empty() {
            true => idle_since.or_else(|| Some(Instant::now())),
            false => None,
        };
    }
}

/// Refuses new commands (senders then start a new task) and answers those already queued,
/// so none is dropped unanswered but a join's, whose client retries.
fn end_idle(group: &mut group::Group, commands: &mut mpsc::Receiver<Command>) {
    tracing::debug!(group = %group.name(), "kafka: an idle group ends");
    commands.close();
    while let Ok(command) = commands.try_recv() {
        group.apply(command, Instant::now());
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn text(s: &StrBytes) -> String {
    s.as_str().to_owned()
}

/// FindCoordinator (v0–v4): the broker coordinating each group asked (v4 asks several).
pub(super) async fn find_coordinator(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in request.coordinator_keys {
            let found = placement::coordinator(broker, key.as_str()).await;
            let answer = Coordinator::default().with_key(key);
            coordinators.push(match found {
                Ok(at) => answer
                    .with_node_id(BrokerId(at.id))
                    .with_host(StrBytes::from_string(at.host))
                    .with_port(at.port),
                Err(error) => answer
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(error.code()),
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match placement::coordinator(broker, request.key.as_str()).await {
        Ok(at) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(at.id))
            .with_host(StrBytes::from_string(at.host))
            .with_port(at.port),
        Err(error) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(-1))
            .with_port(-1)
            .with_error_code(error.code()),
    }
}

/// JoinGroup: answered once the group's join completes (or fails). A new group over
/// `limits.maxGroups` is refused with `GROUP_MAX_SIZE_REACHED`: not retriable, so the client
/// reports it instead of retrying in silence.
pub(super) async fn join(
    broker: &Broker,
    session: &Session,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    if let Some(error) = placement::refusal(broker, request.group_id.0.as_str()).await {
        return join_answer(Joined {
            error: error.code(),
            generation: -1,
            member_id: text(&request.member_id),
            ..Joined::default()
        });
    }
    if over_group_limit(broker, request.group_id.0.as_str()) {
        tracing::warn!(group = %request.group_id.0.as_str(), "kafka: join refused, limits.maxGroups reached");
        return join_answer(Joined {
            error: ResponseError::GroupMaxSizeReached.code(),
            generation: -1,
            member_id: text(&request.member_id),
            ..Joined::default()
        });
    }
    let session_timeout = millis(request.session_timeout_ms);
    // v0 had no rebalance timeout: it was the session timeout.
    let rebalance_timeout = match request.rebalance_timeout_ms {
        ms if ms > 0 => millis(ms),
        _ => session_timeout,
    };
    let args = JoinArgs {
        member_id: text(&request.member_id),
        client_id: String::new(),
        client_host: format!(
            "/{}",
            session.peer.rsplit_once(':').map_or("", |(ip, _)| ip)
        ),
        protocol_type: text(&request.protocol_type),
        protocols: request
            .protocols
            .iter()
            .map(|p| (text(&p.name), p.metadata.clone()))
            .collect(),
        session_timeout,
        rebalance_timeout,
    };
    let joined = broker
        .groups
        .ask(request.group_id.0.as_str(), |reply| {
            Command::Join(args, reply)
        })
        .await
        .unwrap_or_else(|| Joined {
            error: ResponseError::CoordinatorNotAvailable.code(),
            generation: -1,
            ..Joined::default()
        });
    join_answer(joined)
}

fn join_answer(joined: Joined) -> JoinGroupResponse {
    let members = joined
        .members
        .into_iter()
        .map(|(id, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_string(id))
                .with_metadata(metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(joined.error)
        .with_generation_id(joined.generation)
        .with_protocol_type(Some(StrBytes::from_string(joined.protocol_type)))
        .with_protocol_name(Some(StrBytes::from_string(joined.protocol)))
        .with_leader(StrBytes::from_string(joined.leader))
        .with_member_id(StrBytes::from_string(joined.member_id))
        .with_members(members)
}

/// SyncGroup: the member's assignment, once the leader handed them in.
pub(super) async fn sync(broker: &Broker, request: SyncGroupRequest) -> SyncGroupResponse {
    if let Some(error) = placement::refusal(broker, request.group_id.0.as_str()).await {
        return SyncGroupResponse::default()
            .with_protocol_type(request.protocol_type)
            .with_protocol_name(request.protocol_name)
            .with_error_code(error.code());
    }
    let assignments: Vec<(String, Bytes)> = request
        .assignments
        .iter()
        .map(|a| (text(&a.member_id), a.assignment.clone()))
        .collect();
    let outcome = broker
        .groups
        .ask(request.group_id.0.as_str(), |reply| Command::Sync {
            member_id: text(&request.member_id),
            generation: request.generation_id,
            assignments,
            reply,
        })
        .await
        .unwrap_or(Err(ResponseError::CoordinatorNotAvailable));
    let answer = SyncGroupResponse::default()
        .with_protocol_type(request.protocol_type.clone())
        .with_protocol_name(request.protocol_name.clone());
    match outcome {
        Ok(assignment) => answer.with_assignment(assignment),
        Err(error) => answer.with_error_code(error.code()),
    }
}

/// Heartbeat: `REBALANCE_IN_PROGRESS` tells the member to rejoin.
pub(super) async fn heartbeat(broker: &Broker, request: HeartbeatRequest) -> HeartbeatResponse {
    if let Some(error) = placement::refusal(broker, request.group_id.0.as_str()).await {
        return HeartbeatResponse::default().with_error_code(error.code());
    }
    let error = broker
        .groups
        .ask(request.group_id.0.as_str(), |reply| Command::Heartbeat {
            member_id: text(&request.member_id),
            generation: request.generation_id,
            reply,
        })
        .await
        .unwrap_or(Some(ResponseError::CoordinatorNotAvailable));
    HeartbeatResponse::default().with_error_code(error.map_or(0, |e| e.code()))
}

/// LeaveGroup: one member (v0–v2) or several (v3+); the others rebalance.
pub(super) async fn leave(
    broker: &Broker,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    if let Some(error) = placement::refusal(broker, request.group_id.0.as_str()).await {
        return LeaveGroupResponse::default().with_error_code(error.code());
    }
    let member_ids: Vec<String> = if version >= 3 {
        request.members.iter().map(|m| text(&m.member_id)).collect()
    } else {
        vec![text(&request.member_id)]
    };
    let outcomes = broker
        .groups
        .ask(request.group_id.0.as_str(), |reply| Command::Leave {
            member_ids,
            reply,
        })
        .await
        .unwrap_or_default();
    if version < 3 {
        let error = outcomes.first().and_then(|(_, e)| *e);
        return LeaveGroupResponse::default().with_error_code(error.map_or(0, |e| e.code()));
    }
    let members = outcomes
        .into_iter()
        .map(|(id, error)| {
            MemberResponse::default()
                .with_member_id(StrBytes::from_string(id))
                .with_error_code(error.map_or(0, |e| e.code()))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}

/// ListGroups: the live groups and every group with committed offsets (HTTP groups and the
/// server's own included).
pub(super) async fn list(broker: &Broker, _request: ListGroupsRequest) -> ListGroupsResponse {
    let mut names: Vec<String> = broker.groups.live_names();
    names.extend(broker.log.group_names().unwrap_or_default());
    names.sort();
    names.dedup();
    let mut groups = Vec::with_capacity(names.len());
    for name in names {
        let view = describe_one(broker, &name).await;
        groups.push(
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(name)))
                .with_protocol_type(StrBytes::from_string(view.protocol_type))
                .with_group_state(StrBytes::from_static_str(view.state))
                .with_group_type(StrBytes::from_static_str("classic")),
        );
    }
    ListGroupsResponse::default().with_groups(groups)
}

/// DescribeGroups: state, protocol and members with their metadata and assignments.
pub(super) async fn describe(
    broker: &Broker,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        if let Some(error) = placement::refusal(broker, group_id.0.as_str()).await {
            groups.push(
                DescribedGroup::default()
                    .with_group_id(group_id)
                    .with_error_code(error.code()),
            );
            continue;
        }
        let view = describe_one(broker, group_id.0.as_str()).await;
        let members = view
            .members
            .into_iter()
            .map(|m| {
                DescribedGroupMember::default()
                    .with_member_id(StrBytes::from_string(m.member_id))
                    .with_client_id(StrBytes::from_string(m.client_id))
                    .with_client_host(StrBytes::from_string(m.client_host))
                    .with_member_metadata(m.metadata)
                    .with_member_assignment(m.assignment)
            })
            .collect();
        groups.push(
            DescribedGroup::default()
                .with_group_id(group_id)
                .with_group_state(StrBytes::from_static_str(view.state))
                .with_protocol_type(StrBytes::from_string(view.protocol_type))
                .with_protocol_data(StrBytes::from_string(view.protocol))
                .with_members(members),
        );
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

/// A live group's view; a group without a task is `Empty` (or `Dead` when it never existed).
async fn describe_one(broker: &Broker, name: &str) -> GroupView {
    let live = broker.groups.live.lock().contains_key(name);
    if live {
        if let Some(view) = broker.groups.ask(name, Command::Describe).await {
            return view;
        }
    }
    let known = broker
        .log
        .group_names()
        .unwrap_or_default()
        .iter()
        .any(|g| g == name);
    GroupView {
        state: if known { "Empty" } else { "Dead" },
        protocol_type: if known {
            "consumer".into()
        } else {
            String::new()
        },
        protocol: String::new(),
        members: Vec::new(),
    }
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
