//! Idempotent sends: the in-memory record of recent and in-flight sends by
//! (sender, conversation, clientMessageId).
//!
//! The store's `client_ids` index answers a retry once the store writer has applied the first
//! send; this map covers the window before that. The first request for a key *leads* (it appends
//! the message); a concurrent duplicate *waits* for the leader's outcome and answers the same
//! acknowledgement; a later retry finds the finished acknowledgement. A leader that fails (or is
//! dropped) removes its slot, so a waiter then leads itself. Finished entries are forgotten after
//! [`RECENT_TTL`] or beyond [`RECENT_CAPACITY`] entries (oldest first), so the map never grows
//! without bound; in-flight entries are bounded by the requests in flight.
//!
//! This module does not append, validate or talk to the store: `messages.rs` does.

use parking_lot::{Mutex, MutexGuard};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a finished send's acknowledgement is kept for retries.
pub(crate) const RECENT_TTL: Duration = Duration::from_secs(600);
/// Most finished acknowledgements kept.
pub(crate) const RECENT_CAPACITY: usize = 100_000;

/// The 202 body of an accepted send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SendAck {
    /// The message's final id.
    pub id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// The sender's idempotency key, if it gave one.
    pub client_message_id: Option<String>,
    /// Always `"accepted"`.
    pub status: &'static str,
    /// When the first attempt was accepted.
    pub sent_at: String,
    /// Partition of the send record in `messages`.
    pub partition: u32,
    /// Offset of the send record in `messages`.
    pub offset: u64,
}

/// (sender, conversation, clientMessageId).
pub(crate) type SendKey = (String, String, String);

type Outcome = watch::Receiver<Option<SendAck>>;

enum Slot {
    InFlight(Outcome),
    Done { ack: SendAck, at: Instant },
}

/// Recent and in-flight sends with a client message id.
#[derive(Default)]
pub(crate) struct Sends {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    slots: HashMap<SendKey, Slot>,
    /// Finished entries in the order they finished, for expiry.
    finished: VecDeque<(SendKey, Instant)>,
}

impl std::fmt::Debug for Sends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sends").finish_non_exhaustive()
    }
}

/// What a request for a key must do.
pub(crate) enum Claim {
    /// The send finished before: answer this.
    Done(SendAck),
    /// Another request is sending it: wait for its outcome ([`wait`]).
    Wait(Outcome),
    /// This request sends it and reports with [`Lease::complete`].
    Lead(Lease),
}

/// The right (and duty) to send one key. Dropped without [`complete`](Lease::complete), it
/// frees the key so that a waiting duplicate leads instead.
pub(crate) struct Lease {
    sends: Arc<Sends>,
    key: SendKey,
    outcome: Option<watch::Sender<Option<SendAck>>>,
}

impl Sends {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The map stays consistent across a panic (every change is one insert or remove).
        self.state.lock()
    }

    /// Looks `key` up, claiming it when nobody holds it.
    pub(crate) fn claim(self: &Arc<Self>, key: SendKey) -> Claim {
        let mut state = self.lock();
        state.expire(Instant::now());
        match state.slots.get(&key) {
            Some(Slot::Done { ack, .. }) => return Claim::Done(ack.clone()),
            Some(Slot::InFlight(outcome)) => return Claim::Wait(outcome.clone()),
            None => {}
        }
        let (sender, receiver) = watch::channel(None);
        state.slots.insert(key.clone(), Slot::InFlight(receiver));
        Claim::Lead(Lease {
            sends: self.clone(),
            key,
            outcome: Some(sender),
        })
    }

    /// True if no key is held (in flight or finished).
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.lock().slots.is_empty()
    }
}

impl State {
    fn expire(&mut self, now: Instant) {
        while let Some((key, at)) = self.finished.front() {
            let old = now.duration_since(*at) > RECENT_TTL;
            if !old && self.finished.len() <= RECENT_CAPACITY {
                break;
            }
            let is_this_entry =
                matches!(self.slots.get(key), Some(Slot::Done { at: done, .. }) if done == at);
            if is_this_entry {
                self.slots.remove(key);
            }
            self.finished.pop_front();
        }
    }
}

impl Lease {
    /// Records the acknowledgement and hands it to every waiting duplicate.
    pub(crate) fn complete(mut self, ack: SendAck) {
        let now = Instant::now();
        let mut state = self.sends.lock();
        state.slots.insert(
            self.key.clone(),
            Slot::Done {
                ack: ack.clone(),
                at: now,
            },
        );
        state.finished.push_back((self.key.clone(), now));
        drop(state);
        if let Some(outcome) = self.outcome.take() {
            outcome.send_replace(Some(ack));
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.outcome.is_some() {
            let mut state = self.sends.lock();
            if matches!(state.slots.get(&self.key), Some(Slot::InFlight(_))) {
                state.slots.remove(&self.key);
            }
        }
    }
}

/// Waits for a leader's outcome: its acknowledgement, or `None` if it failed (claim again).
pub(crate) async fn wait(mut outcome: Outcome) -> Option<SendAck> {
    match outcome.wait_for(Option::is_some).await {
        Ok(ack) => ack.clone(),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> SendKey {
        ("ann".into(), "c".into(), n.into())
    }

    fn ack(id: &str) -> SendAck {
        SendAck {
            id: id.into(),
            conversation_id: "c".into(),
            client_message_id: Some("k".into()),
            status: "accepted",
            sent_at: "t".into(),
            partition: 1,
            offset: 2,
        }
    }

    #[tokio::test]
    async fn a_duplicate_waits_for_the_leader_and_gets_its_ack() {
        let sends = Arc::new(Sends::default());
        let Claim::Lead(lease) = sends.claim(key("k")) else {
            panic!("first claim leads")
        };
        let Claim::Wait(outcome) = sends.claim(key("k")) else {
            panic!("second claim waits")
        };
        let waiter = tokio::spawn(wait(outcome));
        lease.complete(ack("m1"));
        assert_eq!(waiter.await.unwrap(), Some(ack("m1")));
        assert!(matches!(sends.claim(key("k")), Claim::Done(a) if a.id == "m1"));
    }

    #[tokio::test]
    async fn a_failed_leader_frees_the_key() {
        let sends = Arc::new(Sends::default());
        let Claim::Lead(lease) = sends.claim(key("k")) else {
            panic!("leads")
        };
        let Claim::Wait(outcome) = sends.claim(key("k")) else {
            panic!("waits")
        };
        drop(lease);
        assert_eq!(wait(outcome).await, None);
        assert!(matches!(sends.claim(key("k")), Claim::Lead(_)));
    }

    #[test]
    fn finished_entries_expire() {
        let sends = Arc::new(Sends::default());
        let Claim::Lead(lease) = sends.claim(key("k")) else {
            panic!("leads")
        };
        lease.complete(ack("m1"));
        sends
            .lock()
            .expire(Instant::now() + RECENT_TTL + Duration::from_secs(1));
        assert!(sends.is_empty(), "the expired entry is gone");
    }
}
