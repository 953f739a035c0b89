//! The soak's WebSocket clients. Each is one user's device in a loop: connect to the current
//! server (`/ws`), `resume` every conversation it has seen from the last seq it saw, stay a
//! random while, then drop — cleanly (close frame) or abruptly (the TCP socket just closes) —
//! and stay offline a random while, so the user's messages go to the webhook meanwhile.
//!
//! A *slow consumer* reads for a few seconds, then stops reading (its socket buffer is small;
//! it only sends a `ping` now and then) until the server gives up on it with 4008 and drops the
//! connection, then reads what is left, reconnects and resumes. The close frame rarely gets
//! through the full pipe, so the 4008s are counted from the server's metrics
//! ([`super::samples`]).
//!
//! Every client checks what it receives: per conversation, after the first message it saw,
//! each `seq` exactly once and without a gap (resume included). It knows nothing of the
//! server's internals, only the documented protocol (docs/api.md).

use parking_lot::Mutex;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::random::{random_between, random_chance};
use super::Shared;

/// How long opening a session and its `ready` may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Receive buffer of a slow consumer's socket: small, so the server's queue fills soon.
const SLOW_RECEIVE_BUFFER: u32 = 4096;
/// How long a slow consumer reads normally before it stalls.
const SLOW_READING: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(5));
/// Longest stall. The server's socket buffer grows to megabytes before its queue fills, so at
/// the soak's rates the server gives up on a stalled client after minutes, not seconds.
const SLOW_STALL_MAX: Duration = Duration::from_secs(600);
/// How often a stalled client sends a `ping`: the server closes a connection that says
/// nothing for two of its ping intervals (1008), and the soak wants the 4008 instead.
const SLOW_PING: Duration = Duration::from_secs(5);
/// How long it reads after the stall for the close the server should have sent.
const SLOW_DRAIN: Duration = Duration::from_secs(10);

/// How long a session stays, and how long its user then stays offline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Shortest and longest stay.
    pub(crate) stay: (Duration, Duration),
    /// Shortest and longest time offline between two sessions.
    pub(crate) offline: (Duration, Duration),
}

/// What the clients counted.
#[derive(Debug, Default)]
pub(crate) struct SessionCounters {
    connects: AtomicU64,
    connect_failures: AtomicU64,
    clean_drops: AtomicU64,
    abrupt_drops: AtomicU64,
    resumes: AtomicU64,
    messages: AtomicU64,
    gaps: AtomicU64,
    duplicates: AtomicU64,
    slow_stalls: AtomicU64,
    closed: Mutex<BTreeMap<u16, u64>>,
    slow_closed: Mutex<BTreeMap<u16, u64>>,
}

/// The clients' counts in the report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionReport {
    /// Sessions opened (`ready` received).
    pub(crate) connects: u64,
    /// Attempts that got no session (the server was restarting, mostly).
    pub(crate) connect_failures: u64,
    /// Sessions the client closed with a close frame.
    pub(crate) clean_drops: u64,
    /// Sessions the client dropped by closing the TCP socket.
    pub(crate) abrupt_drops: u64,
    /// `resume` frames the server acknowledged.
    pub(crate) resumes: u64,
    /// `message` frames received.
    pub(crate) messages: u64,
    /// A `seq` skipped in a conversation the client had seen (must be 0).
    pub(crate) gaps: u64,
    /// A `seq` received again (must be 0).
    pub(crate) duplicates: u64,
    /// Sessions ended by the server, by close code (0: the connection just ended, e.g. a kill).
    pub(crate) closed_by_server: BTreeMap<u16, u64>,
    /// Slow consumers' stalls.
    pub(crate) slow_stalls: u64,
    /// How slow consumers' sessions ended after a stall, by close code (4008 expected; 0: the
    /// connection ended without a close frame we could read; 1: still open, we closed it).
    pub(crate) slow_closed: BTreeMap<u16, u64>,
}

impl SessionCounters {
    /// The report's view.
    pub(crate) fn report(&self) -> SessionReport {
        let map = |m: &Mutex<BTreeMap<u16, u64>>| m.lock().clone();
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SessionReport {
            connects: n(&self.connects),
            connect_failures: n(&self.connect_failures),
            clean_drops: n(&self.clean_drops),
            abrupt_drops: n(&self.abrupt_drops),
            resumes: n(&self.resumes),
            messages: n(&self.messages),
            gaps: n(&self.gaps),
            duplicates: n(&self.duplicates),
            closed_by_server: map(&self.closed),
            slow_stalls: n(&self.slow_stalls),
            slow_closed: map(&self.slow_closed),
        }
    }
}

fn count(map: &Mutex<BTreeMap<u16, u64>>, code: u16) {
    *map.lock().entry(code).or_default() += 1;
}

type Socket = WebSocketStream<TcpStream>;

/// How a session ended.
enum Ended {
    /// The server closed it (code; 0 without a close frame).
    ByServer(u16),
    /// The soak is stopping.
    Stopped,
    /// Its stay is over: the client drops it.
    StayOver,
}

/// One user's device, in a loop until `stop`.
pub(crate) struct Client {
    /// What the clients share.
    pub(crate) shared: Arc<Shared>,
    /// The user (index).
    pub(crate) user: usize,
    /// A slow consumer?
    pub(crate) slow: bool,
    /// Stays and offline times.
    pub(crate) timing: Timing,
    /// Ends the loop.
    pub(crate) stop: CancellationToken,
}

impl Client {
    /// Connects, stays, drops, waits, again, until the soak stops.
    pub(crate) async fn run(self) {
        let mut seen: HashMap<usize, u64> = HashMap::new();
        let counters = &self.shared.sessions;
        while !self.stop.is_cancelled() {
            let Some(base) = self.current_server().await else {
                break;
            };
            let socket = match self.open(&base, &seen).await {
                Ok(socket) => socket,
                Err(_) => {
                    counters.connect_failures.fetch_add(1, Ordering::Relaxed);
                    self.pause(Duration::from_millis(500)).await;
                    continue;
                }
            };
            counters.connects.fetch_add(1, Ordering::Relaxed);
            self.shared.presence.opened(self.user);
            let ended = if self.slow {
                self.hold_slow(socket, &mut seen).await
            } else {
                self.hold(socket, &mut seen).await
            };
            self.shared.presence.closed(self.user);
            if let Ended::ByServer(code) = ended {
                count(&counters.closed, code);
            }
            let (low, high) = self.timing.offline;
            let offline = if self.slow {
                low
            } else {
                random_between(low, high)
            };
            self.pause(offline).await;
        }
    }

    /// The server's URL once it runs; `None` when the soak stops first.
    async fn current_server(&self) -> Option<String> {
        let mut base = self.shared.base.clone();
        loop {
            if let Some(url) = base.borrow_and_update().clone() {
                return Some(url);
            }
            tokio::select! {
                () = self.stop.cancelled() => return None,
                changed = base.changed() => changed.ok()?,
            }
        }
    }

    async fn pause(&self, how_long: Duration) {
        tokio::select! {
            () = self.stop.cancelled() => {}
            () = tokio::time::sleep(how_long) => {}
        }
    }

    /// Opens a session, waits for `ready`, then asks to resume what it has seen (or pings, so
    /// live messages flow at once).
    async fn open(&self, base: &str, seen: &HashMap<usize, u64>) -> anyhow::Result<Socket> {
        let token = &self.shared.world.tokens[self.user];
        let address = base
            .strip_prefix("http://")
            .context("the server URL is http://")?;
        let url = format!("ws://{address}/ws?token={token}");
        let opening = async {
            let socket = TcpSocket::new_v4()?;
            if self.slow {
                socket.set_recv_buffer_size(SLOW_RECEIVE_BUFFER)?;
            }
            let stream = socket.connect(address.parse()?).await?;
            let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
            let (mut ws, _) =
                tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
            wait_ready(&mut ws).await?;
            ws.send(Frame::text(self.first_frame(seen))).await?;
            anyhow::Ok(ws)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, opening)
            .await
            .context("no `ready` in time")?
    }

    fn first_frame(&self, seen: &HashMap<usize, u64>) -> String {
        if seen.is_empty() {
            return r#"{"type":"ping"}"#.to_owned();
        }
        let conversations: serde_json::Map<String, serde_json::Value> = seen
            .iter()
            .map(|(&c, &seq)| (self.shared.world.conversations[c].clone(), seq.into()))
            .collect();
        serde_json::json!({"type": "resume", "ref": "resume", "conversations": conversations})
            .to_string()
    }

    /// Reads for a random stay, then drops the session one way or the other.
    async fn hold(&self, mut socket: Socket, seen: &mut HashMap<usize, u64>) -> Ended {
        let stay = random_between(self.timing.stay.0, self.timing.stay.1);
        let ended = self.read_for(&mut socket, seen, stay).await;
        if matches!(ended, Ended::StayOver) {
            let counters = &self.shared.sessions;
            if random_chance(0.5) {
                let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
                counters.clean_drops.fetch_add(1, Ordering::Relaxed);
            } else {
                drop(socket);
                counters.abrupt_drops.fetch_add(1, Ordering::Relaxed);
            }
        }
        ended
    }

    /// Reads a little, then stops reading (but keeps pinging, so the server does not take it
    /// for a dead connection) until the server gives up on it, then reads what is left and
    /// notes how the session ended.
    async fn hold_slow(&self, mut socket: Socket, seen: &mut HashMap<usize, u64>) -> Ended {
        let reading = random_between(SLOW_READING.0, SLOW_READING.1);
        let ended = self.read_for(&mut socket, seen, reading).await;
        if !matches!(ended, Ended::StayOver) {
            return ended;
        }
        self.shared
            .sessions
            .slow_stalls
            .fetch_add(1, Ordering::Relaxed);
        self.stall(&mut socket).await;
        if self.stop.is_cancelled() {
            return Ended::Stopped;
        }
        let ended = self.read_for(&mut socket, seen, SLOW_DRAIN).await;
        let code = match ended {
            Ended::ByServer(code) => code,
            Ended::Stopped => return ended,
            Ended::StayOver => {
                let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
                1
            }
        };
        count(&self.shared.sessions.slow_closed, code);
        ended
    }

    /// Reads nothing, only sends a `ping` now and then, until a ping cannot be written (the
    /// server dropped the connection), [`SLOW_STALL_MAX`] passed, or the soak stops.
    async fn stall(&self, socket: &mut Socket) {
        let until = tokio::time::sleep(SLOW_STALL_MAX);
        tokio::pin!(until);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = &mut until => return,
                () = tokio::time::sleep(SLOW_PING) => {}
            }
            let ping = socket.send(Frame::text(r#"{"type":"ping"}"#));
            if !matches!(tokio::time::timeout(SLOW_PING, ping).await, Ok(Ok(()))) {
                return;
            }
        }
    }

    /// Reads frames for `how_long`, checking every `message`.
    async fn read_for(
        &self,
        socket: &mut Socket,
        seen: &mut HashMap<usize, u64>,
        how_long: Duration,
    ) -> Ended {
        let until = tokio::time::sleep(how_long);
        tokio::pin!(until);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
                    return Ended::Stopped;
                }
                () = &mut until => return Ended::StayOver,
                frame = socket.next() => match frame {
                    Some(Ok(Frame::Text(text))) => self.on_text(text.as_str(), seen),
                    Some(Ok(Frame::Close(close))) => {
                        return Ended::ByServer(close.map_or(1005, |c| c.code.into()));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Ended::ByServer(0),
                },
            }
        }
    }

    fn on_text(&self, text: &str, seen: &mut HashMap<usize, u64>) {
        let Ok(incoming) = serde_json::from_str::<Incoming>(text) else {
            return;
        };
        let counters = &self.shared.sessions;
        match (incoming.kind.as_ref(), incoming.message) {
            ("message", Some(message)) => {
                let index = &self.shared.world.index;
                let Some(&c) = index.get(message.conversation_id.as_ref()) else {
                    return;
                };
                counters.messages.fetch_add(1, Ordering::Relaxed);
                match check_seq(seen.get(&c).copied(), message.seq) {
                    SeqCheck::Next => {}
                    SeqCheck::Gap => {
                        counters.gaps.fetch_add(1, Ordering::Relaxed);
                    }
                    SeqCheck::Duplicate => {
                        counters.duplicates.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                seen.insert(c, message.seq);
            }
            ("ack", _) if incoming.reference.as_deref() == Some("resume") => {
                counters.resumes.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

async fn wait_ready(ws: &mut Socket) -> anyhow::Result<()> {
    while let Some(frame) = ws.next().await {
        if let Frame::Text(text) = frame? {
            if serde_json::from_str::<Incoming>(text.as_str())?.kind == "ready" {
                return Ok(());
            }
        }
    }
    anyhow::bail!("the server closed the session before `ready`")
}

/// A `seq` against the last one seen in its conversation.
#[derive(Debug, PartialEq, Eq)]
enum SeqCheck {
    /// The next one (or the first one seen).
    Next,
    /// Some were skipped.
    Gap,
    /// Seen already.
    Duplicate,
}

fn check_seq(last: Option<u64>, seq: u64) -> SeqCheck {
    match last {
        None => SeqCheck::Next,
        Some(last) if seq <= last => SeqCheck::Duplicate,
        Some(last) if seq == last + 1 => SeqCheck::Next,
        Some(_) => SeqCheck::Gap,
    }
}

/// A server frame, as much of it as the clients read.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "ref", default, borrow)]
    reference: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Delivered<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivered<'a> {
    #[serde(borrow)]
    conversation_id: Cow<'a, str>,
    seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_are_checked_against_the_last_seen() {
        assert_eq!(check_seq(None, 17), SeqCheck::Next);
        assert_eq!(check_seq(Some(17), 18), SeqCheck::Next);
        assert_eq!(check_seq(Some(17), 17), SeqCheck::Duplicate);
        assert_eq!(check_seq(Some(17), 3), SeqCheck::Duplicate);
        assert_eq!(check_seq(Some(17), 19), SeqCheck::Gap);
    }

    #[test]
    fn frames_are_read_with_their_ref() {
        let ack: Incoming = serde_json::from_str(r#"{"type":"ack","ref":"resume"}"#).unwrap();
        assert_eq!(ack.reference.as_deref(), Some("resume"));
        let message: Incoming = serde_json::from_str(
            r#"{"type":"message","message":{"conversationId":"c","seq":4,"content":"x"}}"#,
        )
        .unwrap();
        assert_eq!(message.message.unwrap().seq, 4);
    }
}
