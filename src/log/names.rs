//! Validation of topic and consumer-group names.
//!
//! Names follow Kafka's rule (`[A-Za-z0-9._-]`, 1–249 characters) so that a deployment can move
//! to Kafka keeping its names. The rule also keeps `/` free as a separator in storage keys.

use super::error::{LogError, Result};

/// Longest topic or group name accepted (Kafka's limit).
pub(super) const MAX_NAME_LEN: usize = 249;

/// Checks a topic name.
pub(crate) fn validate_topic_name(name: &str) -> Result<()> {
    check_name(name).map_err(|reason| LogError::InvalidTopicName {
        name: name.into(),
        reason,
    })
}

/// Checks a consumer group name.
pub(crate) fn validate_group_name(name: &str) -> Result<()> {
    check_name(name).map_err(|reason| LogError::InvalidGroupName {
        name: name.into(),
        reason,
    })
}

fn check_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        return Err("a name cannot be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("a name has at most 249 characters");
    }
    if name == "." || name == ".." {
        return Err("\".\" and \"..\" are reserved");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_style_names() {
        for name in [
            "messages",
            "message.new",
            "order_created-v2",
            "a",
            &"x".repeat(249),
        ] {
            assert!(validate_topic_name(name).is_ok(), "{name} should be valid");
        }
    }

    #[test]
    fn rejects_empty_long_and_odd_names() {
        for name in [
            "",
            "..",
            ".",
            "a/b",
            "spa ce",
            "ünï",
            "a*",
            &"x".repeat(250),
        ] {
            let err = validate_topic_name(name).unwrap_err();
            assert!(
                matches!(err, LogError::InvalidTopicName { .. }),
                "{name}: {err}"
            );
        }
        assert!(matches!(
            validate_group_name("g/1"),
            Err(LogError::InvalidGroupName { .. })
        ));
    }
}
