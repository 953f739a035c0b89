//! The writer of one session: the only task that writes to its socket.
//!
//! It sends `ready` first, then drains the session's queue in batches (feed many frames, flush
//! once), the reader's replies and resume requests ([`Control`]), and pings. The queue is held
//! back until the client's first frame has been handled or [`RESUME_WINDOW`] passed, so that a
//! `resume` sent right after `ready` is served before any live message: a live message written
//! first would otherwise come before the older ones the replay brings (out of order). Before it writes a
//! frame about a conversation it checks that the user is still a participant; a `message` frame
//! also passes the seq rule ([`SeqTracker`]): a duplicate is dropped, a gap is filled from the
//! store first. `resume` replays from the store in pages, in order. It closes the connection
//! with the session's [`CloseReason`]: on shutdown (1001) after writing what is queued, when
//! the client is too slow (4008) or too large (1009) at once, and itself (1008) when the
//! connection answered nothing for two ping intervals, and (4001) when the session's token
//! expires: it sleeps until then in the same loop, and a renewal ([`Control::Renew`]) moves
//! that deadline (see `expiry.rs`). A close frame gets [`CLOSE_TIMEOUT`] to go out; a client
//! that reads nothing is then dropped.
//!
//! With `ws.writeDelayMs` set, two batches of queued frames are at least that far apart: a
//! frame that finds the session quiet goes at once, later ones wait and share one write (fewer
//! system calls for busy sessions, at most that much more latency).
//!
//! It is generic over the sink, so it does not care how frames reach the socket; it knows
//! nothing of client frames (that is `reader.rs`). What differs for a SignalR session is its
//! [`Dialect`]'s: no `ready` (the reader answers the handshake, and the queue opens only then),
//! SignalR's ping record instead of a WebSocket ping, its close record before the close frame,
//! and only the conversations the session joined (`JoinConversation`, or `Resume`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::ack_hold::AckHold;
use super::dialect::{self, Dialect};
use super::expiry;
use super::seq::{SeqTracker, Verdict};
use crate::hub::frame;
use crate::hub::{CloseReason, Frame, Scope, ServerEvent, Session, SessionHandle};
use crate::store::{HistoryPage, Store};

/// Most queued frames written between two flushes.
const MAX_WRITE_BATCH: usize = 256;
/// Messages per store read while replaying.
const REPLAY_PAGE: usize = 200;
/// How long a close frame (and, on shutdown, the frames queued before it) may take to go out.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Ping intervals without a word from the client after which the session is closed.
const MISSED_PINGS: u32 = 2;
/// How long after `ready` the queue waits for the client's first frame (a `resume`, usually).
pub(super) const RESUME_WINDOW: Duration = Duration::from_secs(1);

/// What the reader hands the writer.
#[derive(Debug)]
pub(super) enum Control {
    /// A reply to a client frame (`ack`, `error`, `pong`).
    Reply(Frame),
    /// The `ack` of a `send`: it goes out with the session's own copy of the message if one
    /// is coming (see `ack_hold.rs`), else at once.
    SendAck {
        ack: Frame,
        message_id: String,
        conversation: String,
        /// False when the store had applied the send before its ack was made.
        copy_coming: bool,
    },
    /// Replay these conversations above each last seen seq, then `ack` with `reference`.
    Resume {
        /// (conversation, last seen seq), each one the user is a participant of.
        conversations: Vec<(String, u64)>,
        /// The client frame's `ref`.
        reference: Option<Value>,
    },
    /// The client's first frame has been handled: the queue may flow.
    Open,
    /// SignalR `JoinConversation`: the session hears the conversation from now on; then
    /// answer `reference`.
    Join {
        conversation: String,
        reference: Option<Value>,
    },
    /// SignalR `LeaveConversation`; then answer `reference`.
    Leave {
        conversation: String,
        reference: Option<Value>,
    },
    /// Protocol bytes of this session alone (SignalR's handshake answer, its close record).
    Text(bytes::Bytes),
    /// The client presented a fresh token expiring at `expires_at` (seconds since the epoch):
    /// the session ends then instead; then answer `reference`.
    Renew {
        expires_at: u64,
        reference: Option<Value>,
    },
    /// Close the session for this reason once what came before is written.
    Close(CloseReason),
}

enum Step {
    Control(Control),
    Frame(Frame),
    Ping,
    /// The held ack's time is up: it goes out alone.
    AckDue,
}

type WriteResult<T = ()> = Result<T, axum::Error>;

/// One session's writer; [`run`](Writer::run) until the session closes.
pub(super) struct Writer<S> {
    pub sink: S,
    pub session: Session,
    pub control: mpsc::Receiver<Control>,
    pub store: Store,
    /// Set by the reader whenever the client sent anything (a pong included).
    pub heard: Arc<AtomicBool>,
    pub ping_interval: Duration,
    /// `ws.writeDelayMs`: least time between two batches of queued frames.
    pub write_delay: Duration,
    /// When the last batch of queued frames was flushed.
    pub last_batch: Option<Instant>,
    pub seqs: SeqTracker,
    /// False while the queue is held back (see the module doc).
    pub live: bool,
    /// Conversations the user was found in, valid while the store's membership epoch is
    /// `verified_epoch`: most frames then need no look-up of the participants.
    pub verified: HashSet<Arc<str>>,
    pub verified_epoch: u64,
    /// The protocol the session speaks.
    pub dialect: Dialect,
    /// The conversations a SignalR session joined (a `/ws` session hears all of its user's).
    pub joined: HashSet<Arc<str>>,
    /// When the session's token expires: the session closes then (4001).
    pub expires: Instant,
    /// A send's ack waiting for the session's own copy of the message.
    pub acks: AckHold,
}

impl<S> Writer<S>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    /// Writes `ready`, serves the session until it closes, and closes the connection.
    pub(super) async fn run(mut self) {
        let handle = self.session.handle().clone();
        let greeted = if self.dialect.sends_ready() {
            let ready = frame::ready(handle.user_id(), handle.id());
            self.write_now(&ready).await
        } else {
            Ok(())
        };
        let reason = match greeted {
            Ok(()) => self.serve(&handle).await,
            Err(_) => CloseReason::ClientGone,
        };
        // Tells the reader too; a reason given earlier (by the hub or the reader) wins.
        handle.close(reason);
        let reason = handle.close_reason().unwrap_or(reason);
        self.finish(reason).await;
    }

    async fn serve(&mut self, handle: &SessionHandle) -> CloseReason {
        let start = Instant::now() + self.ping_interval;
        let mut ping = tokio::time::interval_at(start, self.ping_interval);
        let mut missed = 0;
        let held_until = Instant::now() + RESUME_WINDOW;
        let opens_by_itself = self.dialect.opens_by_itself();
        // One timer for the session's whole life, moved when the client renews its token.
        let expiry = tokio::time::sleep_until(self.expires);
        tokio::pin!(expiry);
        loop {
            if expiry.deadline() != self.expires {
                expiry.as_mut().reset(self.expires);
            }
            let ack_due = self.acks.due();
            let step = tokio::select! {
                biased;
                () = handle.closed() => return closed_reason(handle),
                // Before the client's frames: a client that keeps the control queue busy must
                // not hold its session open past its token's expiry.
                () = expiry.as_mut() => return token_expired(handle),
                Some(control) = self.control.recv() => Step::Control(control),
                Some(frame) = self.session.recv(), if self.live => Step::Frame(frame),
                () = tokio::time::sleep_until(held_until), if !self.live && opens_by_itself => Step::Control(Control::Open),
                _ = ping.tick() => Step::Ping,
                () = tokio::time::sleep_until(ack_due.unwrap_or(held_until)), if ack_due.is_some() => Step::AckDue,
            };
            let outcome = tokio::select! {
                biased;
                () = abandoned(handle) => return closed_reason(handle),
                outcome = self.perform(step, &mut missed) => outcome,
            };
            match outcome {
                Ok(None) => {}
                Ok(Some(reason)) => return reason,
                Err(_) => return CloseReason::ClientGone,
            }
        }
    }

    async fn perform(&mut self, step: Step, missed: &mut u32) -> WriteResult<Option<CloseReason>> {
        if matches!(step, Step::Control(ref control) if !matches!(control, Control::SendAck { .. }))
        {
            // Answers go out in the order of the client frames they answer.
            self.write_held_ack().await?;
        }
        match step {
            Step::Control(Control::Reply(reply)) => self.write_now(&reply).await?,
            Step::Control(Control::SendAck {
                ack,
                message_id,
                conversation,
                copy_coming,
            }) => {
                let copy_coming = copy_coming && self.live && self.hears(&conversation);
                let mut written = false;
                for ack in self
                    .acks
                    .hand(&message_id, ack, copy_coming)
                    .into_iter()
                    .flatten()
                {
                    self.feed(&ack).await?;
                    written = true;
                }
                if written {
                    self.sink.flush().await?;
                }
            }
            Step::AckDue => self.write_held_ack().await?,
            Step::Control(Control::Open) => self.live = true,
            Step::Control(Control::Resume {
                conversations,
                reference,
            }) => {
                self.resume(conversations).await?;
                self.live = true;
                self.write_now(&frame::ack(reference)).await?;
            }
            Step::Control(Control::Join {
                conversation,
                reference,
            }) => {
                self.write_queued().await?;
                self.joined.insert(conversation.into());
                self.write_now(&frame::ack(reference)).await?;
            }
            Step::Control(Control::Leave {
                conversation,
                reference,
            }) => {
                self.write_queued().await?;
                self.joined.remove(conversation.as_str());
                self.seqs.forget(&conversation);
                self.write_now(&frame::ack(reference)).await?;
            }
            Step::Control(Control::Text(bytes)) => {
                self.sink.send(dialect::text(bytes)).await?;
            }
            Step::Control(Control::Renew {
                expires_at,
                reference,
            }) => {
                self.expires = expiry::deadline(expires_at);
                self.write_now(&expiry::renewed(reference, expires_at))
                    .await?;
            }
            Step::Control(Control::Close(reason)) => return Ok(Some(reason)),
            Step::Frame(first) => self.write_batch(first).await?,
            Step::Ping => {
                if self.heard.swap(false, Ordering::Relaxed) {
                    *missed = 0;
                } else {
                    *missed += 1;
                    if *missed >= MISSED_PINGS {
                        return Ok(Some(CloseReason::Unresponsive));
                    }
                }
                self.sink.send(self.dialect.ping()).await?;
            }
        }
        Ok(None)
    }

    /// Writes `first` and whatever else is queued (up to [`MAX_WRITE_BATCH`]), then flushes once.
    /// Within the write delay of the previous batch it first waits for the delay to pass,
    /// gathering what arrives meanwhile: every write to a socket costs a system call (and, on
    /// loopback, the receiver's TCP work too), so a session receiving many messages per second
    /// takes several per write, while one that was quiet gets its frame at once.
    async fn write_batch(&mut self, first: Frame) -> WriteResult {
        self.write_frame(&first).await?;
        if let Some(due) = self.next_batch_due() {
            tokio::time::sleep_until(due).await;
        }
        for _ in 1..MAX_WRITE_BATCH {
            let Some(next) = self.session.try_recv() else {
                break;
            };
            self.write_frame(&next).await?;
        }
        self.sink.flush().await?;
        self.last_batch = Some(Instant::now());
        Ok(())
    }

    /// Writes what the hub queued before now (when the queue is open): a join or leave takes
    /// effect for events broadcast after it, as SignalR groups do, not for those already on
    /// their way.
    async fn write_queued(&mut self) -> WriteResult {
        if !self.live {
            return Ok(());
        }
        while let Some(queued) = self.session.try_recv() {
            self.write_frame(&queued).await?;
        }
        Ok(())
    }

    /// When the next batch may be written, if that is still to come.
    fn next_batch_due(&self) -> Option<Instant> {
        let due = self.last_batch? + self.write_delay;
        (due > Instant::now()).then_some(due)
    }

    /// Writes the held ack, if there is one, now.
    async fn write_held_ack(&mut self) -> WriteResult {
        match self.acks.release() {
            Some(ack) => self.write_now(&ack).await,
            None => Ok(()),
        }
    }

    /// Feeds the ack a message frame releases, if one waits for it (see `ack_hold.rs`).
    async fn feed_released_ack(&mut self, frame: &Frame) -> WriteResult {
        match self.acks.passing(frame, self.session.handle().user_id()) {
            Some(ack) => self.feed(&ack).await,
            None => Ok(()),
        }
    }

    async fn write_now(&mut self, frame: &Frame) -> WriteResult {
        self.feed(frame).await?;
        self.sink.flush().await
    }

    /// Feeds the frame in the session's dialect; a frame the dialect has nothing for (SignalR
    /// has no `pong`) is skipped.
    async fn feed(&mut self, frame: &Frame) -> WriteResult {
        let bytes = self.dialect.encode(frame);
        if bytes.is_empty() {
            return Ok(());
        }
        self.sink.feed(dialect::text(bytes)).await
    }

    fn user(&self) -> &str {
        self.session.handle().user_id()
    }

    /// Whether the session wants the frame: a SignalR session hears only the conversations it
    /// joined.
    fn wants(&self, frame: &Frame) -> bool {
        if !self.dialect.joins_conversations() {
            return true;
        }
        let conversation = match (frame.scope(), frame.event()) {
            (
                Scope::Conversation(id)
                | Scope::Message {
                    conversation: id, ..
                },
                _,
            ) => id.as_ref(),
            (_, ServerEvent::ConversationUpdated(conversation)) => conversation.id.as_str(),
            (_, ServerEvent::ConversationDeleted { conversation_id }) => conversation_id.as_ref(),
            _ => return true,
        };
        self.hears(conversation)
    }

    /// Whether the session hears `conversation` (a SignalR session: only those it joined).
    fn hears(&self, conversation: &str) -> bool {
        !self.dialect.joins_conversations() || self.joined.contains(conversation)
    }

    /// Feeds a frame if its scope allows it now.
    async fn write_frame(&mut self, frame: &Frame) -> WriteResult {
        if !self.wants(frame) {
            return Ok(());
        }
        match frame.scope() {
            Scope::Session => self.feed(frame).await,
            Scope::Conversation(conversation) => {
                if self.still_participant(conversation) {
                    self.feed(frame).await?;
                }
                Ok(())
            }
            Scope::Message { conversation, seq } => {
                self.write_message(conversation, *seq, frame).await
            }
        }
    }

    /// True while the user is a participant of `conversation`, as of now.
    fn still_participant(&mut self, conversation: &Arc<str>) -> bool {
        let epoch = self.store.membership_epoch();
        if epoch != self.verified_epoch {
            self.verified.clear();
            self.verified_epoch = epoch;
        }
        if self.verified.contains(conversation) {
            return true;
        }
        let member = self
            .store
            .is_participant(conversation, self.session.handle().user_id());
        if member {
            self.verified.insert(conversation.clone());
        }
        member
    }

    /// A live `message` frame: participants only, no duplicate, no gap.
    async fn write_message(
        &mut self,
        conversation: &Arc<str>,
        seq: u64,
        frame: &Frame,
    ) -> WriteResult {
        self.feed_released_ack(frame).await?;
        if !self.still_participant(conversation) {
            self.seqs.forget(conversation);
            return Ok(());
        }
        if let Verdict::Gap { from } = self.seqs.check(conversation, seq) {
            self.replay(conversation, from - 1, Some(seq)).await?;
        }
        if self.seqs.check(conversation, seq) == Verdict::Write {
            self.feed(frame).await?;
            self.seqs.written(conversation, seq);
        }
        Ok(())
    }

    /// Replays each conversation from the store above its last seen seq (capped at its last
    /// stored seq, so a client ahead of the store still gets what comes next).
    async fn resume(&mut self, conversations: Vec<(String, u64)>) -> WriteResult {
        for (id, last_seen) in conversations {
            let Some(conversation) = self.store.conversation(&id) else {
                continue;
            };
            if !conversation.has_participant(self.user()) {
                continue;
            }
            let from = last_seen.min(conversation.last_seq);
            let id: Arc<str> = id.into();
            if self.dialect.joins_conversations() {
                self.joined.insert(id.clone());
            }
            self.seqs.resume_from(&id, from);
            self.replay(&id, from, None).await?;
        }
        Ok(())
    }

    /// Writes the stored messages of `conversation` above `after` (and below `before`), in
    /// order, a page at a time, flushing after each page.
    async fn replay(
        &mut self,
        conversation: &Arc<str>,
        mut after: u64,
        before: Option<u64>,
    ) -> WriteResult {
        loop {
            let page = match self.history_page(conversation, after, before).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(%conversation, error = %e, "replay read failed; session closed");
                    return Err(axum::Error::new(e));
                }
            };
            let (done, count) = (!page.has_more, page.items.len());
            for message in page.items {
                let seq = message.seq;
                let frame = frame::message(Arc::new(message));
                self.feed_released_ack(&frame).await?;
                self.feed(&frame).await?;
                self.seqs.written(conversation, seq);
                after = seq;
            }
            self.sink.flush().await?;
            if done || count == 0 {
                return Ok(());
            }
        }
    }

    async fn history_page(
        &self,
        conversation: &str,
        after: u64,
        before: Option<u64>,
    ) -> Result<HistoryPage, crate::api::problem::ApiError> {
        let store = self.store.clone();
        let conversation = conversation.to_owned();
        crate::api::blocking(move || {
            Ok(store.history(&conversation, before, Some(after), REPLAY_PAGE)?)
        })
        .await
    }

    /// Sends the close frame of `reason` (on shutdown after what is still queued), within
    /// [`CLOSE_TIMEOUT`].
    async fn finish(mut self, reason: CloseReason) {
        let Some(code) = reason.code() else {
            // The client left: complete its close handshake if it started one.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.sink.close()).await;
            return;
        };
        let work = async {
            if reason == CloseReason::ShuttingDown {
                while let Some(queued) = self.session.try_recv() {
                    self.write_frame(&queued).await?;
                }
                if let Some(ack) = self.acks.release() {
                    self.feed(&ack).await?;
                }
            }
            for farewell in self.dialect.farewell(reason) {
                self.sink.feed(farewell).await?;
            }
            let close = CloseFrame {
                code,
                reason: reason.text().into(),
            };
            self.sink.send(Message::Close(Some(close))).await
        };
        if tokio::time::timeout(CLOSE_TIMEOUT, work).await.is_err() {
            tracing::debug!(code, "close frame not sent in time; connection dropped");
        }
    }
}

/// The reason a session closes at its token's expiry.
fn token_expired(handle: &SessionHandle) -> CloseReason {
    tracing::debug!(user = %handle.user_id(), session = %handle.id(), "token expired; session closed");
    CloseReason::TokenExpired
}

fn closed_reason(handle: &SessionHandle) -> CloseReason {
    handle.close_reason().unwrap_or(CloseReason::ClientGone)
}

/// Completes when the session closed for a reason that abandons the frame being written: at
/// once for all but shutdown, which lets that frame go on for [`CLOSE_TIMEOUT`] (the queued
/// ones follow it), never longer: a client that stopped reading must not hold the server's
/// shutdown on a write that cannot finish.
async fn abandoned(handle: &SessionHandle) {
    handle.closed().await;
    if handle.close_reason() == Some(CloseReason::ShuttingDown) {
        tokio::time::sleep(CLOSE_TIMEOUT).await;
    }
}
