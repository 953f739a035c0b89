//! The `webhook` sink: POSTs each notification's JSON to a URL, signed, with retries.
//!
//! Each request carries `X-Tidings-Timestamp: T` (unix seconds when the attempt was made) and
//! `X-Tidings-Signature: sha256=HEX`, where HEX is the lowercase hex HMAC-SHA256, keyed with the
//! sink's secret, of the bytes `T` + `.` + body ([`signature`]). A receiver recomputes it and
//! refuses a timestamp too far from its clock, so a captured request cannot be replayed later.
//!
//! Retries ([`classify`]): 2xx is delivered; 408, 429, 5xx, timeouts and connection errors are
//! retried after [`Backoff::delay`] (exponential with full jitter) up to `maxAttempts` attempts
//! in all; any other status (redirects are not followed) is permanent at once. Either way a
//! failure ends in [`Outcome::Dead`]. Shutdown cuts a backoff wait short ([`Outcome::Interrupted`])
//! but lets an attempt in flight finish (it is bounded by the timeout).
//!
//! Plain `http://` only: the build has no TLS stack (see docs/configuration.md).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::{Outcome, SinkError};

/// Header with the signature, `sha256=HEX`.
pub(crate) const SIGNATURE_HEADER: &str = "x-tidings-signature";
/// Header with the unix time (seconds) that the signature covers.
pub(crate) const TIMESTAMP_HEADER: &str = "x-tidings-timestamp";

/// Settings of a webhook sink.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct WebhookConfig {
    /// Where to POST (`http://` only).
    pub url: reqwest::Url,
    /// The HMAC key.
    pub secret: String,
    /// Attempts in all before a notification goes to the dead-letter topic (at least 1).
    pub max_attempts: u32,
    /// How long one attempt may take, connection included.
    pub timeout: Duration,
    /// Waits between attempts.
    pub backoff: Backoff,
    /// Most requests in flight at once.
    pub concurrency: usize,
}

impl std::fmt::Debug for WebhookConfig {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url.as_str())
            .field("secret", &"<redacted>")
            .field("max_attempts", &self.max_attempts)
            .field("timeout", &self.timeout)
            .field("backoff", &self.backoff)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// Exponential backoff with full jitter: before retry `n` (1 for the first retry) the sink
/// waits a uniformly random time in `0..=min(max, base × 2^(n-1))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// The ceiling of the first wait.
    pub base: Duration,
    /// The largest ceiling.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The longest wait before retry `retry` (1-based): `min(max, base × 2^(retry-1))`.
    pub(crate) fn ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(32);
        self.base
            .checked_mul(1u32 << doublings.min(31))
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The wait before retry `retry`: `ceiling(retry)` scaled by `fraction` in `0.0..=1.0`
    /// (the jitter; [`Backoff::delay`] draws it at random).
    pub(crate) fn delay_with(&self, retry: u32, fraction: f64) -> Duration {
        self.ceiling(retry).mul_f64(fraction.clamp(0.0, 1.0))
    }

    /// A random wait before retry `retry` (full jitter).
    pub(crate) fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, random_fraction())
    }
}

/// A uniformly random number in `0.0..=1.0`; 1.0 (no jitter) if the OS has no randomness.
fn random_fraction() -> f64 {
    getrandom::u64().map_or(1.0, |r| (r >> 11) as f64 / (1u64 << 53) as f64)
}

/// `sha256=` + lowercase hex of HMAC-SHA256(`secret`, `timestamp` + "." + `body`).
pub(crate) fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + digest.len() * 2);
    hex.push_str("sha256=");
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// How one failed attempt is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Worth another attempt: 408, 429, 5xx, a timeout or a connection error.
    Retryable,
    /// Another attempt would get the same answer: any other status.
    Permanent,
}

/// Whether an answer with `status` (not 2xx) is worth retrying.
pub(crate) fn classify(status: u16) -> Failure {
    match status {
        408 | 429 | 500..=599 => Failure::Retryable,
        _ => Failure::Permanent,
    }
}

/// A webhook sink with its HTTP client (keep-alive connections, per-attempt timeout).
#[derive(Debug)]
pub(crate) struct WebhookSink {
    name: String,
    config: WebhookConfig,
    client: reqwest::Client,
}

impl WebhookSink {
    /// Builds the sink and its client.
    pub(crate) fn new(name: &str, config: &WebhookConfig) -> Result<WebhookSink, SinkError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tidings/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| SinkError::Client {
                sink: name.to_owned(),
                source,
            })?;
        Ok(WebhookSink {
            name: name.to_owned(),
            config: config.clone(),
            client,
        })
    }

    /// The sink's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Most requests in flight at once.
    pub(crate) fn concurrency(&self) -> usize {
        self.config.concurrency.max(1)
    }

    /// POSTs `body` until it is accepted, refused for good, attempts run out, or shutdown.
    pub(crate) async fn deliver(&self, body: &[u8], shutdown: &CancellationToken) -> Outcome {
        let max_attempts = self.config.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let error = match self.attempt(body).await {
                Ok(()) => return Outcome::Delivered { attempts: attempt },
                Err((Failure::Permanent, error)) => {
                    return Outcome::Dead {
                        error,
                        attempts: attempt,
                    }
                }
                Err((Failure::Retryable, error)) => error,
            };
            tracing::warn!(sink = %self.name, attempt, max_attempts, %error, "webhook attempt failed");
            if attempt >= max_attempts {
                return Outcome::Dead {
                    error,
                    attempts: attempt,
                };
            }
            let wait = self.config.backoff.delay(attempt);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return Outcome::Interrupted,
            }
            attempt += 1;
        }
    }

    /// One signed POST; the error says what went wrong and whether to retry.
    async fn attempt(&self, body: &[u8]) -> Result<(), (Failure, String)> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let response = self
            .client
            .post(self.config.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                SIGNATURE_HEADER,
                signature(self.config.secret.as_bytes(), timestamp, body),
            )
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| (Failure::Retryable, transport_error(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err((classify(status.as_u16()), format!("HTTP {status}")))
    }
}

/// A transport error as one line naming its kind (timeout, connect) and its innermost cause.
fn transport_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    format!("{kind}: {cause}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_ceilings_double_from_base_up_to_max() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let ceilings: Vec<u128> = (1..=7).map(|n| backoff.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay_with(3, 0.0), Duration::ZERO);
        assert_eq!(backoff.delay_with(3, 1.0), Duration::from_millis(800));
        assert_eq!(backoff.delay_with(3, 0.5), Duration::from_millis(400));
        assert_eq!(backoff.delay_with(3, 7.0), Duration::from_millis(800));
        for retry in 1..20 {
            assert!(backoff.delay(retry) <= backoff.ceiling(retry));
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?"), with the
        // message split as timestamp "." body would not give it, so check the framing too.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let rfc: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            rfc,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let signed = signature(b"s3cret", 1_700_000_000, br#"{"a":1}"#);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(br#"1700000000.{"a":1}"#);
        mac.verify_slice(&hex_decode(signed.strip_prefix("sha256=").unwrap()))
            .expect("signature covers timestamp.body");
        assert_ne!(signed, signature(b"s3cret", 1_700_000_001, br#"{"a":1}"#));
    }

    #[test]
    fn only_timeouts_throttling_and_server_errors_are_retried() {
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify(status), Failure::Retryable, "{status}");
        }
        for status in [301, 400, 401, 403, 404, 410, 413, 422] {
            assert_eq!(classify(status), Failure::Permanent, "{status}");
        }
    }

    fn hex_decode(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }
}
