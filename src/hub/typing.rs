//! Typing indicators: which (user, conversation) pairs are typing, when each expires, and how
//! often a `typing:true` is forwarded.
//!
//! `typing:true` is forwarded at most once per `interval` per (user, conversation); one that
//! comes sooner only extends the indicator (clients repeat it while the user types). An
//! indicator that is not refreshed within `ttl` expires: [`Typing::due`] hands it out so the
//! hub sends `typing:false` itself. `typing:false` is forwarded only for a pair that is typing.
//! Pure logic with explicit instants (tokio's, which a paused test clock moves); the hub does
//! the sending. Entries live at most `ttl`, so the map stays as small as the number of people
//! typing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// (user, conversation).
type Key = (String, String);

#[derive(Debug)]
struct Indicator {
    forwarded_at: Instant,
    expires: Instant,
    recipients: Arc<[String]>,
}

/// An indicator that expired: send `typing:false` for `user` in `conversation` to `recipients`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Expired {
    pub user: String,
    pub conversation: String,
    pub recipients: Arc<[String]>,
}

/// The typing indicators in force.
#[derive(Debug)]
pub(super) struct Typing {
    ttl: Duration,
    interval: Duration,
    indicators: HashMap<Key, Indicator>,
}

impl Typing {
    pub(super) fn new(ttl: Duration, interval: Duration) -> Typing {
        Typing {
            ttl,
            interval,
            indicators: HashMap::new(),
        }
    }

    /// Applies a client's `typing` frame at `now`; returns the value to forward, if any.
    pub(super) fn update(
        &mut self,
        user: &str,
        conversation: &str,
        typing: bool,
        recipients: Arc<[String]>,
        now: Instant,
    ) -> Option<bool> {
        let key = (user.to_owned(), conversation.to_owned());
        if !typing {
            return self.indicators.remove(&key).map(|_| false);
        }
        let expires = now + self.ttl;
        if let Some(indicator) = self.indicators.get_mut(&key) {
            indicator.expires = expires;
            indicator.recipients = recipients;
            if now.saturating_duration_since(indicator.forwarded_at) < self.interval {
                return None;
            }
            indicator.forwarded_at = now;
            return Some(true);
        }
        self.indicators.insert(
            key,
            Indicator {
                forwarded_at: now,
                expires,
                recipients,
            },
        );
        Some(true)
    }

    /// True when no indicator is in force (nothing can expire).
    pub(super) fn is_empty(&self) -> bool {
        self.indicators.is_empty()
    }

    /// Indicators expired at `now`; they are forgotten.
    pub(super) fn due(&mut self, now: Instant) -> Vec<Expired> {
        let due: Vec<Key> = self
            .indicators
            .iter()
            .filter(|(_, i)| i.expires <= now)
            .map(|(key, _)| key.clone())
            .collect();
        due.into_iter()
            .filter_map(|key| {
                let indicator = self.indicators.remove(&key)?;
                Some(Expired {
                    user: key.0,
                    conversation: key.1,
                    recipients: indicator.recipients,
                })
            })
            .collect()
    }
}
