//! Presence and typing across nodes: the relay between this node's hub and the other nodes, on
//! plain NATS subjects (nothing stored; JetStream is not involved).
//!
//! Out: the hub reports its local changes to a [`PeerLink`] (the [`NatsLink`] here), which
//! numbers the presence ones and queues them without waiting; the relay task publishes them on
//! the events subject in that order, with a heartbeat every `heartbeat_interval` carrying the
//! latest number. In: the other nodes' messages go through [`Peers`] (gap detection, snapshots,
//! silent nodes) into the hub. A node that starts asks every other node for its snapshot
//! (hello), so its sessions see who is online at once; a node that stops says bye.
//!
//! This module does not decide who is online (the hub does, with its grace period), nor connect
//! to NATS (its caller hands it a client), nor deliver chat events (the log does).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ephemeral_peers::Peers;
use super::ephemeral_wire::{is_valid_node_id, Event, Hello, Origin, Snapshot, Subjects};
use crate::hub::{Hub, PeerLink, PresenceChange};

/// Changes queued for publishing at most; beyond, a change is dropped and the others notice
/// the gap at the next heartbeat and ask for a snapshot.
const QUEUE: usize = 8192;

/// How the relay runs.
#[derive(Debug, Clone)]
pub(crate) struct EphemeralConfig {
    /// This node's id: one NATS subject token (letters, digits, `-`, `_`), unique in the
    /// cluster.
    pub node_id: String,
    /// First token of the subjects, so that clusters sharing a NATS stay apart.
    pub prefix: String,
    /// How often the node says it is alive.
    pub heartbeat_interval: Duration,
    /// How long a node may stay unheard before its users' sessions count as closed.
    pub node_timeout: Duration,
}

impl EphemeralConfig {
    /// The defaults: subjects under `tidings.`, a heartbeat every second, a node silent for
    /// 5 s counts as gone.
    pub(crate) fn new(node_id: &str) -> EphemeralConfig {
        EphemeralConfig {
            node_id: node_id.to_owned(),
            prefix: "tidings".to_owned(),
            heartbeat_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(5),
        }
    }
}

/// Why the relay did not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EphemeralError {
    /// The node id cannot be a subject token.
    #[error("cluster node id {0:?} must be 1 to 64 letters, digits, '-' or '_'")]
    InvalidNodeId(String),
    /// The node timeout leaves no room for a late heartbeat.
    #[error("the node timeout must be at least twice the heartbeat interval")]
    Timing,
    /// NATS refused a subscription.
    #[error("subscribing to {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// Why.
        source: async_nats::SubscribeError,
    },
    /// NATS refused the hello.
    #[error("publishing the hello: {0}")]
    Publish(#[from] async_nats::PublishError),
}

/// This node's presence as announced: the change count and who is online here.
#[derive(Debug)]
struct Announced {
    origin: Origin,
    users: HashSet<String>,
}

/// The hub's [`PeerLink`]: numbers each presence change and queues it for the relay task.
#[derive(Debug)]
pub(crate) struct NatsLink {
    announced: Mutex<Announced>,
    queue: mpsc::Sender<Event>,
    dropped: AtomicU64,
}

impl NatsLink {
    fn new(node: &str, queue: mpsc::Sender<Event>) -> NatsLink {
        let origin = Origin {
            node: node.to_owned(),
            incarnation: rand_u64(),
            seq: 0,
        };
        NatsLink {
            announced: Mutex::new(Announced {
                origin,
                users: HashSet::new(),
            }),
            queue,
            dropped: AtomicU64::new(0),
        }
    }

    fn enqueue(&self, event: Event) {
        if self.queue.try_send(event).is_err() && self.dropped.fetch_add(1, Ordering::Relaxed) == 0
        {
            tracing::warn!("cluster presence queue full or closed: a change was dropped");
        }
    }

    /// Queues a heartbeat, numbered under the same lock as the changes so it follows them.
    fn heartbeat(&self) {
        let announced = self.announced.lock();
        self.enqueue(Event::Heartbeat {
            origin: announced.origin.clone(),
        });
    }

    fn snapshot(&self) -> Snapshot {
        let announced = self.announced.lock();
        Snapshot {
            origin: announced.origin.clone(),
            users: announced.users.iter().cloned().collect(),
        }
    }

    fn origin(&self) -> Origin {
        self.announced.lock().origin.clone()
    }
}

impl PeerLink for NatsLink {
    fn presence_changed(&self, user: &str, change: PresenceChange) {
        let mut announced = self.announced.lock();
        announced.origin.seq += 1;
        let origin = announced.origin.clone();
        let user = user.to_owned();
        let event = match change {
            PresenceChange::Online => {
                announced.users.insert(user.clone());
                Event::Online { origin, user }
            }
            PresenceChange::Offline { last_seen } => {
                announced.users.remove(&user);
                Event::Offline {
                    origin,
                    user,
                    last_seen,
                }
            }
        };
        // Queued under the lock: the numbers go out in order.
        self.enqueue(event);
    }

    fn typing_changed(&self, user: &str, conversation: &str, typing: bool, recipients: &[String]) {
        let node = self.announced.lock().origin.node.clone();
        self.enqueue(Event::Typing {
            node,
            user: user.to_owned(),
            conversation: conversation.to_owned(),
            typing,
            recipients: recipients.to_vec(),
        });
    }
}

/// A random incarnation number (a restarted node must not look like its former self).
fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Time is a fine fallback: it only has to differ from the previous start.
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    }
    u64::from_le_bytes(bytes)
}

/// The subscriptions the relay listens on.
struct Inbound {
    events: async_nats::Subscriber,
    hello: async_nats::Subscriber,
    snapshot_requests: async_nats::Subscriber,
    /// Where the snapshots this node asked for arrive.
    inbox: async_nats::Subscriber,
}

async fn subscribe(
    client: &async_nats::Client,
    subject: String,
) -> Result<async_nats::Subscriber, EphemeralError> {
    client
        .subscribe(subject.clone())
        .await
        .map_err(|source| EphemeralError::Subscribe { subject, source })
}

/// Starts relaying `hub`'s presence and typing to the other nodes and theirs into it, until
/// `shutdown`; the hub gets its peer link before this returns, and the other nodes have been
/// asked for their snapshots.
pub(crate) async fn start(
    client: async_nats::Client,
    hub: Hub,
    config: EphemeralConfig,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, EphemeralError> {
    if !is_valid_node_id(&config.node_id) {
        return Err(EphemeralError::InvalidNodeId(config.node_id));
    }
    if config.node_timeout < config.heartbeat_interval * 2 {
        return Err(EphemeralError::Timing);
    }
    let subjects = Subjects::new(&config.prefix);
    let inbox = client.new_inbox();
    let inbound = Inbound {
        events: subscribe(&client, subjects.events()).await?,
        hello: subscribe(&client, subjects.hello()).await?,
        snapshot_requests: subscribe(&client, subjects.snapshot_of(&config.node_id)).await?,
        inbox: subscribe(&client, inbox.clone()).await?,
    };
    let (queue, outgoing) = mpsc::channel(QUEUE);
    let link = Arc::new(NatsLink::new(&config.node_id, queue));
    hub.attach_peers(link.clone());
    let hello = Hello {
        node: config.node_id.clone(),
    };
    client
        .publish_with_reply(subjects.hello(), inbox.clone(), to_json(&hello))
        .await?;
    let relay = Relay {
        peers: Peers::new(&config.node_id, config.node_timeout),
        client,
        hub,
        link,
        subjects,
        config,
        asked: HashMap::new(),
        inbox,
    };
    Ok(tokio::spawn(relay.run(inbound, outgoing, shutdown)))
}

fn to_json(value: &impl serde::Serialize) -> Bytes {
    // Serializing these plain structs (strings, numbers, lists) cannot fail.
    Bytes::from(serde_json::to_vec(value).expect("a wire message serializes"))
}

struct Relay {
    peers: Peers,
    client: async_nats::Client,
    hub: Hub,
    link: Arc<NatsLink>,
    subjects: Subjects,
    config: EphemeralConfig,
    /// When each node's snapshot was last asked for (at most once per heartbeat interval).
    asked: HashMap<String, Instant>,
    /// Where the snapshots this node asks for arrive.
    inbox: String,
}

impl Relay {
    async fn run(
        mut self,
        mut inbound: Inbound,
        mut outgoing: mpsc::Receiver<Event>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.config.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(event) = outgoing.recv() => self.publish(&event).await,
                message = inbound.events.next() => match message {
                    Some(message) => self.on_event(&message).await,
                    None => break,
                },
                message = inbound.hello.next() => match message {
                    Some(message) => self.on_hello(&message).await,
                    None => break,
                },
                message = inbound.snapshot_requests.next() => match message {
                    Some(message) => self.answer_snapshot(&message).await,
                    None => break,
                },
                message = inbound.inbox.next() => match message {
                    Some(message) => self.on_snapshot(&message),
                    None => break,
                },
                _ = tick.tick() => {
                    self.link.heartbeat();
                    self.peers.expire(Instant::now(), &self.hub);
                }
            }
        }
        self.say_bye(&mut outgoing).await;
    }

    async fn publish(&self, event: &Event) {
        if let Err(error) = self
            .client
            .publish(self.subjects.events(), to_json(event))
            .await
        {
            tracing::warn!(%error, "cluster presence: publish failed");
        }
    }

    async fn on_event(&mut self, message: &async_nats::Message) {
        let Ok(event) = serde_json::from_slice::<Event>(&message.payload) else {
            tracing::debug!("cluster presence: an unreadable event was ignored");
            return;
        };
        if let Some(node) = self.peers.on_event(event, Instant::now(), &self.hub) {
            self.ask_snapshot(&node).await;
        }
    }

    /// Asks `node` for its snapshot, unless that was done within the last heartbeat interval.
    async fn ask_snapshot(&mut self, node: &str) {
        let now = Instant::now();
        let recently = self
            .asked
            .get(node)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.config.heartbeat_interval);
        if recently {
            return;
        }
        self.asked.insert(node.to_owned(), now);
        let hello = Hello {
            node: self.config.node_id.clone(),
        };
        let sent = self
            .client
            .publish_with_reply(
                self.subjects.snapshot_of(node),
                self.inbox.clone(),
                to_json(&hello),
            )
            .await;
        if let Err(error) = sent {
            tracing::warn!(%error, node, "cluster presence: asking for a snapshot failed");
        }
    }

    async fn on_hello(&self, message: &async_nats::Message) {
        let from_me = serde_json::from_slice::<Hello>(&message.payload)
            .is_ok_and(|hello| hello.node == self.config.node_id);
        if !from_me {
            self.answer_snapshot(message).await;
        }
    }

    async fn answer_snapshot(&self, message: &async_nats::Message) {
        let Some(reply) = message.reply.clone() else {
            return;
        };
        let snapshot = self.link.snapshot();
        if let Err(error) = self.client.publish(reply, to_json(&snapshot)).await {
            tracing::warn!(%error, "cluster presence: answering a snapshot request failed");
        }
    }

    fn on_snapshot(&mut self, message: &async_nats::Message) {
        match serde_json::from_slice::<Snapshot>(&message.payload) {
            Ok(snapshot) => self.peers.on_snapshot(snapshot, Instant::now(), &self.hub),
            Err(_) => tracing::debug!("cluster presence: an unreadable snapshot was ignored"),
        }
    }

    /// Publishes what is still queued, then bye, and flushes: the other nodes drop this
    /// node's users at once instead of after the node timeout.
    async fn say_bye(&self, outgoing: &mut mpsc::Receiver<Event>) {
        while let Ok(event) = outgoing.try_recv() {
            self.publish(&event).await;
        }
        let bye = Event::Bye {
            origin: self.link.origin(),
        };
        self.publish(&bye).await;
        if let Err(error) = self.client.flush().await {
            tracing::debug!(%error, "cluster presence: flush at shutdown failed");
        }
    }
}
