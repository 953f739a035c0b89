//! The `[kafka]` section: the Kafka wire-protocol listener (`kafka.listen`), the address it
//! advertises, topic auto-creation, what a connection without SASL may do, and the listener's
//! limits, as the file writes them and as [`crate::kafka`] uses them.
//!
//! This file owns the section's defaults, its file keys and its checks; precedence and the
//! other sections are in `config.rs`. It does not bind the listener (`main` does).

use std::net::SocketAddr;

use serde::Deserialize;

use super::{bad_value, parse_address, set, ConfigError};

/// Largest `kafka.maxFrameBytes`: a request larger than this is refused by closing the
/// connection, so one client cannot make the server buffer without bound.
const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;
/// Default `kafka.maxFrameBytes`: eight times what the clients send by default (librdkafka's
/// and the Java client's request limit, `message.max.bytes` / `max.request.size`, is ~1 MB;
/// kafkajs has none, and 8 MiB leaves it room for a send of a few thousand records).
const DEFAULT_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// Default `kafka.maxInFlightBytes`: request bytes all connections may hold at once (Kafka's
/// `queued.max.request.bytes`), sixteen default-size frames.
const DEFAULT_IN_FLIGHT_BYTES: usize = 128 * 1024 * 1024;
/// Largest `kafka.maxInFlightBytes`: the budget is a semaphore of `u32` permits per frame, and
/// 4 GiB of request buffers is more than this server is meant to hold.
const MAX_IN_FLIGHT_BYTES: usize = 4 * 1024 * 1024 * 1024 - 1;

/// The `[kafka]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// Where the Kafka listener binds; `None` (the default) turns it off (`kafka.listen`,
    /// `--kafka-listen`, `TIDINGS_KAFKA_LISTEN`).
    pub listen: Option<SocketAddr>,
    /// `HOST:PORT` given to clients as broker 0 instead of the bound address
    /// (`kafka.advertisedListener`).
    pub advertised_listener: Option<String>,
    /// Whether Metadata creates a topic a client names that does not exist
    /// (`kafka.autoCreateTopics`, default true).
    pub auto_create_topics: bool,
    /// Scopes of a connection that did not authenticate with SASL (`kafka.anonymousScopes`).
    pub anonymous_scopes: Vec<String>,
    /// Whether a listener on a non-loopback address may grant anonymous scopes
    /// (`kafka.allowAnonymous`, default false).
    pub allow_anonymous: bool,
    /// Most Kafka connections at once; more are closed at accept (`kafka.maxConnections`).
    pub max_connections: usize,
    /// Largest request frame; a larger one closes the connection (`kafka.maxFrameBytes`).
    pub max_frame_bytes: usize,
    /// Request bytes all Kafka connections together may hold while they read and handle them;
    /// a connection whose next frame does not fit waits, unread (`kafka.maxInFlightBytes`).
    pub max_in_flight_bytes: usize,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            listen: None,
            advertised_listener: None,
            auto_create_topics: true,
            anonymous_scopes: vec!["events:publish".into(), "events:consume".into()],
            allow_anonymous: false,
            max_connections: 1024,
            max_frame_bytes: DEFAULT_FRAME_BYTES,
            max_in_flight_bytes: DEFAULT_IN_FLIGHT_BYTES,
        }
    }
}

impl KafkaSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(advertised) = &self.advertised_listener {
            let port = advertised
                .rsplit_once(':')
                .and_then(|(host, port)| (!host.is_empty()).then_some(port))
                .and_then(|port| port.parse::<u16>().ok());
            if port.is_none() {
                return Err(bad_value(
                    "kafka.advertisedListener",
                    advertised,
                    "HOST:PORT such as 127.0.0.1:9092".into(),
                ));
            }
        }
        if self.max_connections == 0 {
            return Err(bad_value(
                "kafka.maxConnections",
                0,
                "a positive number".into(),
            ));
        }
        if self.max_frame_bytes < 1024 || self.max_frame_bytes > MAX_FRAME_BYTES {
            return Err(bad_value(
                "kafka.maxFrameBytes",
                self.max_frame_bytes,
                format!("between 1024 and {MAX_FRAME_BYTES}"),
            ));
        }
        if self.max_in_flight_bytes < self.max_frame_bytes
            || self.max_in_flight_bytes > MAX_IN_FLIGHT_BYTES
        {
            return Err(bad_value(
                "kafka.maxInFlightBytes",
                self.max_in_flight_bytes,
                format!(
                    "between kafka.maxFrameBytes ({}) and {MAX_IN_FLIGHT_BYTES}: one largest \
                     frame must fit",
                    self.max_frame_bytes
                ),
            ));
        }
        self.check_anonymous_exposure()
    }

    /// Anonymous scopes on an address other machines reach would let anyone in: refused unless
    /// `kafka.allowAnonymous` says it is meant.
    fn check_anonymous_exposure(&self) -> Result<(), ConfigError> {
        let Some(listen) = self.listen else {
            return Ok(());
        };
        if listen.ip().is_loopback() || self.anonymous_scopes.is_empty() || self.allow_anonymous {
            return Ok(());
        }
        Err(bad_value(
            "kafka.anonymousScopes",
            self.anonymous_scopes.join(" "),
            format!(
                "empty, or kafka.allowAnonymous = true: the Kafka listener {listen} is not on \
                 a loopback address, so anonymous scopes would let anyone on the network in"
            ),
        ))
    }
}

/// The `[kafka]` section as the file writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileKafka {
    listen: Option<String>,
    advertised_listener: Option<String>,
    auto_create_topics: Option<bool>,
    anonymous_scopes: Option<Vec<String>>,
    allow_anonymous: Option<bool>,
    max_connections: Option<usize>,
    max_frame_bytes: Option<usize>,
    max_in_flight_bytes: Option<usize>,
}

impl FileKafka {
    pub(super) fn apply_to(
        self,
        kafka: &mut KafkaSettings,
        origin: impl Fn(&str) -> String,
    ) -> Result<(), ConfigError> {
        if let Some(listen) = self.listen {
            kafka.listen = Some(parse_address(&listen, origin("kafka.listen"))?);
        }
        if let Some(advertised) = self.advertised_listener {
            kafka.advertised_listener = Some(advertised);
        }
        set(&mut kafka.auto_create_topics, self.auto_create_topics);
        set(&mut kafka.anonymous_scopes, self.anonymous_scopes);
        set(&mut kafka.allow_anonymous, self.allow_anonymous);
        set(&mut kafka.max_connections, self.max_connections);
        set(&mut kafka.max_frame_bytes, self.max_frame_bytes);
        set(&mut kafka.max_in_flight_bytes, self.max_in_flight_bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_scopes_on_a_public_address_need_allow_anonymous() {
        let mut kafka = KafkaSettings {
            listen: Some("0.0.0.0:9092".parse().expect("an address")),
            ..KafkaSettings::default()
        };
        let refused = kafka.validate().expect_err("anonymous on 0.0.0.0");
        assert!(
            refused.to_string().contains("kafka.allowAnonymous"),
            "{refused}"
        );
        kafka.allow_anonymous = true;
        kafka.validate().expect("allowed on purpose");
        kafka.allow_anonymous = false;
        kafka.anonymous_scopes.clear();
        kafka.validate().expect("no anonymous scopes");
    }

    #[test]
    fn loopback_listeners_keep_the_default_anonymous_scopes() {
        let kafka = KafkaSettings {
            listen: Some("127.0.0.1:9092".parse().expect("an address")),
            ..KafkaSettings::default()
        };
        kafka.validate().expect("loopback is fine");
    }

    #[test]
    fn the_in_flight_budget_holds_at_least_one_largest_frame() {
        let mut kafka = KafkaSettings {
            max_in_flight_bytes: 1024 * 1024,
            ..KafkaSettings::default()
        };
        let refused = kafka.validate().expect_err("budget below one frame");
        assert!(
            refused.to_string().contains("kafka.maxInFlightBytes"),
            "{refused}"
        );
        kafka.max_frame_bytes = 1024 * 1024;
        kafka.validate().expect("one frame fits");
    }

    #[test]
    fn an_advertised_listener_needs_a_port() {
        let kafka = KafkaSettings {
            advertised_listener: Some("broker.example".into()),
            ..KafkaSettings::default()
        };
        assert!(kafka.validate().is_err());
    }
}
