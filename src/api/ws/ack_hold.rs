//! A send's acknowledgement held back until the session's own copy of the message goes out, so
//! that the two share one write.
//!
//! Every session of the sender gets the `message` frame of what it sent (the contract: "the
//! sender's sessions included"), after the store has it; the `ack` of the send is ready earlier,
//! once the command is durable in the log. Written apart, they cost the sending session two
//! writes (two system calls, two TCP segments, two wake-ups of the client) per message, a third
//! of all writes at a chat load. So the writer holds the ack until the message frame with the
//! same id passes through it (whether it is then written, dropped as a duplicate or refused to
//! a user no longer a participant), and feeds the ack right before it. The ack still means what
//! it meant: it only ever goes out later, never before the send is durable.
//!
//! The hold is bounded: the ack goes out alone if the message passed already (the store was
//! faster than the reader's hand-over: the ids of the user's last [`AckHold::RECENT`] messages
//! are remembered), if the store
//! had applied the send before the ack was handed over (a retry answered from the idempotency
//! cache has no new copy coming), and at the latest [`AckHold::MAX_HOLD`] after it arrived (a
//! store that lags). A session reads one client frame at a time, so at most one ack is held; a
//! second one releases the first.
//!
//! This module decides nothing about what a writer writes or when it flushes (`writer.rs`).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::hub::{Frame, ServerEvent};

/// The ack of one send, waiting for the message's own frame.
#[derive(Debug)]
pub(super) struct HeldAck {
    message_id: String,
    ack: Frame,
    due: Instant,
}

/// The ack held by one session's writer, and the ids of the messages it wrote last.
#[derive(Debug, Default)]
pub(super) struct AckHold {
    held: Option<HeldAck>,
    /// Ids of the last messages of the session's user that passed, newest last.
    recent: VecDeque<String>,
}

impl AckHold {
    /// The longest an ack waits for its message.
    pub(super) const MAX_HOLD: Duration = Duration::from_millis(100);
    /// How many passed message ids are remembered.
    pub(super) const RECENT: usize = 8;

    /// Takes the ack of a send of `message_id`; `copy_coming` is false when no copy of the
    /// message will pass through this writer any more (the session does not hear the
    /// conversation, or the store had already applied the send when its ack was made).
    /// Returns the acks to write now, in order: the one held before (a second ack releases
    /// the first), then this one unless it is held.
    pub(super) fn hand(
        &mut self,
        message_id: &str,
        ack: Frame,
        copy_coming: bool,
    ) -> [Option<Frame>; 2] {
        let earlier = self.release();
        if !copy_coming || self.recent.iter().any(|id| id == message_id) {
            return [earlier, Some(ack)];
        }
        self.held = Some(HeldAck {
            message_id: message_id.to_owned(),
            ack,
            due: Instant::now() + Self::MAX_HOLD,
        });
        [earlier, None]
    }

    /// A message frame is passing through the writer of `user`'s session: the ack it releases,
    /// if one waits for it. Frames of other kinds, and other users' messages, release nothing
    /// and are not remembered (no copy of their ids for every delivery).
    pub(super) fn passing(&mut self, frame: &Frame, user: &str) -> Option<Frame> {
        let ServerEvent::Message(message) = frame.event() else {
            return None;
        };
        if message.sender_id != user {
            return None;
        }
        if self.recent.len() == Self::RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(message.id.clone());
        match &self.held {
            Some(held) if held.message_id == message.id => self.held.take().map(|held| held.ack),
            _ => None,
        }
    }

    /// When the held ack must go out alone, if one is held.
    pub(super) fn due(&self) -> Option<Instant> {
        self.held.as_ref().map(|held| held.due)
    }

    /// The held ack, to be written now (its time is up, or the session is closing).
    pub(super) fn release(&mut self) -> Option<Frame> {
        self.held.take().map(|held| held.ack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::frame;
    use std::sync::Arc;

    const USER: &str = "ann";

    fn message_frame(id: &str) -> Frame {
        let mut message = crate::api::ws::codec::tests::message(1);
        message.id = id.to_owned();
        message.sender_id = USER.to_owned();
        frame::message(Arc::new(message))
    }

    fn ack(reference: &str) -> Frame {
        frame::ack(Some(serde_json::json!(reference)))
    }

    /// The references of the acks, in order.
    fn references(acks: [Option<Frame>; 2]) -> Vec<String> {
        acks.into_iter()
            .flatten()
            .map(|ack| reference_of(&ack))
            .collect()
    }

    fn reference_of(ack: &Frame) -> String {
        match ack.event() {
            ServerEvent::Ack {
                reference: Some(r), ..
            } => r.as_str().unwrap_or_default().into(),
            other => panic!("not an ack: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_ack_waits_for_its_message_and_goes_out_right_before_it() {
        let mut hold = AckHold::default();
        assert!(references(hold.hand("m1", ack("a1"), true)).is_empty());
        assert!(hold.passing(&message_frame("other"), USER).is_none());
        assert!(hold.due().is_some());
        let released = hold.passing(&message_frame("m1"), USER).expect("released");
        assert_eq!(reference_of(&released), "a1");
        assert!(hold.due().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_ack_whose_message_passed_already_is_written_at_once() {
        let mut hold = AckHold::default();
        assert!(hold.passing(&message_frame("m1"), USER).is_none());
        assert_eq!(references(hold.hand("m1", ack("a1"), true)), ["a1"]);
        assert!(hold.due().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_last_few_passed_ids_are_remembered() {
        let mut hold = AckHold::default();
        hold.passing(&message_frame("old"), USER);
        for i in 0..AckHold::RECENT {
            hold.passing(&message_frame(&format!("m{i}")), USER);
        }
        assert!(references(hold.hand("old", ack("a"), true)).is_empty());
        assert_eq!(references(hold.hand("m0", ack("b"), true)), ["a", "b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn other_users_messages_neither_release_nor_count_as_passed() {
        let mut hold = AckHold::default();
        let mut theirs = crate::api::ws::codec::tests::message(1);
        theirs.id = "m1".to_owned();
        theirs.sender_id = "bob".to_owned();
        let theirs = frame::message(Arc::new(theirs));
        assert!(hold.passing(&theirs, USER).is_none());
        assert!(references(hold.hand("m1", ack("a1"), true)).is_empty());
        assert!(hold.passing(&theirs, USER).is_none());
        assert_eq!(reference_of(&hold.release().expect("still held")), "a1");
    }

    #[tokio::test(start_paused = true)]
    async fn an_ack_with_no_copy_coming_is_written_at_once() {
        let mut hold = AckHold::default();
        assert_eq!(references(hold.hand("m1", ack("a1"), false)), ["a1"]);
        assert!(hold.due().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_ack_releases_the_first_and_the_hold_is_bounded() {
        let mut hold = AckHold::default();
        let started = Instant::now();
        hold.hand("m1", ack("a1"), true);
        assert_eq!(hold.due(), Some(started + AckHold::MAX_HOLD));
        assert_eq!(references(hold.hand("m2", ack("a2"), true)), ["a1"]);
        assert_eq!(reference_of(&hold.release().expect("second ack")), "a2");
        assert!(hold.release().is_none());
    }
}
