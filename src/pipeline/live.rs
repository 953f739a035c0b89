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
        let recipients = match &change {
            Change::Message { message, .. } => store.participants(&message.conversation_id),
            Change::Read { conversation, .. } => store.participants(conversation),
            // The participants as the change left them, and one just removed.
            Change::Conversation {
                conversation,
                removed,
            } => Some(
                conversation
                    .participants
                    .iter()
                    .chain(removed)
                    .cloned()
                    .collect(),
            ),
            Change::ConversationDeleted { participants, .. } => Some(participants.clone()),
        };
        let Some(recipients) = recipients else {
            continue;
        };
        if recipients.iter().any(|user| hub.has_live_session(user)) {
            hub.deliver(&recipients, &frame_of(change));
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
        Change::Conversation { conversation, .. } => frame::conversation_updated(conversation),
        Change::ConversationDeleted {
            conversation_id, ..
        } => frame::conversation_deleted(&conversation_id),
    }
}
