//! Presence bookkeeping: which users whose last session closed are still inside the grace
//! period, and who is due to be announced offline.
//!
//! A user is online while any session is open. When the last one closes the user enters the
//! grace period (still shown online); a session opening within it cancels the departure without
//! any frame, so a quick reconnect shows no flap. Once the grace period passes with no session,
//! [`Presence::due`] hands the user out to be announced `offline` with `lastSeen` (when the last
//! session closed). Pure logic with explicit instants (tokio's, which a paused test clock
//! moves); the hub does the sending.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
struct Leaving {
    since: Instant,
    last_seen: String,
}

/// Users between their last session closing and being announced offline.
#[derive(Debug)]
pub(super) struct Presence {
    grace: Duration,
    leaving: HashMap<String, Leaving>,
}

impl Presence {
    pub(super) fn new(grace: Duration) -> Presence {
        Presence {
            grace,
            leaving: HashMap::new(),
        }
    }

    /// A user's first session opened. True if the others must hear `online` (false when it
    /// merely returned within the grace period).
    pub(super) fn came_online(&mut self, user: &str) -> bool {
        self.leaving.remove(user).is_none()
    }

    /// A user's last session closed at `now` (`last_seen` is that moment as RFC 3339).
    pub(super) fn went_quiet(&mut self, user: &str, now: Instant, last_seen: String) {
        self.leaving.insert(
            user.to_owned(),
            Leaving {
                since: now,
                last_seen,
            },
        );
    }

    /// True while the user is inside the grace period (still shown online).
    pub(super) fn is_leaving(&self, user: &str) -> bool {
        self.leaving.contains_key(user)
    }

    /// True when nobody is in a grace period (nothing can come due).
    pub(super) fn is_empty(&self) -> bool {
        self.leaving.is_empty()
    }

    /// Users whose grace period is over at `now`, with their `lastSeen`; they are forgotten.
    pub(super) fn due(&mut self, now: Instant) -> Vec<(String, String)> {
        let grace = self.grace;
        let due: Vec<String> = self
            .leaving
            .iter()
            .filter(|(_, l)| now.saturating_duration_since(l.since) >= grace)
            .map(|(user, _)| user.clone())
            .collect();
        due.into_iter()
            .filter_map(|user| {
                let leaving = self.leaving.remove(&user)?;
                Some((user, leaving.last_seen))
            })
            .collect()
    }
}
