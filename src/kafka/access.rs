//! Who a Kafka connection is and what it may do: its scopes (the anonymous scopes from
//! `kafka.anonymousScopes` until it authenticates) and the guard on the server's own topics,
//! which holds over Kafka as it does over HTTP: nobody produces to `messages` (chat's command
//! log, written only by the chat routes, read by `admin` only), `messages.sent` or
//! `message.new.dlq`; only `admin` produces to `message.new` (replaying dead letters).
//!
//! This module checks; it does not verify tokens (`sasl` does) and knows no socket.

use crate::pipeline::{EVENTS_TOPIC, MESSAGES_TOPIC};

/// Scope that lets a connection produce and create topics.
pub(super) const PUBLISH_SCOPE: &str = "events:publish";
/// Scope that lets a connection fetch, list offsets and commit as a group.
pub(super) const CONSUME_SCOPE: &str = "events:consume";
/// Scope that implies every other.
const ADMIN_SCOPE: &str = crate::auth::ADMIN_SCOPE;
/// `message.new`: written by the server, by `admin` to replay dead letters.
const NOTIFICATIONS_TOPIC: &str = crate::pipeline::notify::NOTIFICATIONS_TOPIC;
/// `message.new.dlq`: written by the server only.
const DLQ_TOPIC: &str = crate::pipeline::sinks::DLQ_TOPIC;

/// The SASL mechanism a connection chose in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mechanism {
    /// PLAIN: the token is the password.
    Plain,
    /// OAUTHBEARER: the token itself.
    OauthBearer,
}

/// One connection's identity.
#[derive(Debug, Clone)]
pub(super) struct Session {
    scopes: Vec<String>,
    /// The peer, for the connection log.
    pub(super) peer: String,
    /// The mechanism of the SASL handshake, if there was one.
    pub(super) mechanism: Option<Mechanism>,
    /// When the token this connection authenticated with expires: the connection closes then
    /// unless it re-authenticated (KIP-368). `None` for a connection without SASL.
    pub(super) expires_at: Option<tokio::time::Instant>,
}

impl Session {
    /// A connection that has not authenticated: it has the anonymous scopes.
    pub(super) fn anonymous(scopes: &[String], peer: String) -> Session {
        Session {
            scopes: scopes.to_vec(),
            peer,
            mechanism: None,
            expires_at: None,
        }
    }

    /// The connection authenticated (or re-authenticated): it has the token's scopes from now
    /// on, until `expires_at`.
    pub(super) fn authenticate(&mut self, scopes: Vec<String>, expires_at: tokio::time::Instant) {
        self.scopes = scopes;
        self.expires_at = Some(expires_at);
    }

    /// Whether the token this connection authenticated with has expired.
    pub(super) fn expired(&self) -> bool {
        self.expires_at
            .is_some_and(|at| at <= tokio::time::Instant::now())
    }

    /// Whether this connection may delete `topic`: `admin`, and never the server's own.
    pub(super) fn may_delete(&self, topic: &str) -> bool {
        self.has_scope(ADMIN_SCOPE)
            && ![MESSAGES_TOPIC, EVENTS_TOPIC, NOTIFICATIONS_TOPIC, DLQ_TOPIC].contains(&topic)
    }

    fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope || s == ADMIN_SCOPE)
    }

    /// Whether this connection may produce to `topic`.
    pub(super) fn may_produce(&self, topic: &str) -> bool {
        if !self.has_scope(PUBLISH_SCOPE) {
            return false;
        }
        match topic {
            MESSAGES_TOPIC | EVENTS_TOPIC | DLQ_TOPIC => false,
            NOTIFICATIONS_TOPIC => self.has_scope(ADMIN_SCOPE),
            _ => true,
        }
    }

    /// Whether this connection may create `topic` (on Metadata or CreateTopics): never one of
    /// the server's own.
    pub(super) fn may_create(&self, topic: &str) -> bool {
        self.has_scope(PUBLISH_SCOPE)
            && ![MESSAGES_TOPIC, EVENTS_TOPIC, NOTIFICATIONS_TOPIC, DLQ_TOPIC].contains(&topic)
    }

    /// Whether this connection may read `topic` (fetch, list offsets, commit, see it in
    /// Metadata): `messages` holds every conversation's text and is for `admin` only.
    pub(super) fn may_consume(&self, topic: &str) -> bool {
        self.has_scope(CONSUME_SCOPE) && (topic != MESSAGES_TOPIC || self.has_scope(ADMIN_SCOPE))
    }

    /// Whether this connection may see that `topic` exists.
    pub(super) fn may_describe(&self, topic: &str) -> bool {
        self.may_consume(topic) || self.may_produce(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(scopes: &[&str]) -> Session {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        Session::anonymous(&scopes, "test".into())
    }

    #[test]
    fn chat_input_topics_are_refused_to_producers_admin_included() {
        for scopes in [&["events:publish"][..], &["admin"][..]] {
            let s = session(scopes);
            assert!(!s.may_produce("messages"));
            assert!(!s.may_produce("messages.sent"));
            assert!(!s.may_produce("message.new.dlq"));
            assert!(s.may_produce("orders"));
        }
        assert!(!session(&["events:publish"]).may_produce("message.new"));
        assert!(session(&["admin"]).may_produce("message.new"));
    }

    #[test]
    fn the_command_log_is_read_by_admin_only() {
        assert!(!session(&["events:consume"]).may_consume("messages"));
        assert!(session(&["events:consume"]).may_consume("message.new"));
        assert!(session(&["admin"]).may_consume("messages"));
        assert!(!session(&[]).may_consume("orders"));
    }
}
