//! The event bus's consumer groups: this module owns consumer-group membership and partition
//! assignment for the HTTP event bus, and knows nothing of HTTP.
//!
//! [`Coordinator`] keeps, in memory, which members each group has, what they subscribed to
//! (topic names or RabbitMQ-style patterns, see [`pattern_matches`]), which partitions each
//! one owns and where each one reads. Committed offsets are not kept here: they stay in the log
//! ([`crate::log::Log::commit_offset`]), so a restart loses members but never progress.
//!
//! This module does not read records, commit offsets or check scopes; the HTTP routes in
//! `api::groups` do, with the assignment this module hands out.

pub(crate) mod coordinator;

pub(crate) use coordinator::{
    BusError, Coordinator, Lease, MemberView, OffsetReset, Subscription, TopicPartition,
};

/// Whether `topic` matches `pattern`, as a RabbitMQ topic binding: the words are separated by
/// dots, `*` stands for exactly one word and `#` for zero or more words; other words match
/// themselves. A pattern without wildcards matches only the topic of that name.
pub(crate) fn pattern_matches(pattern: &str, topic: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let topic: Vec<&str> = topic.split('.').collect();
    words_match(&pattern, &topic)
}

fn words_match(pattern: &[&str], topic: &[&str]) -> bool {
    match pattern.split_first() {
        None => topic.is_empty(),
        Some((&"#", rest)) => (0..=topic.len()).any(|skip| words_match(rest, &topic[skip..])),
        Some((word, rest)) => match topic.split_first() {
            Some((first, tail)) => (*word == "*" || word == first) && words_match(rest, tail),
            None => false,
        },
    }
}

/// Whether `pattern` uses a wildcard word (`*` or `#`).
pub(crate) fn is_pattern(pattern: &str) -> bool {
    pattern.split('.').any(|word| word == "*" || word == "#")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_is_one_word_and_hash_is_any_number() {
        assert!(pattern_matches("order.*", "order.created"));
        assert!(!pattern_matches("order.*", "order"));
        assert!(!pattern_matches("order.*", "order.created.v2"));
        assert!(!pattern_matches("order.*", "user.registered"));
        assert!(pattern_matches("order.#", "order"));
        assert!(pattern_matches("order.#", "order.created.v2"));
        assert!(pattern_matches("#", "messages"));
        assert!(pattern_matches("#.v2", "order.created.v2"));
        assert!(pattern_matches("a.*.c", "a.b.c"));
        assert!(pattern_matches("order.created", "order.created"));
        assert!(!pattern_matches("order.created", "order.createdx"));
        assert!(is_pattern("a.#") && is_pattern("*") && !is_pattern("a.b"));
    }
}
