//! The table of open HTTP connections and the eviction rule at its cap.
//!
//! Every accepted socket takes a [`Slot`] until the socket closes (also after it was upgraded to
//! a WebSocket: the descriptor is still held). At the cap, a new connection takes the slot of
//! the oldest connection that never sent a complete request (cheapest to drop: nothing was
//! served, nobody is authenticated); failing that, of the connection idle longest between
//! requests (keep-alive). A connection serving a request, or upgraded to a WebSocket, is never
//! evicted; when every slot is such a one, the new connection is refused.
//!
//! This file owns the bookkeeping only; closing the evicted socket is up to the connection's
//! task, which watches its slot's eviction signal.

use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// What a connection is doing, as far as eviction cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activity {
    /// Accepted, no request head complete yet.
    Fresh,
    /// Serving this many requests (their responses are not fully written yet).
    Serving(usize),
    /// Served at least one request, waiting for the next (keep-alive).
    Idle,
    /// Upgraded to a WebSocket: the hub owns it now.
    Upgraded,
}

#[derive(Debug)]
struct Entry {
    activity: Activity,
    /// When the connection last finished a request (the table's clock), for idle eviction.
    last_active: u64,
    evict: CancellationToken,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    /// A logical clock, ticked by every finished request.
    clock: u64,
    /// Open connections by id; ids grow with accept order, so the first is the oldest.
    open: BTreeMap<u64, Entry>,
}

impl Table {
    /// The connection to evict for a new one: the oldest fresh one, else the longest idle one.
    fn victim(&self) -> Option<u64> {
        let oldest_fresh = self
            .open
            .iter()
            .find(|(_, entry)| entry.activity == Activity::Fresh)
            .map(|(id, _)| *id);
        oldest_fresh.or_else(|| {
            self.open
                .iter()
                .filter(|(_, entry)| entry.activity == Activity::Idle)
                .min_by_key(|(_, entry)| entry.last_active)
                .map(|(id, _)| *id)
        })
    }

    fn insert(&mut self) -> (u64, CancellationToken) {
        let id = self.next_id;
        self.next_id += 1;
        let evict = CancellationToken::new();
        let entry = Entry {
            activity: Activity::Fresh,
            last_active: self.clock,
            evict: evict.clone(),
        };
        self.open.insert(id, entry);
        (id, evict)
    }
}

/// What [`Slots::admit`] decided for a new connection.
#[derive(Debug)]
pub(crate) enum Admission {
    /// The connection may be served; it holds this slot until its socket closes.
    Admitted {
        /// The connection's slot.
        slot: Slot,
        /// Whether another connection was evicted to make room.
        evicted: bool,
    },
    /// Every slot is serving a request or upgraded: close the new connection at once.
    Full,
}

/// The open-connection table, shared by the accept loop and every connection. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    table: Arc<Mutex<Table>>,
    max: usize,
}

impl Slots {
    /// A table admitting at most `max` connections (at least one).
    pub(crate) fn new(max: usize) -> Slots {
        Slots {
            table: Arc::default(),
            max: max.max(1),
        }
    }

    /// The cap.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Connections holding a slot now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        lock(&self.table).open.len()
    }

    /// Takes a slot for a new connection, evicting an idle one at the cap (see the module doc).
    pub(crate) fn admit(&self) -> Admission {
        let mut table = lock(&self.table);
        let mut evicted = false;
        if table.open.len() >= self.max {
            let Some(victim) = table.victim() else {
                return Admission::Full;
            };
            if let Some(entry) = table.open.remove(&victim) {
                entry.evict.cancel();
                evicted = true;
            }
        }
        let (id, evict) = table.insert();
        let slot = Slot {
            id,
            table: self.table.clone(),
            evict,
        };
        Admission::Admitted { slot, evicted }
    }
}

/// One connection's place in the table; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Slot {
    id: u64,
    table: Arc<Mutex<Table>>,
    evict: CancellationToken,
}

impl Slot {
    /// Cancelled when a newer connection took this one's place: close the socket.
    pub(crate) fn eviction(&self) -> &CancellationToken {
        &self.evict
    }

    /// A request head arrived: the connection is serving and cannot be evicted until
    /// [`finish_request`](Self::finish_request).
    pub(crate) fn start_request(&self) {
        self.update(|entry, _| {
            entry.activity = match entry.activity {
                Activity::Serving(n) => Activity::Serving(n + 1),
                Activity::Upgraded => Activity::Upgraded,
                Activity::Fresh | Activity::Idle => Activity::Serving(1),
            }
        });
    }

    /// A response was fully written (or abandoned): idle again once none is left.
    pub(crate) fn finish_request(&self) {
        self.update(|entry, clock| {
            if let Activity::Serving(n) = entry.activity {
                entry.activity = if n > 1 {
                    Activity::Serving(n - 1)
                } else {
                    Activity::Idle
                };
                entry.last_active = clock;
            }
        });
    }

    /// The connection switched protocols (WebSocket): never evicted from now on.
    pub(crate) fn mark_upgraded(&self) {
        self.update(|entry, _| entry.activity = Activity::Upgraded);
    }

    fn update(&self, change: impl FnOnce(&mut Entry, u64)) {
        let mut table = lock(&self.table);
        table.clock += 1;
        let clock = table.clock;
        // An evicted slot has no entry any more: its connection is being closed.
        if let Some(entry) = table.open.get_mut(&self.id) {
            change(entry, clock);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.table).open.remove(&self.id);
    }
}

/// The table stays consistent even if a holder panicked: every change is one field write.
fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(slots: &Slots) -> (Slot, bool) {
        match slots.admit() {
            Admission::Admitted { slot, evicted } => (slot, evicted),
            Admission::Full => panic!("refused"),
        }
    }

    #[test]
    fn below_the_cap_nothing_is_evicted_and_a_closed_slot_is_freed() {
        let slots = Slots::new(2);
        let (first, evicted) = admitted(&slots);
        assert!(!evicted);
        let (_second, evicted) = admitted(&slots);
        assert!(!evicted);
        assert_eq!(slots.open(), 2);
        drop(first);
        assert_eq!(slots.open(), 1);
    }

    #[test]
    fn at_the_cap_the_oldest_fresh_connection_goes_first() {
        let slots = Slots::new(3);
        let (served, _) = admitted(&slots);
        served.start_request();
        served.finish_request();
        let (old_fresh, _) = admitted(&slots);
        let (young_fresh, _) = admitted(&slots);
        let (_new, evicted) = admitted(&slots);
        assert!(evicted);
        assert!(old_fresh.eviction().is_cancelled());
        assert!(!young_fresh.eviction().is_cancelled());
        assert!(
            !served.eviction().is_cancelled(),
            "a fresh one goes before an idle one"
        );
        assert_eq!(slots.open(), 3);
    }

    #[test]
    fn without_fresh_ones_the_longest_idle_goes() {
        let slots = Slots::new(2);
        let (a, _) = admitted(&slots);
        let (b, _) = admitted(&slots);
        b.start_request();
        b.finish_request();
        a.start_request();
        a.finish_request();
        let (_new, evicted) = admitted(&slots);
        assert!(evicted);
        assert!(b.eviction().is_cancelled(), "b has been idle longer");
        assert!(!a.eviction().is_cancelled());
    }

    #[test]
    fn serving_and_upgraded_connections_are_never_evicted() {
        let slots = Slots::new(2);
        let (serving, _) = admitted(&slots);
        serving.start_request();
        let (upgraded, _) = admitted(&slots);
        upgraded.start_request();
        upgraded.mark_upgraded();
        upgraded.finish_request();
        assert!(matches!(slots.admit(), Admission::Full));
        assert!(!serving.eviction().is_cancelled());
        assert!(!upgraded.eviction().is_cancelled());
        serving.finish_request();
        let (_new, evicted) = admitted(&slots);
        assert!(evicted, "once idle, it may go");
        assert!(serving.eviction().is_cancelled());
    }
}
