//! The live fan-out: the changes of each store batch, handed to the hub the moment the batch
//! is applied — from memory, not from a re-read of `messages.sent` — so a message reaches the
//! sessions of its conversation's participants one durable append (the command) after its
//! send, with its seq, in the order the store applied it.
//!
//! Why this is safe before the events are relayed and the batch committed: the command is
//! durable in `messages`, and a replay after a crash applies it again to the same seq (see
//! `store::apply`), so what a session saw is what the store holds after any restart. A replay
//! happens before the server is ready, when no session is open, so nobody sees a change twice.
//!
//! For each change the participants are looked up at that moment (a participant removed a
//! moment ago receives nothing more); the frame is built only if one of them has a session —
//! most events of a busy server concern conversations nobody has open — and [`Hub::deliver`]
//! never waits. This module knows nothing of sockets, wire formats or sessions' seq
//! bookkeeping (that is `api::ws`).

use crate::hub::{frame, Frame, Hub};
use crate::store::{Change, EventType, Store};

/// Delivers a batch's changes, in order.
pub(super) fn deliver(store: &Store, hub: &Hub, changes: Vec<Change>) {
    for change in changes {
        let conversation = match &change {
            Change::Message { message, .. } => message.conversation_id.as_str(),
            Change::Read { conversation, .. } => conversation.as_str(),
        };
        let Some(participants) = store.participants(conversation) else {
            continue;
        };
        if participants.iter().any(|user| hub.has_live_session(user)) {
            hub.deliver(&participants, &frame_of(change));
        }
    }
}

/// The frame clients get for a change.
fn frame_of(change: Change) -> Frame {
    match change {
        Change::Message {
            event_type: EventType::MessageSent,
            message,
        } => frame::message(message),
        Change::Message {
            event_type: EventType::MessageUpdated,
            message,
        } => frame::message_updated(message),
        Change::Message {
            event_type: EventType::MessageDeleted,
            message,
        } => frame::message_deleted(&message),
        Change::Read {
            conversation,
            user,
            seq,
        } => frame::read(&conversation, &user, seq),
    }
}
