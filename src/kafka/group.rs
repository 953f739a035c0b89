//! One consumer group of the classic protocol, owned by one task: members and their opaque
//! protocol metadata, the generation, the leader, the assignments the leader hands in, and the
//! timers (session timeout evicts a silent member, rebalance timeout bounds how long a join
//! waits for the known members). Every request about the group is a [`Command`] to its task, so
//! concurrent joins, syncs and heartbeats of a group are applied one at a time, in order, and
//! groups never wait for each other.
//!
//! The broker never decodes an assignment: the leader (chosen on the first join and kept while
//! it stays) gets every member's metadata in its JoinGroup answer and sends back one blob per
//! member in SyncGroup. States as Kafka names them: `Empty`, `PreparingRebalance`,
//! `CompletingRebalance`, `Stable`. Committed offsets are not kept here (see `offsets`).
//!
//! A group without members ends its task after the last member's session timeout (or
//! [`DEFAULT_IDLE`] if it never had one), so idle groups do not pile up in memory; its
//! committed offsets stay in the log.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long a group that never had a member (a DescribeGroups or a simple consumer's commit
/// named it) lives on without one.
pub(super) const DEFAULT_IDLE: Duration = Duration::from_secs(30);

/// What a join asks.
#[derive(Debug)]
pub(super) struct JoinArgs {
    pub(super) member_id: String,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) protocol_type: String,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
}

/// A join's outcome: the generation the member is in, or an error.
#[derive(Debug, Clone, Default)]
pub(super) struct Joined {
    pub(super) error: i16,
    pub(super) generation: i32,
    pub(super) protocol_type: String,
    pub(super) protocol: String,
    pub(super) leader: String,
    pub(super) member_id: String,
    /// Every member's id and metadata, for the leader only.
    pub(super) members: Vec<(String, Bytes)>,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub(super) struct MemberView {
    pub(super) member_id: String,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) metadata: Bytes,
    pub(super) assignment: Bytes,
}

/// The group as DescribeGroups and ListGroups show it.
#[derive(Debug, Clone)]
pub(super) struct GroupView {
    pub(super) state: &'static str,
    pub(super) protocol_type: String,
    pub(super) protocol: String,
    pub(super) members: Vec<MemberView>,
}

/// A request to the group's owner task.
#[derive(Debug)]
pub(super) enum Command {
    Join(JoinArgs, oneshot::Sender<Joined>),
    Sync {
        member_id: String,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        reply: oneshot::Sender<Result<Bytes, ResponseError>>,
    },
    Heartbeat {
        member_id: String,
        generation: i32,
        reply: oneshot::Sender<Option<ResponseError>>,
    },
    Leave {
        member_ids: Vec<String>,
        reply: oneshot::Sender<Vec<(String, Option<ResponseError>)>>,
    },
    /// May this member of this generation commit offsets? (`-1` / empty: a simple consumer.)
    MayCommit {
        member_id: String,
        generation: i32,
        reply: oneshot::Sender<Option<ResponseError>>,
    },
    Describe(oneshot::Sender<GroupView>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    /// Waiting for the known members to (re)join, until the deadline.
    PreparingRebalance {
        deadline: Instant,
    },
    /// Joined; waiting for the leader's assignments.
    CompletingRebalance,
    Stable,
}

#[derive(Debug)]
struct Member {
    client_id: String,
    client_host: String,
    protocols: Vec<(String, Bytes)>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    /// Evicted when this passes without a heartbeat, sync or join.
    expires: Instant,
    pending_join: Option<oneshot::Sender<Joined>>,
    pending_sync: Option<oneshot::Sender<Result<Bytes, ResponseError>>>,
    assignment: Bytes,
}

/// The state machine; the owner task applies commands and ticks to it.
#[derive(Debug)]
pub(super) struct Group {
    name: String,
    state: State,
    generation: i32,
    protocol_type: String,
    protocol: String,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    next_member: u64,
    /// How long the group lives on without members: the last joiner's session timeout.
    idle_timeout: Duration,
}

impl Group {
    /// The group's name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Whether the group has no members.
    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// How long the group lives on without members.
    pub(super) fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    pub(super) fn new(name: String) -> Group {
        Group {
            name,
            state: State::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: None,
            members: BTreeMap::new(),
            next_member: 0,
            idle_timeout: DEFAULT_IDLE,
        }
    }

    /// Applies one command at `now`.
    pub(super) fn apply(&mut self, command: Command, now: Instant) {
        match command {
            Command::Join(args, reply) => self.join(args, reply, now),
            Command::Sync {
                member_id,
                generation,
                assignments,
                reply,
            } => self.sync(&member_id, generation, assignments, reply, now),
            Command::Heartbeat {
                member_id,
                generation,
                reply,
            } => {
                let _ = reply.send(self.heartbeat(&member_id, generation, now));
            }
            Command::Leave { member_ids, reply } => {
                let answers = member_ids
                    .into_iter()
                    .map(|id| {
                        let outcome = self.leave(&id, now);
                        (id, outcome)
                    })
                    .collect();
                let _ = reply.send(answers);
            }
            Command::MayCommit {
                member_id,
                generation,
                reply,
            } => {
                let _ = reply.send(self.may_commit(&member_id, generation, now));
            }
            Command::Describe(reply) => {
                let _ = reply.send(self.view());
            }
        }
    }

    /// The next moment a timer fires, if any.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.pending_join.is_none())
            .map(|m| m.expires);
        let rebalance = match self.state {
            State::PreparingRebalance { deadline } => Some(deadline),
            _ => None,
        };
        sessions.chain(rebalance).min()
    }

    /// Evicts members whose session expired and ends a rebalance whose time is up.
    pub(super) fn tick(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.pending_join.is_none() && m.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.name, member = %id, "kafka: member's session expired");
            self.remove_member(id);
        }
        if let State::PreparingRebalance { deadline } = self.state {
            if deadline <= now {
                let laggards: Vec<String> = self
                    .members
                    .iter()
                    .filter(|(_, m)| m.pending_join.is_none())
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &laggards {
                    self.remove_member(id);
                }
            }
        }
        if !expired.is_empty() {
            self.membership_changed(now);
        }
        self.complete_join_if_ready(now);
    }

    fn join(&mut self, args: JoinArgs, reply: oneshot::Sender<Joined>, now: Instant) {
        if let Some(error) = self.join_refusal(&args) {
            let _ = reply.send(Joined {
                error: error.code(),
                generation: -1,
                member_id: args.member_id,
                ..Joined::default()
            });
            return;
        }
        self.idle_timeout = args.session_timeout;
        let member_id = if args.member_id.is_empty() {
            self.next_member += 1;
            format!(
                "{}-{}-{}",
                args.client_id,
                self.next_member,
                uuid::Uuid::new_v4().simple()
            )
        } else {
            args.member_id.clone()
        };
        if self.members.is_empty() {
            self.protocol_type = args.protocol_type.clone();
        }
        let member = self.members.entry(member_id).or_insert_with(|| Member {
            client_id: args.client_id.clone(),
            client_host: args.client_host.clone(),
            protocols: Vec::new(),
            session_timeout: args.session_timeout,
            rebalance_timeout: args.rebalance_timeout,
            expires: now,
            pending_join: None,
            pending_sync: None,
            assignment: Bytes::new(),
        });
        member.protocols = args.protocols;
        member.session_timeout = args.session_timeout;
        member.rebalance_timeout = args.rebalance_timeout;
        member.expires = now + args.session_timeout;
        member.pending_join = Some(reply);
        if !matches!(self.state, State::PreparingRebalance { .. }) {
            self.prepare_rebalance(now);
        }
        self.complete_join_if_ready(now);
    }

    fn join_refusal(&self, args: &JoinArgs) -> Option<ResponseError> {
        if !args.member_id.is_empty() && !self.members.contains_key(&args.member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        if args.protocol_type.is_empty() || args.protocols.is_empty() {
            return Some(ResponseError::InconsistentGroupProtocol);
        }
        let others = self.members.iter().filter(|(id, _)| **id != args.member_id);
        let mut others = others.peekable();
        if others.peek().is_some() && args.protocol_type != self.protocol_type {
            return Some(ResponseError::InconsistentGroupProtocol);
        }
        let shares_one = |member: &Member| {
            args.protocols
                .iter()
                .any(|(name, _)| member.protocols.iter().any(|(theirs, _)| theirs == name))
        };
        if others.any(|(_, m)| !shares_one(m)) {
            return Some(ResponseError::InconsistentGroupProtocol);
        }
        if args.session_timeout.is_zero() {
            return Some(ResponseError::InvalidSessionTimeout);
        }
        None
    }

    /// Starts a rebalance: members waiting for a sync are told to rejoin; the join waits for
    /// the known members at most the longest rebalance timeout.
    fn prepare_rebalance(&mut self, now: Instant) {
        let wait = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.state = State::PreparingRebalance {
            deadline: now + wait,
        };
        for member in self.members.values_mut() {
            if let Some(sync) = member.pending_sync.take() {
                let _ = sync.send(Err(ResponseError::RebalanceInProgress));
            }
        }
    }

    /// Once every known member has (re)joined: a new generation, the protocol they all
    /// support, the leader, and every join answered.
    fn complete_join_if_ready(&mut self, now: Instant) {
        if !matches!(self.state, State::PreparingRebalance { .. }) {
            return;
        }
        if self.members.is_empty() {
            self.become_empty();
            return;
        }
        if self.members.values().any(|m| m.pending_join.is_none()) {
            return;
        }
        self.generation += 1;
        self.protocol = self.common_protocol();
        let leader = match &self.leader {
            Some(leader) if self.members.contains_key(leader) => leader.clone(),
            _ => self.members.keys().next().cloned().unwrap_or_default(),
        };
        self.leader = Some(leader.clone());
        self.state = State::CompletingRebalance;
        let everyone: Vec<(String, Bytes)> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), self.metadata_of(m)))
            .collect();
        for (id, member) in &mut self.members {
            member.expires = now + member.session_timeout;
            if let Some(reply) = member.pending_join.take() {
                let _ = reply.send(Joined {
                    error: 0,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader {
                        everyone.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
        tracing::debug!(group = %self.name, generation = self.generation, members = self.members.len(), "kafka: group joined");
    }

    /// The first protocol of the first member that every member supports.
    fn common_protocol(&self) -> String {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return String::new();
        };
        let all: Vec<&Member> = self.members.values().collect();
        first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .find(|name| {
                all.iter()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *name))
            })
            .or_else(|| first.protocols.first().map(|(name, _)| name))
            .cloned()
            .unwrap_or_default()
    }

    fn metadata_of(&self, member: &Member) -> Bytes {
        member
            .protocols
            .iter()
            .find(|(name, _)| *name == self.protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        reply: oneshot::Sender<Result<Bytes, ResponseError>>,
        now: Instant,
    ) {
        if let Some(error) = self.generation_check(member_id, generation) {
            let _ = reply.send(Err(error));
            return;
        }
        let is_leader = self.leader.as_deref() == Some(member_id);
        let Some(member) = self.members.get_mut(member_id) else {
            let _ = reply.send(Err(ResponseError::UnknownMemberId));
            return;
        };
        member.expires = now + member.session_timeout;
        match self.state {
            State::PreparingRebalance { .. } | State::Empty => {
                let _ = reply.send(Err(ResponseError::RebalanceInProgress));
            }
            State::Stable => {
                let _ = reply.send(Ok(member.assignment.clone()));
            }
            State::CompletingRebalance => {
                member.pending_sync = Some(reply);
                if is_leader {
                    self.assign(assignments);
                }
            }
        }
    }

    /// The leader's assignments: stored, every waiting member answered, the group stable.
    fn assign(&mut self, assignments: Vec<(String, Bytes)>) {
        let mut assignments: BTreeMap<String, Bytes> = assignments.into_iter().collect();
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
        }
        for (id, member) in &mut self.members {
            member.assignment = assignments.remove(id).unwrap_or_default();
            if let Some(sync) = member.pending_sync.take() {
                let _ = sync.send(Ok(member.assignment.clone()));
            }
        }
        self.state = State::Stable;
    }

    fn heartbeat(
        &mut self,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> Option<ResponseError> {
        let Some(member) = self.members.get_mut(member_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        member.expires = now + member.session_timeout;
        if matches!(self.state, State::PreparingRebalance { .. }) {
            return Some(ResponseError::RebalanceInProgress);
        }
        if generation != self.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        None
    }

    fn may_commit(
        &mut self,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> Option<ResponseError> {
        if generation < 0 && member_id.is_empty() {
            // A consumer that manages its own partitions (no group membership).
            return None;
        }
        let error = self.generation_check(member_id, generation);
        if error.is_none() {
            if let Some(member) = self.members.get_mut(member_id) {
                member.expires = now + member.session_timeout;
            }
            if self.state == State::CompletingRebalance {
                return Some(ResponseError::RebalanceInProgress);
            }
        }
        error
    }

    fn generation_check(&self, member_id: &str, generation: i32) -> Option<ResponseError> {
        if !self.members.contains_key(member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        (generation != self.generation).then_some(ResponseError::IllegalGeneration)
    }

    fn leave(&mut self, member_id: &str, now: Instant) -> Option<ResponseError> {
        if !self.members.contains_key(member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        tracing::debug!(group = %self.name, member = %member_id, "kafka: member left");
        self.remove_member(member_id);
        self.membership_changed(now);
        self.complete_join_if_ready(now);
        None
    }

    fn remove_member(&mut self, member_id: &str) {
        if let Some(member) = self.members.remove(member_id) {
            if let Some(join) = member.pending_join {
                let _ = join.send(Joined {
                    error: ResponseError::UnknownMemberId.code(),
                    generation: -1,
                    member_id: member_id.to_owned(),
                    ..Joined::default()
                });
            }
            if let Some(sync) = member.pending_sync {
                let _ = sync.send(Err(ResponseError::UnknownMemberId));
            }
        }
    }

    /// After a member went: the others rebalance, or the group is empty.
    fn membership_changed(&mut self, now: Instant) {
        if self.members.is_empty() {
            self.become_empty();
        } else if !matches!(self.state, State::PreparingRebalance { .. }) {
            self.prepare_rebalance(now);
        }
    }

    fn become_empty(&mut self) {
        if self.state != State::Empty {
            self.generation += 1;
        }
        self.state = State::Empty;
        self.leader = None;
        self.protocol.clear();
    }

    fn view(&self) -> GroupView {
        GroupView {
            state: match self.state {
                State::Empty => "Empty",
                State::PreparingRebalance { .. } => "PreparingRebalance",
                State::CompletingRebalance => "CompletingRebalance",
                State::Stable => "Stable",
            },
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            members: self
                .members
                .iter()
                .map(|(id, m)| MemberView {
                    member_id: id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: self.metadata_of(m),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
