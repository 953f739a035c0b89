//! Names on the NATS side: streams, subjects, buckets and keys, derived from the namespace, the
//! topic's incarnation and the partition.
//!
//! A topic's streams carry its incarnation (random, fixed at creation), so a topic deleted and
//! created again never meets its predecessor's records or consumers. Topic and group names use
//! `[A-Za-z0-9._-]`; `.` separates tokens in subjects and keys and is not allowed in stream
//! names, so it is written `=` there (a character names never contain).

/// The stream holding one partition of one incarnation of a topic.
pub(super) fn stream(namespace: &str, incarnation: &str, partition: u32) -> String {
    format!("{namespace}_log_{incarnation}_{partition}")
}

/// The subject records of that partition are published on.
pub(super) fn subject(namespace: &str, incarnation: &str, partition: u32) -> String {
    format!("{namespace}.log.{incarnation}.{partition}")
}

/// The bucket of topic configurations (key: the topic name).
pub(super) fn topics_bucket(namespace: &str) -> String {
    format!("{namespace}_topics")
}

/// The bucket of committed group offsets.
pub(super) fn offsets_bucket(namespace: &str) -> String {
    format!("{namespace}_offsets")
}

/// A topic's key in the topics bucket.
pub(super) fn topic_key(topic: &str) -> String {
    escape(topic)
}

/// The topic a key of the topics bucket names.
pub(super) fn topic_of_key(key: &str) -> String {
    unescape(key)
}

/// A committed offset's key: `group.topic.partition`, names escaped.
pub(super) fn offset_key(group: &str, topic: &str, partition: u32) -> String {
    format!("{}.{}.{partition}", escape(group), escape(topic))
}

/// (group, topic, partition) of an offset key, if it is one.
pub(super) fn parse_offset_key(key: &str) -> Option<(String, String, u32)> {
    let mut parts = key.split('.');
    let (group, topic, partition) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((unescape(group), unescape(topic), partition.parse().ok()?))
}

fn escape(name: &str) -> String {
    name.replace('.', "=")
}

fn unescape(name: &str) -> String {
    name.replace('=', ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_keys_round_trip_names_with_dots() {
        let key = offset_key("a.b", "c.d-e", 7);
        assert_eq!(key, "a=b.c=d-e.7");
        assert_eq!(
            parse_offset_key(&key),
            Some(("a.b".into(), "c.d-e".into(), 7))
        );
        assert_eq!(topic_of_key(&topic_key("x.y")), "x.y");
    }
}
