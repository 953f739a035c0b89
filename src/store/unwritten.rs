//! The messages of busy conversations stored since the last checkpoint, in memory: per
//! conversation, the run of consecutive seqs its store writer applied (and any edits of them),
//! which the [`checkpoint`](super::checkpoint) writes as one record of the `messages` tree (a
//! chunk) and then lets go of; and which conversations are busy.
//!
//! Why not a record per message: every sled insert costs a leaf copy and a share of a leaf
//! split, and a chat message's own insert was the largest cost the store controlled. One chunk
//! per conversation per checkpoint turns a busy conversation's many inserts into one. A quiet
//! conversation's message is written alone by the store writer instead (see
//! [`apply`](super::apply)): as a chunk of one it would save nothing, and hundreds of them
//! written at once by a checkpoint delayed the deliveries behind it. A conversation is busy
//! from its second message since the last checkpoint until the next one, and from its first
//! if it stored two or more in the interval before: a conversation that keeps a few messages
//! per interval going would otherwise pay a record of its own for every first one. A message
//! here is as durable as any: its send record is in the log, the store's position does not pass
//! it before the checkpoint wrote its chunk, and a replay after a crash stores it again at the
//! same seq (see [`apply`](super::apply)).
//!
//! A chunk record is keyed by its first message's place (`conversation ++ 0x00 ++ seq`, as
//! [`keys::message`](super::keys::message)) and holds one or more message JSON objects,
//! concatenated, in seq order; it covers the seqs from its key up to the next chunk's key. This
//! module does not write to disk and knows nothing of the log.

use std::borrow::{Borrow, Cow};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::error::{Result, StoreError};
use super::model::Message;

/// Messages of one conversation not yet in a chunk: seqs `first..first + messages.len()`.
#[derive(Debug)]
pub(super) struct Tail {
    pub first: u64,
    pub messages: Vec<Arc<Message>>,
    /// The chunk record of `messages`, built as they come (each encoded by the store writer
    /// that stored it, so the checkpoint does not encode them all at once); `None` once one was
    /// replaced (an edit) or a checkpoint took a part, and then encoded again when written.
    chunk: Option<Vec<u8>>,
    /// Roughly what it takes in memory.
    bytes: usize,
    /// Which tail of the conversation this is: a deleted conversation's tail goes, and one of
    /// a conversation created again with the same id is another.
    incarnation: u64,
    /// Replacements so far: a checkpoint lets go only of messages unchanged since it copied them.
    edits: u64,
}

/// A copy of a tail's messages, for a read.
#[derive(Debug, Clone)]
pub(super) struct TailCopy {
    pub first: u64,
    pub messages: Vec<Arc<Message>>,
}

/// A copy of a tail as a checkpoint writes it: its chunk record, and what identifies the
/// messages it holds.
#[derive(Debug)]
pub(super) struct Snapshot {
    pub conversation: String,
    pub first: u64,
    pub chunk: Vec<u8>,
    len: usize,
    incarnation: u64,
    edits: u64,
}

impl Tail {
    /// The message at `seq`, if this tail holds it.
    pub(super) fn get(&self, seq: u64) -> Option<&Arc<Message>> {
        let index = seq.checked_sub(self.first)?;
        self.messages.get(usize::try_from(index).ok()?)
    }

    fn put(&mut self, message: Arc<Message>, json: &[u8]) -> Result<()> {
        let seq = message.seq;
        let next = self.first + self.messages.len() as u64;
        if seq == next {
            // Counted as it comes: a recount per message is quadratic in a busy tail.
            self.bytes += approximate_size(&message);
            if let Some(chunk) = &mut self.chunk {
                chunk.extend_from_slice(json);
                self.bytes += json.len();
            }
            self.messages.push(message);
            return Ok(());
        }
        let index = seq
            .checked_sub(self.first)
            .filter(|_| seq < next)
            .ok_or_else(|| out_of_order(&message, self.first, next))?;
        self.chunk = None;
        self.edits += 1;
        self.messages[index as usize] = message;
        self.recount();
        Ok(())
    }

    fn recount(&mut self) {
        let messages: usize = self.messages.iter().map(|m| approximate_size(m)).sum();
        self.bytes = messages + self.chunk.as_ref().map_or(0, Vec::len);
    }

    /// The chunk record of this tail's messages.
    fn chunk(&self) -> Cow<'_, [u8]> {
        match &self.chunk {
            Some(chunk) => Cow::Borrowed(chunk),
            None => Cow::Owned(encode_chunk(&self.messages)),
        }
    }
}

/// The unwritten messages of every conversation.
#[derive(Debug, Default)]
pub(super) struct Unwritten {
    tails: HashMap<String, Tail>,
    /// Roughly what they take in memory, for the budget the writer keeps.
    bytes: usize,
    incarnations: u64,
    /// Conversations a message of which was written as a record of its own since the last
    /// checkpoint: their next messages join the unwritten ones (see `is_busy`).
    written_alone: HashSet<String>,
    /// Conversations that stored two messages or more between the last two checkpoints: their
    /// messages join the unwritten ones from the first (see `start_interval`).
    recently_busy: HashSet<String>,
}

impl Unwritten {
    /// The unwritten message at `seq` of `conversation`.
    pub(super) fn get(&self, conversation: &str, seq: u64) -> Option<Arc<Message>> {
        self.tails.get(conversation)?.get(seq).cloned()
    }

    /// A copy of `conversation`'s tail (shared messages), for a read that also looks at disk.
    pub(super) fn tail(&self, conversation: &str) -> Option<TailCopy> {
        self.tails.get(conversation).map(|tail| TailCopy {
            first: tail.first,
            messages: tail.messages.clone(),
        })
    }

    /// Puts a message stored or changed by a store writer, with its JSON: the next seq of its
    /// conversation's tail (or the first of a new tail), or a replacement of one the tail holds.
    pub(super) fn put(&mut self, message: Arc<Message>, json: &[u8]) -> Result<()> {
        let conversation = &message.conversation_id;
        if !self.tails.contains_key(conversation) {
            self.incarnations += 1;
            let empty = Tail {
                first: message.seq,
                messages: Vec::new(),
                chunk: Some(Vec::new()),
                bytes: 0,
                incarnation: self.incarnations,
                edits: 0,
            };
            self.tails.insert(conversation.clone(), empty);
        }
        let tail = self.tails.get_mut(conversation).expect("inserted above");
        let before = tail.bytes;
        tail.put(message, json)?;
        let after = tail.bytes;
        self.bytes = self.bytes + after - before;
        Ok(())
    }

    /// Lets go of a conversation's tail (it was deleted); its messages.
    pub(super) fn remove(&mut self, conversation: &str) -> Vec<Arc<Message>> {
        let Some(tail) = self.tails.remove(conversation) else {
            return Vec::new();
        };
        self.bytes -= tail.bytes;
        tail.messages
    }

    /// Every tail as a checkpoint writes it.
    pub(super) fn snapshot(&self) -> Vec<Snapshot> {
        self.tails
            .iter()
            .map(|(conversation, tail)| Snapshot {
                conversation: conversation.clone(),
                first: tail.first,
                chunk: tail.chunk().into_owned(),
                len: tail.messages.len(),
                incarnation: tail.incarnation,
                edits: tail.edits,
            })
            .collect()
    }

    /// Lets go of the messages a checkpoint wrote (`written`, its snapshots whose chunk is on
    /// disk), as far as they are unchanged since: a tail that was edited meanwhile is kept whole
    /// (the next checkpoint writes its chunk again, under the same key), and messages stored
    /// meanwhile stay.
    pub(super) fn forget_written(&mut self, written: &[Snapshot]) {
        for snapshot in written {
            let Some(tail) = self.tails.get_mut(&snapshot.conversation) else {
                continue;
            };
            if (tail.incarnation, tail.edits) != (snapshot.incarnation, snapshot.edits) {
                continue;
            }
            let end = snapshot.first + snapshot.len as u64;
            let taken = end
                .saturating_sub(tail.first)
                .min(tail.messages.len() as u64) as usize;
            if taken == 0 {
                continue;
            }
            let before = tail.bytes;
            if taken == tail.messages.len() {
                self.tails.remove(&snapshot.conversation);
                self.bytes -= before;
                continue;
            }
            tail.messages.drain(..taken);
            tail.first += taken as u64;
            tail.chunk = None;
            tail.recount();
            let after = tail.bytes;
            self.bytes = self.bytes + after - before;
        }
    }

    /// Whether a new message of `conversation` should join the unwritten ones: one of its
    /// messages is unwritten or was stored since the last checkpoint, or it stored two or more
    /// in the interval before.
    pub(super) fn is_busy(&self, conversation: &str) -> bool {
        self.tails.contains_key(conversation)
            || self.written_alone.contains(conversation)
            || self.recently_busy.contains(conversation)
    }

    /// Notes conversations a store writer wrote a message of as a record of its own.
    pub(super) fn note_written_alone(&mut self, conversations: HashSet<String>) {
        if self.written_alone.is_empty() {
            self.written_alone = conversations;
        } else {
            self.written_alone.extend(conversations);
        }
    }

    /// Starts a new checkpoint interval once a checkpoint wrote the chunks of `written`: a
    /// conversation that stored two messages or more in the interval that ends (its chunk's,
    /// and one written alone) is busy from its first in the next one; any other is busy again
    /// only once it stores another message.
    pub(super) fn start_interval(&mut self, written: &[Snapshot]) {
        let stored =
            |s: &Snapshot| s.len + usize::from(self.written_alone.contains(&s.conversation));
        self.recently_busy = written
            .iter()
            .filter(|s| stored(s) >= 2)
            .map(|s| s.conversation.clone())
            .collect();
        self.written_alone.clear();
    }

    /// Roughly the memory the unwritten messages take.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// A chunk record's value: the messages' JSON objects, concatenated.
pub(super) fn encode_chunk<M: Borrow<Message>>(messages: &[M]) -> Vec<u8> {
    let size = messages.iter().map(|m| approximate_size(m.borrow())).sum();
    let mut value = Vec::with_capacity(size);
    for message in messages {
        value.extend_from_slice(message.borrow().json().get().as_bytes());
    }
    value
}

/// The messages of a chunk record (`key` names it in errors).
pub(super) fn decode_chunk(key: &[u8], raw: &[u8]) -> Result<Vec<Message>> {
    serde_json::Deserializer::from_slice(raw)
        .into_iter::<Message>()
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| StoreError::corrupt(format!("messages/{}", String::from_utf8_lossy(key)), e))
}

fn approximate_size(message: &Message) -> usize {
    // The fixed fields and their JSON names, then what varies, and the JSON once made.
    200 + message.content.len()
        + message.sender_name.len()
        + message.id.len()
        + message.json.made_len()
}

fn out_of_order(message: &Message, first: u64, next: u64) -> StoreError {
    StoreError::Storage(format!(
        "message {} at seq {} of {:?} does not follow the unwritten seqs {first}..{next}",
        message.id, message.seq, message.conversation_id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(conversation: &str, seq: u64, content: &str) -> Arc<Message> {
        Arc::new(Message {
            id: format!("{conversation}-{seq}"),
            conversation_id: conversation.to_owned(),
            seq,
            sender_id: "ann".to_owned(),
            sender_name: "Ann".to_owned(),
            content: content.to_owned(),
            client_message_id: None,
            reply_to: None,
            mentions: Vec::new(),
            sent_at: "2026-12-06T00:00:00Z".to_owned(),
            edited_at: None,
            deleted: false,
            json: Default::default(),
        })
    }

    fn put(unwritten: &mut Unwritten, message: Arc<Message>) -> Result<()> {
        let json = serde_json::to_vec(message.as_ref()).unwrap();
        unwritten.put(message, &json)
    }

    #[test]
    fn a_tail_takes_the_next_seq_or_a_replacement_and_refuses_a_gap() {
        let mut unwritten = Unwritten::default();
        put(&mut unwritten, message("c", 7, "a")).unwrap();
        put(&mut unwritten, message("c", 8, "b")).unwrap();
        put(&mut unwritten, message("c", 7, "edited")).unwrap();
        assert_eq!(unwritten.get("c", 7).unwrap().content, "edited");
        assert_eq!(unwritten.get("c", 8).unwrap().content, "b");
        assert!(unwritten.get("c", 9).is_none() && unwritten.get("c", 6).is_none());
        assert!(put(&mut unwritten, message("c", 10, "gap")).is_err());
        assert!(put(&mut unwritten, message("c", 6, "before")).is_err());
        let tail = unwritten.tail("c").unwrap();
        assert_eq!((tail.first, tail.messages.len()), (7, 2));
    }

    #[test]
    fn the_chunk_built_as_messages_come_is_the_one_encoded_at_once() {
        let mut unwritten = Unwritten::default();
        for seq in 1..=3 {
            put(&mut unwritten, message("c", seq, &format!("m{seq}"))).unwrap();
        }
        let chunk = |unwritten: &Unwritten| {
            let tail = &unwritten.tails["c"];
            (
                unwritten.snapshot().remove(0).chunk,
                encode_chunk(&tail.messages),
            )
        };
        let (built, encoded) = chunk(&unwritten);
        assert_eq!(built, encoded);
        put(&mut unwritten, message("c", 2, "edited")).unwrap();
        put(&mut unwritten, message("c", 4, "m4")).unwrap();
        let (built, encoded) = chunk(&unwritten);
        assert_eq!(built, encoded);
        let contents: Vec<String> = decode_chunk(b"c", &built)
            .unwrap()
            .into_iter()
            .map(|m| m.content)
            .collect();
        assert_eq!(contents, ["m1", "edited", "m3", "m4"]);
    }

    #[test]
    fn a_checkpoint_lets_go_only_of_what_it_wrote_unchanged() {
        let mut unwritten = Unwritten::default();
        for (conversation, seq) in [("c", 1), ("c", 2), ("d", 1), ("e", 1)] {
            put(&mut unwritten, message(conversation, seq, "x")).unwrap();
        }
        let written = unwritten.snapshot();
        // Meanwhile: c gets a message, d an edit, e is deleted and created again.
        put(&mut unwritten, message("c", 3, "later")).unwrap();
        put(&mut unwritten, message("d", 1, "edited")).unwrap();
        unwritten.remove("e");
        put(&mut unwritten, message("e", 1, "again")).unwrap();
        unwritten.forget_written(&written);
        let c = unwritten.tail("c").unwrap();
        assert_eq!(
            (c.first, c.messages.len()),
            (3, 1),
            "only c's later message stays"
        );
        let d = unwritten.tail("d").unwrap();
        assert_eq!(
            d.messages[0].content, "edited",
            "d's edit waits for the next checkpoint"
        );
        assert_eq!(unwritten.tail("e").unwrap().messages[0].content, "again");
        let again = unwritten.snapshot();
        let c = again.iter().find(|s| s.conversation == "c").unwrap();
        assert_eq!(decode_chunk(b"c", &c.chunk).unwrap()[0].content, "later");
        unwritten.forget_written(&again);
        assert_eq!(unwritten.bytes(), 0);
        assert!(unwritten.snapshot().is_empty());
    }

    #[test]
    fn its_size_follows_what_it_holds() {
        let mut unwritten = Unwritten::default();
        put(&mut unwritten, message("c", 1, "hello")).unwrap();
        let one = unwritten.bytes();
        put(&mut unwritten, message("d", 1, "hi")).unwrap();
        let both = unwritten.bytes();
        assert!(one > 0 && both > one);
        put(&mut unwritten, message("c", 2, &"x".repeat(1000))).unwrap();
        assert!(unwritten.bytes() > both + 1000);
        unwritten.remove("c");
        assert_eq!(unwritten.bytes(), both - one);
        unwritten.remove("d");
        assert_eq!(unwritten.bytes(), 0);
    }

    #[test]
    fn a_chunk_holds_its_messages_in_order_and_a_lone_message_record_is_a_chunk_of_one() {
        let messages = vec![message("c", 3, "x"), message("c", 4, "{\"y\"}")];
        let decoded = decode_chunk(b"c", &encode_chunk(&messages)).unwrap();
        assert_eq!(decoded, [(*messages[0]).clone(), (*messages[1]).clone()]);
        let lone = serde_json::to_vec(messages[0].as_ref()).unwrap();
        assert_eq!(decode_chunk(b"c", &lone).unwrap(), [(*messages[0]).clone()]);
        assert!(decode_chunk(b"c", b"{\"id\":").is_err());
    }

    /// A checkpoint as [`Store::checkpoint`](super::super::Store) ends one: every tail written.
    fn checkpoint(unwritten: &mut Unwritten) {
        let written = unwritten.snapshot();
        unwritten.forget_written(&written);
        unwritten.start_interval(&written);
    }

    #[test]
    fn a_conversation_that_stored_two_messages_in_an_interval_is_busy_from_the_first_in_the_next() {
        let mut unwritten = Unwritten::default();
        // c: one message written alone, then one unwritten; d: one written alone; e: two.
        unwritten.note_written_alone(["c".to_owned(), "d".to_owned(), "e".to_owned()].into());
        put(&mut unwritten, message("c", 2, "b")).unwrap();
        put(&mut unwritten, message("e", 2, "b")).unwrap();
        put(&mut unwritten, message("e", 3, "c")).unwrap();
        checkpoint(&mut unwritten);
        assert!(unwritten.is_busy("c"), "two in the interval before");
        assert!(unwritten.is_busy("e"), "three in the interval before");
        assert!(!unwritten.is_busy("d"), "one in the interval before");
        // Next interval: c's one message joined the unwritten ones; e stored none.
        put(&mut unwritten, message("c", 3, "c")).unwrap();
        checkpoint(&mut unwritten);
        assert!(!unwritten.is_busy("c"), "one in the interval before");
        assert!(!unwritten.is_busy("e"), "none in the interval before");
    }
}
