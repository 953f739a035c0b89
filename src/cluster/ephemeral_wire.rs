//! The messages of presence and typing between nodes, and the plain NATS subjects they travel
//! on; nothing here is stored (no JetStream).
//!
//! Every presence message of a node carries its `incarnation` (random per start, so a restarted
//! node is told apart from its former self) and a `seq` counting its presence changes, so a
//! receiver notices one it missed (plain NATS delivers at most once) and asks that node for a
//! [`Snapshot`]. Typing carries no sequence: a lost `typing:true` is repeated by the typing
//! client, a lost `typing:false` is covered by the receivers' own expiry.

use serde::{Deserialize, Serialize};

/// One node's message on the events subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub(crate) enum Event {
    /// A user's first session on `node` opened.
    #[serde(rename_all = "camelCase")]
    Online {
        /// Who.
        origin: Origin,
        /// The user.
        user: String,
    },
    /// A user's last session on `node` closed at `last_seen` (RFC 3339).
    #[serde(rename_all = "camelCase")]
    Offline {
        /// Who.
        origin: Origin,
        /// The user.
        user: String,
        /// When that session closed.
        last_seen: String,
    },
    /// The node is alive; `seq` is its latest presence change.
    Heartbeat {
        /// Who.
        origin: Origin,
    },
    /// The node is stopping: its users' sessions there are closed.
    Bye {
        /// Who.
        origin: Origin,
    },
    /// A typing indicator the node forwarded (after its rate limit) or expired.
    #[serde(rename_all = "camelCase")]
    Typing {
        /// The node.
        node: String,
        /// Who types.
        user: String,
        /// Where.
        conversation: String,
        /// Typing or stopped.
        typing: bool,
        /// The other participants.
        recipients: Vec<String>,
    },
}

impl Event {
    /// The node the message comes from.
    pub(crate) fn node(&self) -> &str {
        match self {
            Event::Online { origin, .. }
            | Event::Offline { origin, .. }
            | Event::Heartbeat { origin }
            | Event::Bye { origin } => &origin.node,
            Event::Typing { node, .. } => node,
        }
    }
}

/// Which node, which start of it, and its presence change count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Origin {
    /// The node id.
    pub node: String,
    /// Random per start of the node.
    pub incarnation: u64,
    /// Presence changes the node has announced in this incarnation (the heartbeat's: the
    /// latest).
    pub seq: u64,
}

/// A node's whole local presence at change `origin.seq`: the answer to a hello or a resync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    /// Who, and as of which change.
    pub origin: Origin,
    /// The users with a session on that node.
    pub users: Vec<String>,
}

/// A request for snapshots: by a node that starts (every node answers) or that missed a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// The asking node (which does not answer itself).
    pub node: String,
}

/// The subjects of one cluster (its `prefix` keeps clusters sharing a NATS apart).
#[derive(Debug, Clone)]
pub(crate) struct Subjects {
    prefix: String,
}

impl Subjects {
    pub(crate) fn new(prefix: &str) -> Subjects {
        Subjects {
            prefix: prefix.to_owned(),
        }
    }

    /// Presence, heartbeats and typing of every node, on one subject so that one node's
    /// messages reach the others in the order it sent them.
    pub(crate) fn events(&self) -> String {
        format!("{}.ephemeral.events", self.prefix)
    }

    /// "Send me your snapshots": every node answers.
    pub(crate) fn hello(&self) -> String {
        format!("{}.ephemeral.hello", self.prefix)
    }

    /// "Send me your snapshot", to `node` alone.
    pub(crate) fn snapshot_of(&self, node: &str) -> String {
        format!("{}.ephemeral.snapshot.{node}", self.prefix)
    }
}

/// Whether `id` can stand as one token of a NATS subject (and reads well in logs).
pub(crate) fn is_valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_tagged_json() {
        let origin = Origin {
            node: "a".into(),
            incarnation: 7,
            seq: 3,
        };
        let event = Event::Offline {
            origin,
            user: "ann".into(),
            last_seen: "2026-12-05T11:00:00.000Z".into(),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "offline");
        assert_eq!(json["lastSeen"], "2026-12-05T11:00:00.000Z");
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
    }

    #[test]
    fn node_ids_must_be_one_subject_token() {
        assert!(is_valid_node_id("node-1_a"));
        for bad in ["", "a.b", "a b", "a*", ">", &"x".repeat(65)] {
            assert!(!is_valid_node_id(bad), "{bad:?}");
        }
    }
}
