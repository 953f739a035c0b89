//! Presence and typing shared with other nodes: the hub's two edges toward them, and nothing of
//! how the changes travel.
//!
//! Out: the hub tells a [`PeerLink`] each local change (a user's first session here opened, its
//! last one here closed, a typing indicator forwarded after the rate limit or expired). In: the
//! other nodes' changes arrive as [`Hub::remote_online`], [`Hub::remote_offline`] and
//! [`Hub::remote_typing`]. The caller (`cluster::ephemeral`) keeps which users each node has
//! and calls in balanced pairs: one `remote_online` per (node, user) until its `remote_offline`.
//!
//! A user is present while it has a session here or on any other node; the grace period (and
//! then `offline` with `lastSeen`) starts on each node when the user has none anywhere, so a
//! user whose phone sits on one node and laptop on another shows no flap when either closes.
//! A remote typing indicator is delivered as its node forwarded it (that node applied the rate
//! limit) and expires here by itself after `typing_ttl + typing_interval` without a refresh, so
//! an indicator whose node died does not stay on; the slack covers a node that forwards the
//! refreshes at most once per interval.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::typing::{Expired, Typing};
use super::{frame, Hub, HubConfig};

/// A local presence change, as the other nodes must hear it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PresenceChange {
    /// The user's first session on this node opened.
    Online,
    /// The user's last session on this node closed, at `last_seen` (RFC 3339).
    Offline {
        /// When the session closed.
        last_seen: String,
    },
}

/// Where the hub reports its local presence and typing changes for the other nodes.
///
/// Called while the hub holds its registry (or typing) lock, so that a user's changes are
/// reported in the order they happened: an implementation must not block and must not call back
/// into the hub (queue the change and return).
pub(crate) trait PeerLink: Send + Sync {
    /// A user's presence on this node changed.
    fn presence_changed(&self, user: &str, change: PresenceChange);
    /// A typing indicator was forwarded here (after the rate limit) or expired (`false`).
    fn typing_changed(&self, user: &str, conversation: &str, typing: bool, recipients: &[String]);
}

/// Typing indicators that came from other nodes, with their own expiry.
#[derive(Debug)]
pub(super) struct RemoteTyping(Typing);

impl RemoteTyping {
    pub(super) fn new(config: &HubConfig) -> RemoteTyping {
        // No rate limit here (the origin node applied it); the expiry has the slack of one
        // interval, since the origin forwards refreshes at most that often.
        let ttl = config.typing_ttl + config.typing_interval;
        RemoteTyping(Typing::new(ttl, Duration::ZERO))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn due(&mut self, now: Instant) -> Vec<Expired> {
        self.0.due(now)
    }
}

impl Hub {
    /// Hands the hub the link to the other nodes; the first attached stays. Without one (a
    /// single node) nothing is reported.
    pub(crate) fn attach_peers(&self, peers: Arc<dyn PeerLink>) {
        if self.inner.peers.set(peers).is_err() {
            tracing::warn!("a peer link was attached to the hub twice; keeping the first");
        }
    }

    pub(super) fn tell_peers_presence(&self, user: &str, change: PresenceChange) {
        if let Some(peers) = self.inner.peers.get() {
            peers.presence_changed(user, change);
        }
    }

    pub(super) fn tell_peers_typing(
        &self,
        user: &str,
        conversation: &str,
        typing: bool,
        recipients: &[String],
    ) {
        if let Some(peers) = self.inner.peers.get() {
            peers.typing_changed(user, conversation, typing, recipients);
        }
    }

    /// Another node has a first session of `user`: the user is online (its contacts here hear
    /// `online` unless it already was, here, elsewhere or in its grace period).
    pub(crate) fn remote_online(&self, user: &str) {
        let announce = {
            let mut registry = self.write();
            let nodes = registry.remote.entry(user.to_owned()).or_insert(0);
            *nodes += 1;
            let first_anywhere = *nodes == 1 && !registry.by_user.contains_key(user);
            first_anywhere && registry.presence.came_online(user)
        };
        if announce {
            let contacts = self.contacts_of(user);
            self.deliver(&contacts, &frame::online(user));
        }
    }

    /// Another node closed the last session of `user` there, at `last_seen`; if the user has
    /// no session left anywhere, its grace period starts now.
    pub(crate) fn remote_offline(&self, user: &str, last_seen: String) {
        let mut registry = self.write();
        let Some(nodes) = registry.remote.get_mut(user) else {
            return;
        };
        *nodes -= 1;
        if *nodes == 0 {
            registry.remote.remove(user);
        }
        if !registry.is_present(user) {
            registry
                .presence
                .went_quiet(user, Instant::now(), last_seen);
            self.timer_armed();
        }
    }

    /// A typing indicator another node forwarded: delivered to the recipients' sessions here
    /// (`typing:false` only for an indicator in force); `typing:true` expires by itself.
    pub(crate) fn remote_typing(
        &self,
        user: &str,
        conversation: &str,
        typing: bool,
        recipients: Vec<String>,
    ) {
        let recipients: Arc<[String]> = recipients.into();
        let forward = self.inner.remote_typing.lock().0.update(
            user,
            conversation,
            typing,
            recipients.clone(),
            Instant::now(),
        );
        self.timer_armed();
        if let Some(typing) = forward {
            self.deliver(&recipients, &frame::typing(conversation, user, typing));
        }
    }

    /// True while `user` has a session here or on another node (the question notifications
    /// ask: a user online anywhere gets no push).
    pub(crate) fn is_online_anywhere(&self, user: &str) -> bool {
        self.read().is_present(user)
    }
}

#[cfg(test)]
mod tests;
