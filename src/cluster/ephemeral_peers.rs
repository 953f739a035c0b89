//! What this node knows of the other nodes' presence: which users each has online, the last
//! change heard from each, and when each was last heard; it turns their messages into balanced
//! online/offline calls on a [`PresenceSink`] (the hub). No I/O: the relay feeds it and sends
//! the snapshot requests it asks for.
//!
//! A node's changes apply in `seq` order; one that skips a number marks the node stale (a
//! message was lost) and asks for its snapshot, as does a heartbeat whose `seq` is not the last
//! applied one. A snapshot replaces the node's users unless changes newer than it were applied
//! meanwhile (then the next heartbeat asks again). A node unheard for `node_timeout`, or that
//! said bye, or that restarted (new incarnation), has its users' sessions treated as closed, with
//! `lastSeen` the moment it was last heard.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::ephemeral_wire::{Event, Origin, Snapshot};
use crate::hub::Hub;

/// Where remote presence and typing go (the hub; tests record the calls).
pub(crate) trait PresenceSink {
    /// `user` has a first session on another node.
    fn online(&self, user: &str);
    /// `user` has no session left on one other node.
    fn offline(&self, user: &str, last_seen: String);
    /// A typing indicator from another node.
    fn typing(&self, user: &str, conversation: &str, typing: bool, recipients: Vec<String>);
}

impl PresenceSink for Hub {
    fn online(&self, user: &str) {
        self.remote_online(user);
    }

    fn offline(&self, user: &str, last_seen: String) {
        self.remote_offline(user, last_seen);
    }

    fn typing(&self, user: &str, conversation: &str, typing: bool, recipients: Vec<String>) {
        self.remote_typing(user, conversation, typing, recipients);
    }
}

#[derive(Debug)]
struct Peer {
    incarnation: u64,
    last_seq: u64,
    stale: bool,
    users: HashSet<String>,
    heard: Instant,
    heard_wall: SystemTime,
}

impl Peer {
    fn new(origin: &Origin, now: Instant) -> Peer {
        Peer {
            incarnation: origin.incarnation,
            last_seq: 0,
            stale: false,
            users: HashSet::new(),
            heard: now,
            heard_wall: SystemTime::now(),
        }
    }

    fn last_seen(&self) -> String {
        humantime::format_rfc3339_millis(self.heard_wall).to_string()
    }
}

/// The other nodes, as heard.
#[derive(Debug)]
pub(crate) struct Peers {
    me: String,
    node_timeout: Duration,
    nodes: HashMap<String, Peer>,
}

impl Peers {
    pub(crate) fn new(me: &str, node_timeout: Duration) -> Peers {
        Peers {
            me: me.to_owned(),
            node_timeout,
            nodes: HashMap::new(),
        }
    }

    /// Applies one message from the events subject; returns the node whose snapshot is
    /// needed, if one is.
    pub(crate) fn on_event(
        &mut self,
        event: Event,
        now: Instant,
        sink: &impl PresenceSink,
    ) -> Option<String> {
        if event.node() == self.me {
            return None;
        }
        match event {
            Event::Typing {
                user,
                conversation,
                typing,
                recipients,
                ..
            } => {
                sink.typing(&user, &conversation, typing, recipients);
                None
            }
            Event::Bye { origin } => {
                self.forget(&origin.node, sink);
                None
            }
            Event::Heartbeat { origin } => {
                let peer = self.peer(&origin, now, sink);
                let behind = peer.stale || peer.last_seq != origin.seq;
                peer.stale |= behind;
                behind.then_some(origin.node)
            }
            Event::Online { origin, user } => self.change(&origin, now, sink, (user, None)),
            Event::Offline {
                origin,
                user,
                last_seen,
            } => self.change(&origin, now, sink, (user, Some(last_seen))),
        }
    }

    /// A presence change: `last_seen` is `None` for online.
    fn change(
        &mut self,
        origin: &Origin,
        now: Instant,
        sink: &impl PresenceSink,
        (user, last_seen): (String, Option<String>),
    ) -> Option<String> {
        let peer = self.peer(origin, now, sink);
        if origin.seq <= peer.last_seq {
            return None;
        }
        let gap = origin.seq != peer.last_seq + 1;
        peer.last_seq = origin.seq;
        peer.stale |= gap;
        match last_seen {
            None => {
                if peer.users.insert(user.clone()) {
                    sink.online(&user);
                }
            }
            Some(last_seen) => {
                if peer.users.remove(&user) {
                    sink.offline(&user, last_seen);
                }
            }
        }
        gap.then(|| origin.node.clone())
    }

    /// The node's state, heard now; a node unknown or restarted starts empty.
    fn peer(&mut self, origin: &Origin, now: Instant, sink: &impl PresenceSink) -> &mut Peer {
        let restarted = self
            .nodes
            .get(&origin.node)
            .is_some_and(|peer| peer.incarnation != origin.incarnation);
        if restarted {
            self.forget(&origin.node, sink);
        }
        let peer = self
            .nodes
            .entry(origin.node.clone())
            .or_insert_with(|| Peer::new(origin, now));
        peer.heard = now;
        peer.heard_wall = SystemTime::now();
        peer
    }

    /// Applies a node's snapshot (unless changes newer than it were applied already).
    pub(crate) fn on_snapshot(
        &mut self,
        snapshot: Snapshot,
        now: Instant,
        sink: &impl PresenceSink,
    ) {
        let origin = &snapshot.origin;
        if origin.node == self.me {
            return;
        }
        let peer = self.peer(origin, now, sink);
        if origin.seq < peer.last_seq {
            return;
        }
        peer.last_seq = origin.seq;
        peer.stale = false;
        let fresh: HashSet<String> = snapshot.users.into_iter().collect();
        let last_seen = peer.last_seen();
        for gone in peer.users.difference(&fresh) {
            sink.offline(gone, last_seen.clone());
        }
        for came in fresh.difference(&peer.users) {
            sink.online(came);
        }
        peer.users = fresh;
    }

    /// Treats as closed the sessions of every node unheard for the node timeout; returns them.
    pub(crate) fn expire(&mut self, now: Instant, sink: &impl PresenceSink) -> Vec<String> {
        let timeout = self.node_timeout;
        let silent: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, peer)| now.saturating_duration_since(peer.heard) >= timeout)
            .map(|(node, _)| node.clone())
            .collect();
        for node in &silent {
            tracing::warn!(
                node,
                "cluster node silent: its users' sessions count as closed"
            );
            self.forget(node, sink);
        }
        silent
    }

    /// Drops a node: each of its users goes offline there as of when it was last heard.
    fn forget(&mut self, node: &str, sink: &impl PresenceSink) {
        if let Some(peer) = self.nodes.remove(node) {
            let last_seen = peer.last_seen();
            for user in &peer.users {
                sink.offline(user, last_seen.clone());
            }
        }
    }

    /// The nodes heard and the users each has online, sorted (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn view(&self) -> Vec<(String, Vec<String>)> {
        let mut view: Vec<(String, Vec<String>)> = self
            .nodes
            .iter()
            .map(|(node, peer)| {
                let mut users: Vec<String> = peer.users.iter().cloned().collect();
                users.sort();
                (node.clone(), users)
            })
            .collect();
        view.sort();
        view
    }
}

#[cfg(test)]
#[path = "ephemeral_peers_tests.rs"]
mod tests;
