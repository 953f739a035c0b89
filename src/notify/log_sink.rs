//! The `log` sink: each notification as one structured tracing line (target `tidings::notify`),
//! for edge boxes whose log collector is the delivery channel. It never fails.

use super::Outcome;

/// Writes notifications to the diagnostic log.
#[derive(Debug, Clone)]
pub(crate) struct LogSink {
    name: String,
}

impl LogSink {
    /// A log sink called `name`.
    pub(crate) fn new(name: &str) -> LogSink {
        LogSink {
            name: name.to_owned(),
        }
    }

    /// The sink's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Writes one line at level info with the notification's fields (and the whole record as
    /// `notification`, so nothing is lost if the record has more).
    pub(crate) fn deliver(&self, key: &[u8], body: &[u8]) -> Outcome {
        let fields: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let text = |name: &str| fields.get(name).and_then(|v| v.as_str()).unwrap_or("");
        tracing::info!(
            target: "tidings::notify",
            sink = %self.name,
            recipient_id = %String::from_utf8_lossy(key),
            sender_id = %text("senderId"),
            conversation_id = %text("conversationId"),
            message_id = %text("messageId"),
            seq = fields.get("seq").and_then(serde_json::Value::as_u64).unwrap_or(0),
            notification = %String::from_utf8_lossy(body),
            "notification"
        );
        Outcome::Delivered { attempts: 1 }
    }
}
