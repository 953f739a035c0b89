//! The hub: the registry of live WebSocket sessions (user → sessions), presence and typing.
//!
//! Every session has a bounded outbound queue ([`HubConfig::queue_frames`] frames). A frame is
//! one typed event shared by all its recipients and encoded at most once per wire format
//! ([`Frame`]); [`Hub::deliver`] pushes it to
//! every session of a set of users without ever waiting: a session whose queue is full is
//! closed as too slow (4008, it resumes from its last seen seq), so a slow client never slows
//! the others nor grows the server's memory.
//!
//! Presence: a user is online while any session is open. The first session announces `online`
//! to the user's contacts (users who share a conversation, through the [`Contacts`] trait the
//! server implements over the store); after the last one closes, `offline` with `lastSeen`
//! follows once [`HubConfig::presence_grace`] passed without a new session, so a quick reconnect
//! shows no flap. A new session is first told which of its contacts are online. Typing
//! indicators are forwarded to the other participants, rate limited per (user, conversation),
//! and expire by themselves ([`HubConfig::typing_ttl`]). The timers run in [`Hub::run_timers`],
//! which sleeps while no grace period or indicator is in force (an idle server does not wake for
//! them); every moment is read from tokio's clock, so tests drive them with a paused clock.
//!
//! The hub knows nothing of storage, HTTP, sockets or wire formats: conversations reach it as
//! lists of user ids, changes as typed events the store writer hands over
//! (`pipeline::live`), and the socket side with its encoding is `api::ws`. It uses the chat
//! model's data types (a message, a conversation), not the store. Files: `event` (the typed
//! server events), `frame` (frames, their scopes, their cached encodings, and the one place
//! frames are built), `session` (one session's queue and close signal), `presence`, `typing`,
//! `fd_limit` (sessions the open-file limit allows), `peers` (presence and typing shared with
//! other nodes).
//!
//! Across nodes (`--cluster`), a user is online while any session on any node is open: the hub
//! tells a [`PeerLink`] its local changes (a user's first session opened, last one closed, a
//! typing indicator forwarded or expired) and takes the other nodes' changes in through
//! [`Hub::remote_online`], [`Hub::remote_offline`] and [`Hub::remote_typing`]; the grace period
//! starts only when the user has no session on any node. The hub knows nothing of how the changes
//! travel (`cluster::ephemeral` carries them over NATS).

mod event;
pub(crate) mod fd_limit;
pub(crate) mod frame;
mod peers;
mod presence;
mod session;
mod typing;

use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

// tokio's clock, not std's: under a paused test clock the timers and the moments the hub
// records (a session closing, a typing frame) move together.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(crate) use event::ServerEvent;
pub(crate) use frame::{Frame, Scope, WireCodec, WireFormat};
pub(crate) use peers::{PeerLink, PresenceChange};
pub(crate) use session::{CloseReason, Session, SessionHandle};

use peers::RemoteTyping;
use presence::Presence;
use session::Pushed;
use typing::Typing;

/// How often the presence and typing timers are checked.
pub(crate) const TIMER_TICK: Duration = Duration::from_millis(100);

/// The hub's limits and timings (the `[ws]` configuration section resolves to this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HubConfig {
    /// Capacity of each session's outbound queue, in frames.
    pub queue_frames: usize,
    /// Most sessions open at once, over all users.
    pub max_sessions: usize,
    /// Most sessions one user may have open at once.
    pub max_sessions_per_user: usize,
    /// How long a user whose last session closed still shows online.
    pub presence_grace: Duration,
    /// How long a typing indicator lasts without a refresh.
    pub typing_ttl: Duration,
    /// Least time between two forwarded `typing:true` of one user in one conversation.
    pub typing_interval: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            queue_frames: 1024,
            max_sessions: 10_000,
            max_sessions_per_user: 32,
            presence_grace: Duration::from_secs(5),
            typing_ttl: Duration::from_secs(5),
            typing_interval: Duration::from_secs(1),
        }
    }
}

/// Why a session was not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum HubError {
    /// The server holds as many sessions as it may (configured, or what its open-file limit
    /// allows).
    #[error("the server holds its maximum of {max} sessions; try again later")]
    Full {
        /// The maximum.
        max: usize,
    },
    /// The user has as many sessions open as one user may.
    #[error("too many sessions: a user may have {max} open at once")]
    UserFull {
        /// The per-user maximum.
        max: usize,
    },
    /// The hub is closing every session because the server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Who shares a conversation with a user: the hub's one question about conversations.
pub(crate) trait Contacts: Send + Sync {
    /// Every other user who shares at least one conversation with `user`.
    fn contacts_of(&self, user: &str) -> Vec<String>;
}

/// Counters of the hub for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HubStats {
    /// Sessions open now.
    pub sessions: usize,
    /// Sessions opened since start.
    pub opened: u64,
    /// Session requests refused by the session limits.
    pub refused: u64,
    /// Sessions closed because their queue was full (4008).
    pub closed_slow: u64,
    /// Frames queued to sessions by [`Hub::deliver`].
    pub deliveries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    opened: AtomicU64,
    refused: AtomicU64,
    closed_slow: AtomicU64,
    deliveries: AtomicU64,
}

/// One online user's sessions, and its `online` presence frame, built once and shared by every
/// contact told about it (a connect storm then queues references, not copies).
#[derive(Debug)]
struct UserSessions {
    sessions: Vec<SessionHandle>,
    online: Frame,
}

#[derive(Debug)]
struct Registry {
    by_user: HashMap<String, UserSessions>,
    total: usize,
    presence: Presence,
    /// Users with sessions on other nodes: on how many nodes each has some.
    remote: HashMap<String, usize>,
}

impl Registry {
    /// Online here or on another node.
    fn is_present(&self, user: &str) -> bool {
        self.by_user.contains_key(user) || self.remote.contains_key(user)
    }
}

struct Inner {
    config: HubConfig,
    registry: RwLock<Registry>,
    typing: Mutex<Typing>,
    remote_typing: Mutex<RemoteTyping>,
    contacts: OnceLock<Arc<dyn Contacts>>,
    peers: OnceLock<Arc<dyn PeerLink>>,
    counters: Counters,
    shutting_down: AtomicBool,
    /// Woken when a timer is armed (a grace period or a typing indicator), so that
    /// [`Hub::run_timers`] can sleep while none is.
    timer_armed: tokio::sync::Notify,
}

/// The registry of live sessions; cheap to clone.
#[derive(Clone)]
pub(crate) struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// An empty hub; it has no contacts (presence goes nowhere) until they are attached.
    pub(crate) fn new(config: HubConfig) -> Hub {
        let registry = Registry {
            by_user: HashMap::new(),
            total: 0,
            presence: Presence::new(config.presence_grace),
            remote: HashMap::new(),
        };
        let typing = Typing::new(config.typing_ttl, config.typing_interval);
        let remote_typing = RemoteTyping::new(&config);
        Hub {
            inner: Arc::new(Inner {
                config,
                registry: RwLock::new(registry),
                typing: Mutex::new(typing),
                remote_typing: Mutex::new(remote_typing),
                contacts: OnceLock::new(),
                peers: OnceLock::new(),
                counters: Counters::default(),
                shutting_down: AtomicBool::new(false),
                timer_armed: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The limits and timings the hub runs with.
    pub(crate) fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Hands the hub its source of contacts; the first attached stays.
    pub(crate) fn attach_contacts(&self, contacts: Arc<dyn Contacts>) {
        if self.inner.contacts.set(contacts).is_err() {
            tracing::warn!("contacts were attached to the hub twice; keeping the first");
        }
    }

    fn contacts_of(&self, user: &str) -> Vec<String> {
        self.inner
            .contacts
            .get()
            .map(|contacts| contacts.contacts_of(user))
            .unwrap_or_default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Registry> {
        self.inner.registry.read()
    }

    fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.inner.registry.write()
    }

    fn typing_state(&self) -> MutexGuard<'_, Typing> {
        self.inner.typing.lock()
    }

    /// Opens a session for `user`: registers it (within the limits), announces the user online
    /// to its contacts if this is its first session, and queues to the new session the
    /// presence of its online contacts.
    pub(crate) fn open(&self, user: &str) -> Result<Session, HubError> {
        let session = Session::new(self.clone(), user, self.inner.config.queue_frames);
        let announce = self.register(session.handle())?;
        self.inner.counters.opened.fetch_add(1, Ordering::Relaxed);
        let contacts = self.contacts_of(user);
        self.queue_presence_of(&contacts, session.handle());
        if let Some(online) = announce {
            self.deliver(&contacts, &online);
        }
        Ok(session)
    }

    /// Adds the session; if it is the user's first and the user was not in its grace period,
    /// returns the `online` frame its contacts must hear.
    fn register(&self, handle: &SessionHandle) -> Result<Option<Frame>, HubError> {
        let config = &self.inner.config;
        let mut registry = self.write();
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return Err(HubError::ShuttingDown);
        }
        let refused = if registry.total >= config.max_sessions {
            Some(HubError::Full {
                max: config.max_sessions,
            })
        } else if registry
            .by_user
            .get(handle.user_id())
            .map_or(0, |user| user.sessions.len())
            >= config.max_sessions_per_user
        {
            Some(HubError::UserFull {
                max: config.max_sessions_per_user,
            })
        } else {
            None
        };
        if let Some(error) = refused {
            self.inner.counters.refused.fetch_add(1, Ordering::Relaxed);
            return Err(error);
        }
        let user = registry
            .by_user
            .entry(handle.user_id().to_owned())
            .or_insert_with(|| UserSessions {
                sessions: Vec::new(),
                online: frame::online(handle.user_id()),
            });
        user.sessions.push(handle.clone());
        let first = user.sessions.len() == 1;
        let online = user.online.clone();
        registry.total += 1;
        if !first {
            return Ok(None);
        }
        // Told under the lock, so the other nodes hear a user's changes in the order they happen.
        self.tell_peers_presence(handle.user_id(), PresenceChange::Online);
        let elsewhere = registry.remote.contains_key(handle.user_id());
        let announce = !elsewhere && registry.presence.came_online(handle.user_id());
        Ok(announce.then_some(online))
    }

    /// Queues to `to` an `online` frame for each of `contacts` that is online (in its grace
    /// period included).
    fn queue_presence_of(&self, contacts: &[String], to: &SessionHandle) {
        let mut leaving = Vec::new();
        {
            let registry = self.read();
            for contact in contacts {
                if let Some(user) = registry.by_user.get(contact) {
                    to.push(&user.online);
                } else if registry.presence.is_leaving(contact)
                    || registry.remote.contains_key(contact)
                {
                    leaving.push(contact);
                }
            }
        }
        for contact in leaving {
            to.push(&frame::online(contact));
        }
    }

    /// Removes a session (its [`Session`] was dropped); the user's last one starts the grace
    /// period.
    fn unregister(&self, handle: &SessionHandle) {
        let mut registry = self.write();
        let Some(user) = registry.by_user.get_mut(handle.user_id()) else {
            return;
        };
        let before = user.sessions.len();
        user.sessions.retain(|s| !s.same(handle));
        let removed = before - user.sessions.len();
        let now_empty = user.sessions.is_empty();
        registry.total -= removed;
        if now_empty {
            registry.by_user.remove(handle.user_id());
            let last_seen = now_rfc3339();
            self.tell_peers_presence(
                handle.user_id(),
                PresenceChange::Offline {
                    last_seen: last_seen.clone(),
                },
            );
            if !registry.remote.contains_key(handle.user_id()) {
                registry
                    .presence
                    .went_quiet(handle.user_id(), Instant::now(), last_seen);
                self.timer_armed();
            }
        }
    }

    /// Queues `frame` to every session of every one of `users`, without waiting; a full queue
    /// closes its session as too slow. Returns the number of sessions it was queued to.
    pub(crate) fn deliver(&self, users: &[String], frame: &Frame) -> usize {
        let mut queued = 0;
        let mut overflowed = 0;
        {
            let registry = self.read();
            for user in users {
                let sessions = registry.by_user.get(user).map(|u| u.sessions.as_slice());
                for session in sessions.unwrap_or_default() {
                    match session.push(frame) {
                        Pushed::Queued => queued += 1,
                        Pushed::Overflowed => overflowed += 1,
                        Pushed::Gone => {}
                    }
                }
            }
        }
        self.count_pushes(queued, overflowed);
        queued
    }

    fn count_pushes(&self, queued: usize, overflowed: usize) {
        let counters = &self.inner.counters;
        counters
            .deliveries
            .fetch_add(queued as u64, Ordering::Relaxed);
        if overflowed > 0 {
            counters
                .closed_slow
                .fetch_add(overflowed as u64, Ordering::Relaxed);
            tracing::info!(overflowed, "sessions closed: outbound queue full (4008)");
        }
    }

    /// True while `user` has at least one open session. Never waits for long: one read lock.
    pub(crate) fn has_live_session(&self, user_id: &str) -> bool {
        self.read().by_user.contains_key(user_id)
    }

    /// Sessions open now.
    pub(crate) fn session_count(&self) -> usize {
        self.read().total
    }

    /// Sessions `user` has open now.
    #[cfg(test)]
    pub(crate) fn user_session_count(&self, user: &str) -> usize {
        self.read()
            .by_user
            .get(user)
            .map_or(0, |user| user.sessions.len())
    }

    /// A client's typing frame: forwards `typing` for `user` in `conversation` to `recipients`
    /// (the other participants), within the rate limit; `typing:true` expires by itself.
    pub(crate) fn typing(
        &self,
        user: &str,
        conversation: &str,
        typing: bool,
        recipients: Vec<String>,
    ) {
        self.typing_at(user, conversation, typing, recipients, Instant::now());
    }

    fn typing_at(
        &self,
        user: &str,
        conversation: &str,
        typing: bool,
        recipients: Vec<String>,
        now: Instant,
    ) {
        let recipients: Arc<[String]> = recipients.into();
        let forward = {
            let mut state = self.typing_state();
            let forward = state.update(user, conversation, typing, recipients.clone(), now);
            self.timer_armed();
            if let Some(typing) = forward {
                self.tell_peers_typing(user, conversation, typing, &recipients);
            }
            forward
        };
        if let Some(typing) = forward {
            self.deliver(&recipients, &frame::typing(conversation, user, typing));
        }
    }

    /// Runs the timers due at `now`: offline announcements after the grace period, and
    /// `typing:false` for indicators that expired.
    pub(crate) fn tick(&self, now: Instant) {
        let departed = self.write().presence.due(now);
        for (user, last_seen) in departed {
            let contacts = self.contacts_of(&user);
            self.deliver(&contacts, &frame::offline(&user, &last_seen));
        }
        let expired = {
            let mut state = self.typing_state();
            let expired = state.due(now);
            for indicator in &expired {
                let (user, conversation) = (&indicator.user, &indicator.conversation);
                self.tell_peers_typing(user, conversation, false, &indicator.recipients);
            }
            expired
        };
        let remote_expired = self.inner.remote_typing.lock().due(now);
        for indicator in expired.into_iter().chain(remote_expired) {
            let frame = frame::typing(&indicator.conversation, &indicator.user, false);
            self.deliver(&indicator.recipients, &frame);
        }
    }

    /// Ticks every [`TIMER_TICK`] while a timer is armed, and sleeps while none is (an idle
    /// server does not wake for its hub), until `shutdown` is cancelled.
    pub(crate) async fn run_timers(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(TIMER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if !self.timers_armed() {
                // A timer armed after the look above has left a permit: no wake-up is lost.
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = self.inner.timer_armed.notified() => tick.reset(),
                }
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => self.tick(Instant::now()),
            }
        }
    }

    /// Tells [`Hub::run_timers`] that a timer may be armed.
    fn timer_armed(&self) {
        self.inner.timer_armed.notify_one();
    }

    /// True while something can come due: a grace period or a typing indicator.
    fn timers_armed(&self) -> bool {
        // One lock at a time.
        let leaving = !self.read().presence.is_empty();
        let typing = !self.typing_state().is_empty();
        let remote_typing = !self.inner.remote_typing.lock().is_empty();
        leaving || typing || remote_typing
    }

    /// Refuses new sessions from now on and closes every open one with `reason`; their writers
    /// send what is queued, then the close frame.
    pub(crate) fn close_all(&self, reason: CloseReason) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let registry = self.read();
        for session in registry.by_user.values().flat_map(|user| &user.sessions) {
            session.close(reason);
        }
    }

    /// The counters for `/metrics`.
    pub(crate) fn stats(&self) -> HubStats {
        let counters = &self.inner.counters;
        HubStats {
            sessions: self.session_count(),
            opened: counters.opened.load(Ordering::Relaxed),
            refused: counters.refused.load(Ordering::Relaxed),
            closed_slow: counters.closed_slow.load(Ordering::Relaxed),
            deliveries: counters.deliveries.load(Ordering::Relaxed),
        }
    }
}

/// Now as the API writes times: RFC 3339 UTC with milliseconds.
fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_support;
