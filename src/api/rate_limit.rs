//! The per-user send rate limit: one token bucket per user, refilled at `rate` tokens per
//! second up to a burst of `2 × rate` (`limits.rateLimit`; 0 turns it off).
//!
//! Buckets live in memory only. Full buckets are dropped when the map grows past
//! [`PRUNE_ABOVE`] users, so idle users cost nothing. [`TokenBucket`] is one bucket on its own
//! (a WebSocket session limits its client frames with one). This module does not answer HTTP:
//! the send handler turns a refusal into 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;

use std::time::Instant;

/// Users tracked before full (idle) buckets are pruned.
pub const PRUNE_ABOVE: usize = 10_000;

/// Token buckets by user id.
#[derive(Debug)]
pub struct RateLimiter {
    rate: u32,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

/// One token bucket: refilled at `rate` tokens per second up to `burst`.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A bucket holding `burst` tokens at `now`.
    pub fn full(burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: burst,
            updated: now,
        }
    }

    fn refilled(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst)
    }

    /// Takes one token at `now`, or says in how many whole seconds (at least 1) one is there.
    pub fn take(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), u64> {
        self.tokens = self.refilled(now, rate, burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - self.tokens) / rate;
        Err((wait.ceil() as u64).max(1))
    }
}

impl RateLimiter {
    /// A limiter allowing `rate` sends per second per user (burst `2 × rate`); 0 = unlimited.
    pub fn new(rate: u32) -> Self {
        RateLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The configured rate (sends per second).
    pub fn rate(&self) -> u32 {
        self.rate
    }

    fn burst(&self) -> f64 {
        2.0 * f64::from(self.rate)
    }

    /// Takes one token for `user`, or says in how many whole seconds (at least 1) one is there.
    pub fn check(&self, user: &str) -> Result<(), u64> {
        self.check_at(user, Instant::now())
    }

    /// [`check`](Self::check) at a given moment (tests use it to move time).
    pub fn check_at(&self, user: &str, now: Instant) -> Result<(), u64> {
        if self.rate == 0 {
            return Ok(());
        }
        let rate = f64::from(self.rate);
        let burst = self.burst();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| b.refilled(now, rate, burst) < burst);
        }
        buckets
            .entry(user.to_owned())
            .or_insert(TokenBucket::full(burst, now))
            .take(now, rate, burst)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_user_gets_a_burst_of_twice_the_rate_then_the_rate() {
        let limiter = RateLimiter::new(2);
        let start = Instant::now();
        for _ in 0..4 {
            assert_eq!(limiter.check_at("ann", start), Ok(()));
        }
        assert_eq!(limiter.check_at("ann", start), Err(1));
        assert_eq!(
            limiter.check_at("bob", start),
            Ok(()),
            "buckets are per user"
        );
        let later = start + Duration::from_millis(500);
        assert_eq!(limiter.check_at("ann", later), Ok(()));
        assert!(limiter.check_at("ann", later).is_err());
    }

    #[test]
    fn zero_turns_limiting_off() {
        let limiter = RateLimiter::new(0);
        for _ in 0..1000 {
            assert_eq!(limiter.check("ann"), Ok(()));
        }
    }
}
