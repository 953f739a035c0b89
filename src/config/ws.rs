//! The `[ws]` section: limits and timings of the WebSocket sessions, as the file writes them
//! (sizes in bytes, durations in milliseconds) and as the hub and the `/ws` route use them.
//!
//! This file owns the section's defaults, its file keys and its range checks; precedence and
//! the other sections are in `config.rs`.

use std::time::Duration;

use serde::Deserialize;

use super::{bad_value, set, ConfigError};
use crate::hub::HubConfig;

/// Longest `ws.writeDelayMs`: beyond a second a conversation stops feeling live, and a writer
/// waiting that long sends no pings meanwhile.
const MAX_WRITE_DELAY: Duration = Duration::from_secs(1);

/// The `[ws]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsSettings {
    /// Capacity of each session's outbound queue, in frames (`ws.queueFrames`).
    pub queue_frames: usize,
    /// Most sessions at once; 0 = what the open-file limit allows (`ws.maxSessions`).
    pub max_sessions: usize,
    /// Most sessions of one user at once (`ws.maxSessionsPerUser`).
    pub max_sessions_per_user: usize,
    /// Largest client frame handled; larger ones get an `error` frame 413 (`ws.maxFrameBytes`).
    pub max_frame_bytes: usize,
    /// Hard cap on a client frame: larger ones close the session with 1009, unread
    /// (`ws.hardFrameBytes`).
    pub hard_frame_bytes: usize,
    /// Client frames per second per session, burst twice that; more get an `error` frame 429
    /// (`ws.frameRate`; 0 turns it off).
    pub frame_rate: u32,
    /// Interval of the server's pings; no answer for two intervals closes the session
    /// (`ws.pingIntervalMs`).
    pub ping_interval: Duration,
    /// How long a user whose last session closed still shows online (`ws.presenceGraceMs`).
    pub presence_grace: Duration,
    /// How long a typing indicator lasts without a refresh (`ws.typingTtlMs`).
    pub typing_ttl: Duration,
    /// Least time between two forwarded `typing:true` of one user in one conversation
    /// (`ws.typingIntervalMs`).
    pub typing_interval: Duration,
    /// Read buffer of each connection, in bytes (`ws.readBufferBytes`).
    pub read_buffer_bytes: usize,
    /// Bytes a connection gathers before it writes to the socket (`ws.writeBufferBytes`).
    pub write_buffer_bytes: usize,
    /// Least time between two writes of queued frames to one session; frames arriving sooner
    /// wait and share the next write (`ws.writeDelayMs`; 0: write at once).
    pub write_delay: Duration,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            queue_frames: 1024,
            max_sessions: 0,
            max_sessions_per_user: 32,
            max_frame_bytes: 64 * 1024,
            hard_frame_bytes: 1024 * 1024,
            frame_rate: 50,
            ping_interval: Duration::from_secs(20),
            presence_grace: Duration::from_secs(5),
            typing_ttl: Duration::from_secs(5),
            typing_interval: Duration::from_secs(1),
            read_buffer_bytes: 1024,
            write_buffer_bytes: 1024,
            write_delay: Duration::ZERO,
        }
    }
}

impl WsSettings {
    /// The hub's configuration, with `max_sessions` resolved (the configured value, or what
    /// the open-file limit allows when it is 0).
    pub(crate) fn hub_config(&self, max_sessions: usize) -> HubConfig {
        HubConfig {
            queue_frames: self.queue_frames,
            max_sessions,
            max_sessions_per_user: self.max_sessions_per_user,
            presence_grace: self.presence_grace,
            typing_ttl: self.typing_ttl,
            typing_interval: self.typing_interval,
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("ws.queueFrames", self.queue_frames),
            ("ws.maxSessionsPerUser", self.max_sessions_per_user),
            ("ws.maxFrameBytes", self.max_frame_bytes),
            ("ws.readBufferBytes", self.read_buffer_bytes),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(bad_value(key, value, "a positive number".into()));
            }
        }
        if self.hard_frame_bytes <= self.max_frame_bytes {
            return Err(bad_value(
                "ws.hardFrameBytes",
                self.hard_frame_bytes,
                format!("more than ws.maxFrameBytes ({})", self.max_frame_bytes),
            ));
        }
        if self.write_delay > MAX_WRITE_DELAY {
            return Err(bad_value(
                "ws.writeDelayMs",
                self.write_delay.as_millis(),
                format!("at most {} milliseconds", MAX_WRITE_DELAY.as_millis()),
            ));
        }
        let timings = [
            ("ws.pingIntervalMs", self.ping_interval),
            ("ws.typingTtlMs", self.typing_ttl),
        ];
        for (key, value) in timings {
            if value.is_zero() {
                return Err(bad_value(
                    key,
                    0,
                    "a positive number of milliseconds".into(),
                ));
            }
        }
        Ok(())
    }
}

/// `[ws]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileWs {
    queue_frames: Option<usize>,
    max_sessions: Option<usize>,
    max_sessions_per_user: Option<usize>,
    max_frame_bytes: Option<usize>,
    hard_frame_bytes: Option<usize>,
    frame_rate: Option<u32>,
    ping_interval_ms: Option<u64>,
    presence_grace_ms: Option<u64>,
    typing_ttl_ms: Option<u64>,
    typing_interval_ms: Option<u64>,
    read_buffer_bytes: Option<usize>,
    write_buffer_bytes: Option<usize>,
    write_delay_ms: Option<u64>,
}

impl FileWs {
    pub(super) fn apply_to(self, ws: &mut WsSettings) {
        let millis = |ms: Option<u64>| ms.map(Duration::from_millis);
        set(&mut ws.queue_frames, self.queue_frames);
        set(&mut ws.max_sessions, self.max_sessions);
        set(&mut ws.max_sessions_per_user, self.max_sessions_per_user);
        set(&mut ws.max_frame_bytes, self.max_frame_bytes);
        set(&mut ws.hard_frame_bytes, self.hard_frame_bytes);
        set(&mut ws.frame_rate, self.frame_rate);
        set(&mut ws.ping_interval, millis(self.ping_interval_ms));
        set(&mut ws.presence_grace, millis(self.presence_grace_ms));
        set(&mut ws.typing_ttl, millis(self.typing_ttl_ms));
        set(&mut ws.typing_interval, millis(self.typing_interval_ms));
        set(&mut ws.read_buffer_bytes, self.read_buffer_bytes);
        set(&mut ws.write_buffer_bytes, self.write_buffer_bytes);
        set(&mut ws.write_delay, millis(self.write_delay_ms));
    }
}
