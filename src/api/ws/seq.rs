//! The per-conversation seq bookkeeping of one session: which `message` frame comes next.
//!
//! For each conversation the session has written a message of (live or replayed), it keeps the
//! next seq it expects. A message below it was written already (a duplicate: dropped); one
//! above it leaves a gap that the writer fills from the store first. A conversation the
//! session has not seen yet starts wherever its first live message is. `resume` sets the
//! expectation to the client's last seen seq + 1. Pure bookkeeping; the writer acts on it.

use std::collections::HashMap;
use std::sync::Arc;

/// What to do with a `message` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// It is the next one (or the first one seen): write it.
    Write,
    /// It was written already: drop it.
    Duplicate,
    /// Messages `from..seq` are missing: write them from the store first.
    Gap {
        /// The first missing seq.
        from: u64,
    },
}

/// Next expected seq per conversation.
#[derive(Debug, Default)]
pub(super) struct SeqTracker {
    next: HashMap<Arc<str>, u64>,
}

impl SeqTracker {
    /// The verdict on a `message` frame of `conversation` with `seq`.
    pub(super) fn check(&self, conversation: &str, seq: u64) -> Verdict {
        match self.next.get(conversation) {
            None => Verdict::Write,
            Some(&next) if seq < next => Verdict::Duplicate,
            Some(&next) if seq == next => Verdict::Write,
            Some(&next) => Verdict::Gap { from: next },
        }
    }

    /// Records that the message `seq` of `conversation` was written.
    pub(super) fn written(&mut self, conversation: &Arc<str>, seq: u64) {
        let next = self.next.entry(conversation.clone()).or_insert(0);
        *next = (*next).max(seq + 1);
    }

    /// Forgets `conversation` (the user left it): if it joins again, its first live message
    /// starts anew instead of filling the gap of the time it was out.
    pub(super) fn forget(&mut self, conversation: &str) {
        self.next.remove(conversation);
    }

    /// The client has seen `conversation` up to `last_seen`: expect `last_seen + 1` next.
    pub(super) fn resume_from(&mut self, conversation: &Arc<str>, last_seen: u64) {
        self.next.insert(conversation.clone(), last_seen + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_message_starts_the_sequence_then_duplicates_drop_and_gaps_show() {
        let mut seqs = SeqTracker::default();
        let c: Arc<str> = "c".into();
        assert_eq!(seqs.check("c", 7), Verdict::Write, "first live message");
        seqs.written(&c, 7);
        assert_eq!(seqs.check("c", 7), Verdict::Duplicate);
        assert_eq!(seqs.check("c", 3), Verdict::Duplicate);
        assert_eq!(seqs.check("c", 8), Verdict::Write);
        assert_eq!(seqs.check("c", 11), Verdict::Gap { from: 8 });
        assert_eq!(seqs.check("other", 1), Verdict::Write, "per conversation");
        seqs.forget("c");
        assert_eq!(seqs.check("c", 20), Verdict::Write, "starts anew");
    }

    #[test]
    fn resume_expects_the_seq_after_the_last_seen_one() {
        let mut seqs = SeqTracker::default();
        let c: Arc<str> = "c".into();
        seqs.resume_from(&c, 0);
        assert_eq!(seqs.check("c", 1), Verdict::Write);
        assert_eq!(seqs.check("c", 4), Verdict::Gap { from: 1 });
        seqs.written(&c, 1);
        seqs.written(&c, 2);
        assert_eq!(seqs.check("c", 2), Verdict::Duplicate);
        assert_eq!(seqs.check("c", 3), Verdict::Write);
    }
}
