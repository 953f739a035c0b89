//! The group coordinator: in-memory membership, round-robin partition assignment, session
//! expiry and each member's read positions.
//!
//! Every call first expires the members whose session ran out (lazily: there is no background
//! task), then re-resolves the group's subscriptions against the topics the caller passes in, so
//! topics created since are picked up. The assignment is a pure function of the members (sorted
//! by id) and the matching partitions; whenever it changes (join, leave, expiry, a new matching
//! topic) the group's generation is bumped and every member's read positions are dropped, so
//! members restart from the committed offsets.

use parking_lot::{Mutex, MutexGuard};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::pattern_matches;

/// Session timeout of a member whose join does not set one.
pub(crate) const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest session timeout a join may ask for.
pub(crate) const MIN_SESSION_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest session timeout a join may ask for.
pub(crate) const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(300);

/// What the coordinator refuses. Serializable, as are the calls' answers below, so that a
/// coordinator on another node (`cluster::groups`) can give them.
#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub(crate) enum BusError {
    /// No live member of that id in the group (never joined, left, or expired).
    #[error("group {group:?} has no member {member:?} (it left, expired, or never joined)")]
    UnknownMember {
        /// The group.
        group: String,
        /// The member id.
        member: String,
    },
    /// The member does not own the partition in the group's current assignment.
    #[error("member {member:?} does not own {topic}/{partition} in the current assignment")]
    NotOwner {
        /// The member id.
        member: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// The group has live members, so its offsets may not be moved under them.
    #[error(
        "consumer group {group:?} has {members} live member(s): stop its consumers (or wait \
         for their session timeout) first"
    )]
    ActiveGroup {
        /// The group.
        group: String,
        /// How many live members it has.
        members: usize,
    },
    /// The session timeout is outside the accepted range.
    #[error("sessionTimeoutMs must be between {min} and {max}, got {got}")]
    SessionTimeout {
        /// Lowest accepted, in ms.
        min: u128,
        /// Highest accepted, in ms.
        max: u128,
        /// What was asked for, in ms.
        got: u128,
    },
}

/// One partition of one topic.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub(crate) struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
}

/// Where a member starts on a partition its group has no committed offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub(crate) enum OffsetReset {
    /// The first retained record.
    #[default]
    Earliest,
    /// The high watermark: only records appended from then on.
    Latest,
}

/// What a member subscribes to.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Subscription {
    /// Topic names or patterns.
    pub topics: Vec<String>,
    /// Topics the member may never be assigned, whatever its patterns match.
    pub hidden: Vec<String>,
    /// Where to start without a committed offset.
    pub reset: OffsetReset,
    /// Session timeout; the coordinator's default when `None`.
    pub session_timeout: Option<Duration>,
}

impl Subscription {
    fn wants(&self, topic: &str) -> bool {
        !self.hidden.iter().any(|h| h == topic)
            && self.topics.iter().any(|p| pattern_matches(p, topic))
    }
}

/// A join's answer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Joined {
    /// The new member's id.
    pub member_id: String,
    /// Its partitions after the rebalance the join caused.
    pub assignment: Vec<TopicPartition>,
}

/// A member's partitions at one generation, with its read position on each (`None`: start
/// from the committed offset).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Lease {
    /// The group's generation this lease belongs to.
    pub generation: u64,
    /// Owned partitions and positions, sorted.
    pub partitions: Vec<(TopicPartition, Option<u64>)>,
    /// Where to start without a committed offset.
    pub reset: OffsetReset,
}

/// One member as `describe` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MemberView {
    /// Member id.
    pub member_id: String,
    /// What it subscribed to.
    pub topics: Vec<String>,
    /// Its partitions.
    pub assignment: Vec<TopicPartition>,
}

#[derive(Debug)]
struct Member {
    /// The user that joined; the member id works for it alone.
    owner: String,
    subscription: Subscription,
    timeout: Duration,
    last_seen: Instant,
    positions: HashMap<TopicPartition, u64>,
}

#[derive(Debug, Default)]
struct Group {
    generation: u64,
    members: BTreeMap<String, Member>,
    assignment: BTreeMap<TopicPartition, String>,
}

impl Group {
    /// Drops expired members and recomputes the assignment; a change is a rebalance.
    fn refresh(&mut self, now: Instant, topics: &[(String, u32)]) {
        let before = self.members.len();
        self.members
            .retain(|_, m| now.duration_since(m.last_seen) <= m.timeout);
        let assignment = assign(&self.members, topics);
        if self.members.len() != before || assignment != self.assignment {
            self.rebalance(assignment);
        }
    }

    fn rebalance(&mut self, assignment: BTreeMap<TopicPartition, String>) {
        self.generation += 1;
        self.assignment = assignment;
        for member in self.members.values_mut() {
            member.positions.clear();
        }
    }

    fn owned_by(&self, member: &str) -> Vec<TopicPartition> {
        self.assignment
            .iter()
            .filter(|(_, owner)| owner.as_str() == member)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    fn member_mut(&mut self, group: &str, member: &str) -> Result<&mut Member, BusError> {
        self.members
            .get_mut(member)
            .ok_or_else(|| BusError::UnknownMember {
                group: group.to_owned(),
                member: member.to_owned(),
            })
    }
}

/// Round-robin: the matching partitions, sorted by (topic, partition), each go to the next
/// member (sorted by id) among those subscribed to its topic.
fn assign(
    members: &BTreeMap<String, Member>,
    topics: &[(String, u32)],
) -> BTreeMap<TopicPartition, String> {
    let mut sorted: Vec<&(String, u32)> = topics.iter().collect();
    sorted.sort();
    let mut assignment = BTreeMap::new();
    let mut turn = 0usize;
    for (topic, partitions) in sorted {
        let eligible: Vec<&String> = members
            .iter()
            .filter(|(_, m)| m.subscription.wants(topic))
            .map(|(id, _)| id)
            .collect();
        if eligible.is_empty() {
            continue;
        }
        for partition in 0..*partitions {
            let owner = eligible[turn % eligible.len()].clone();
            turn += 1;
            let tp = TopicPartition {
                topic: topic.clone(),
                partition,
            };
            assignment.insert(tp, owner);
        }
    }
    assignment
}

/// Consumer-group membership of the HTTP event bus. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub(crate) struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    default_timeout: Duration,
}

impl Default for Coordinator {
    fn default() -> Self {
        Coordinator::new(DEFAULT_SESSION_TIMEOUT)
    }
}

impl Coordinator {
    /// A coordinator whose members expire after `default_timeout` without a poll, unless their
    /// join sets another timeout.
    pub(crate) fn new(default_timeout: Duration) -> Coordinator {
        Coordinator {
            groups: Mutex::new(HashMap::new()),
            default_timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock()
    }

    /// Adds a member to `group` (a rebalance); `topics` are the existing topics with their
    /// partition counts.
    pub(crate) fn join(
        &self,
        group: &str,
        owner: &str,
        subscription: Subscription,
        topics: &[(String, u32)],
    ) -> Result<Joined, BusError> {
        let timeout = subscription.session_timeout.unwrap_or(self.default_timeout);
        if !(MIN_SESSION_TIMEOUT..=MAX_SESSION_TIMEOUT).contains(&timeout) {
            return Err(BusError::SessionTimeout {
                min: MIN_SESSION_TIMEOUT.as_millis(),
                max: MAX_SESSION_TIMEOUT.as_millis(),
                got: timeout.as_millis(),
            });
        }
        let member_id = uuid::Uuid::now_v7().to_string();
        let now = Instant::now();
        let mut groups = self.lock();
        let state = groups.entry(group.to_owned()).or_default();
        state.refresh(now, topics);
        let member = Member {
            owner: owner.to_owned(),
            subscription,
            timeout,
            last_seen: now,
            positions: HashMap::new(),
        };
        state.members.insert(member_id.clone(), member);
        let assignment = assign(&state.members, topics);
        state.rebalance(assignment);
        let assignment = state.owned_by(&member_id);
        Ok(Joined {
            member_id,
            assignment,
        })
    }

    /// Removes a member (a rebalance); only its owner may.
    pub(crate) fn leave(
        &self,
        group: &str,
        member: &str,
        owner: &str,
        topics: &[(String, u32)],
    ) -> Result<(), BusError> {
        let mut groups = self.lock();
        let state = Self::live_group(&mut groups, group, (member, owner), topics)?;
        state.members.remove(member);
        let assignment = assign(&state.members, topics);
        state.rebalance(assignment);
        if state.members.is_empty() {
            groups.remove(group);
        }
        Ok(())
    }

    /// The group of a live `member` owned by `owner`; `UnknownMember` for a member of another
    /// owner too, so a member id that leaked is of no use to anybody else.
    fn live_group<'a>(
        groups: &'a mut HashMap<String, Group>,
        group: &str,
        (member, owner): (&str, &str),
        topics: &[(String, u32)],
    ) -> Result<&'a mut Group, BusError> {
        let unknown = || BusError::UnknownMember {
            group: group.to_owned(),
            member: member.to_owned(),
        };
        let state = groups.get_mut(group).ok_or_else(unknown)?;
        state.refresh(Instant::now(), topics);
        if state.members.get(member).is_some_and(|m| m.owner == owner) {
            Ok(state)
        } else {
            Err(unknown())
        }
    }

    /// A member's current partitions and positions (for its owner); counts as its heartbeat.
    pub(crate) fn lease(
        &self,
        group: &str,
        member: &str,
        owner: &str,
        topics: &[(String, u32)],
    ) -> Result<Lease, BusError> {
        let mut groups = self.lock();
        let state = Self::live_group(&mut groups, group, (member, owner), topics)?;
        let owned = state.owned_by(member);
        let generation = state.generation;
        let m = state.member_mut(group, member)?;
        m.last_seen = Instant::now();
        let partitions = owned
            .into_iter()
            .map(|tp| {
                let position = m.positions.get(&tp).copied();
                (tp, position)
            })
            .collect();
        Ok(Lease {
            generation,
            partitions,
            reset: m.subscription.reset,
        })
    }

    /// Moves a member's positions past what it was handed, unless a rebalance happened since
    /// its lease (then the positions start again from the committed offsets). A heartbeat too.
    pub(crate) fn advance(
        &self,
        group: &str,
        member: &str,
        generation: u64,
        positions: &[(TopicPartition, u64)],
    ) {
        let mut groups = self.lock();
        let Some(state) = groups.get_mut(group) else {
            return;
        };
        let current = state.generation == generation;
        if let Some(m) = state.members.get_mut(member) {
            m.last_seen = Instant::now();
            if current {
                m.positions.extend(positions.iter().cloned());
            }
        }
    }

    /// `Ok` if `member` (of `owner`) is live and owns every one of `partitions` now.
    pub(crate) fn check_owner(
        &self,
        group: &str,
        (member, owner): (&str, &str),
        partitions: &[TopicPartition],
        topics: &[(String, u32)],
    ) -> Result<(), BusError> {
        let mut groups = self.lock();
        let state = Self::live_group(&mut groups, group, (member, owner), topics)?;
        for tp in partitions {
            if state.assignment.get(tp).map(String::as_str) != Some(member) {
                return Err(BusError::NotOwner {
                    member: member.to_owned(),
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                });
            }
        }
        Ok(())
    }

    /// The group's live members with their subscriptions and partitions (empty if none).
    pub(crate) fn describe(&self, group: &str, topics: &[(String, u32)]) -> Vec<MemberView> {
        let mut groups = self.lock();
        let Some(state) = groups.get_mut(group) else {
            return Vec::new();
        };
        state.refresh(Instant::now(), topics);
        state
            .members
            .iter()
            .map(|(id, m)| MemberView {
                member_id: id.clone(),
                topics: m.subscription.topics.clone(),
                assignment: state.owned_by(id),
            })
            .collect()
    }

    /// Runs `work` if `group` has no live member, holding the coordinator's lock meanwhile so
    /// that no member joins (and reads the offsets `work` is changing) before it is done; every
    /// group's calls wait for it, so `work` must be short. [`BusError::ActiveGroup`] otherwise.
    pub(crate) fn while_inactive<T>(
        &self,
        group: &str,
        topics: &[(String, u32)],
        work: impl FnOnce() -> T,
    ) -> Result<T, BusError> {
        let mut groups = self.lock();
        if let Some(state) = groups.get_mut(group) {
            state.refresh(Instant::now(), topics);
            if !state.members.is_empty() {
                return Err(BusError::ActiveGroup {
                    group: group.to_owned(),
                    members: state.members.len(),
                });
            }
        }
        Ok(work())
    }

    /// Drops everything known of `group` (its members rejoin): this node has just become, or
    /// stopped being, the group's coordinator in a cluster, and what it knew is stale.
    pub(crate) fn forget(&self, group: &str) {
        self.lock().remove(group);
    }

    /// Groups that have live members, sorted.
    pub(crate) fn groups(&self) -> Vec<String> {
        let now = Instant::now();
        let mut groups = self.lock();
        groups.retain(|_, g| {
            g.members
                .values()
                .any(|m| now.duration_since(m.last_seen) <= m.timeout)
        });
        let mut names: Vec<String> = groups.keys().cloned().collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribe(topics: &[&str], timeout_ms: Option<u64>) -> Subscription {
        Subscription {
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            session_timeout: timeout_ms.map(Duration::from_millis),
            ..Subscription::default()
        }
    }

    #[test]
    fn partitions_are_dealt_round_robin_and_rebalanced_on_leave() {
        let coordinator = Coordinator::default();
        let topics = vec![("t".to_owned(), 4), ("u".to_owned(), 1)];
        let a = coordinator
            .join("g", "ann", subscribe(&["t"], None), &topics)
            .unwrap();
        let b = coordinator
            .join("g", "ann", subscribe(&["t"], None), &topics)
            .unwrap();
        // Members are sorted by id.
        let (a, b) = if a.member_id < b.member_id {
            (a, b)
        } else {
            (b, a)
        };
        let lease_a = coordinator
            .lease("g", &a.member_id, "ann", &topics)
            .unwrap();
        let lease_b = coordinator
            .lease("g", &b.member_id, "ann", &topics)
            .unwrap();
        let owned = |lease: &Lease| {
            lease
                .partitions
                .iter()
                .map(|(tp, _)| tp.partition)
                .collect::<Vec<_>>()
        };
        assert_eq!(owned(&lease_a), vec![0, 2]);
        assert_eq!(owned(&lease_b), vec![1, 3]);
        coordinator
            .leave("g", &a.member_id, "ann", &topics)
            .unwrap();
        let lease_b = coordinator
            .lease("g", &b.member_id, "ann", &topics)
            .unwrap();
        assert_eq!(owned(&lease_b), vec![0, 1, 2, 3]);
        assert!(lease_b.generation > lease_a.generation);
        assert!(matches!(
            coordinator.lease("g", &a.member_id, "ann", &topics),
            Err(BusError::UnknownMember { .. })
        ));
    }

    #[test]
    fn a_silent_member_expires_and_positions_reset() {
        let coordinator = Coordinator::default();
        let topics = vec![("t".to_owned(), 2)];
        let a = coordinator
            .join("g", "ann", subscribe(&["t"], Some(100)), &topics)
            .unwrap();
        let b = coordinator
            .join("g", "ann", subscribe(&["t"], None), &topics)
            .unwrap();
        let lease = coordinator
            .lease("g", &b.member_id, "ann", &topics)
            .unwrap();
        let (tp, _) = lease.partitions[0].clone();
        coordinator.advance("g", &b.member_id, lease.generation, &[(tp, 5)]);
        assert_eq!(
            coordinator
                .lease("g", &b.member_id, "ann", &topics)
                .unwrap()
                .partitions[0]
                .1,
            Some(5)
        );
        std::thread::sleep(Duration::from_millis(150));
        let lease = coordinator
            .lease("g", &b.member_id, "ann", &topics)
            .unwrap();
        assert_eq!(lease.partitions.len(), 2);
        assert!(lease
            .partitions
            .iter()
            .all(|(_, position)| position.is_none()));
        assert!(coordinator
            .check_owner("g", (&a.member_id, "ann"), &[], &topics)
            .is_err());
        let too_short = coordinator.join("g", "ann", subscribe(&["t"], Some(5)), &topics);
        assert!(matches!(too_short, Err(BusError::SessionTimeout { .. })));
    }

    #[test]
    fn work_on_a_group_runs_only_while_it_has_no_live_member() {
        let coordinator = Coordinator::default();
        let topics = vec![("t".to_owned(), 1)];
        assert_eq!(coordinator.while_inactive("g", &topics, || 7).unwrap(), 7);
        let a = coordinator
            .join("g", "ann", subscribe(&["t"], None), &topics)
            .unwrap();
        let refused = coordinator.while_inactive("g", &topics, || unreachable!());
        assert!(matches!(
            refused,
            Err(BusError::ActiveGroup { members: 1, .. })
        ));
        coordinator
            .leave("g", &a.member_id, "ann", &topics)
            .unwrap();
        assert!(coordinator.while_inactive("g", &topics, || ()).is_ok());
    }

    #[test]
    fn a_member_id_works_only_for_the_user_that_joined_with_it() {
        let coordinator = Coordinator::default();
        let topics = vec![("t".to_owned(), 2)];
        let joined = coordinator
            .join("g", "ann", subscribe(&["t"], None), &topics)
            .unwrap();
        let id = &joined.member_id;
        let owned = joined.assignment.clone();
        assert!(matches!(
            coordinator.lease("g", id, "mallory", &topics),
            Err(BusError::UnknownMember { .. })
        ));
        assert!(coordinator
            .check_owner("g", (id, "mallory"), &owned, &topics)
            .is_err());
        assert!(coordinator.leave("g", id, "mallory", &topics).is_err());
        assert_eq!(
            coordinator
                .lease("g", id, "ann", &topics)
                .unwrap()
                .partitions
                .len(),
            2,
            "the owner's member is untouched"
        );
        assert!(coordinator
            .check_owner("g", (id, "ann"), &owned, &topics)
            .is_ok());
    }
}
