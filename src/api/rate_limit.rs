//! The per-user write budget: one token bucket per user, refilled at `rate` tokens per second up
//! to a burst of `2 × rate` (`limits.rateLimit`; 0 turns it off). Every kind of write a user
//! makes takes from the same bucket (sends, edits, deletes, read marks, conversations and their
//! participants, topics, consumer-group joins), so no kind of write is a way around it; a write
//! that costs the server more (a send to a large conversation) takes more than one token
//! ([`WriteCost`]).
//!
//! Buckets live in memory only. Full buckets are dropped when the map grows past
//! [`PRUNE_ABOVE`] users, so idle users cost nothing. [`TokenBucket`] is one bucket on its own
//! (a WebSocket session limits its client frames with one). This module does not answer HTTP:
//! [`AppState::charge_write`](super::AppState::charge_write) turns a refusal into 429 with
//! `Retry-After`. Time is tokio's clock, so tests move it with a paused clock.

use parking_lot::Mutex;
use std::collections::HashMap;

use tokio::time::Instant;

/// Users tracked before full (idle) buckets are pruned.
pub(crate) const PRUNE_ABOVE: usize = 10_000;

/// Participants a send reaches for each token it costs: a send to a conversation of up to this
/// many participants costs one token, one more token for every further such many (the
/// notifications and deliveries a send makes grow with its recipients).
pub(crate) const RECIPIENTS_PER_TOKEN: usize = 100;

/// How many tokens of the write budget a write takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriteCost(pub u32);

impl WriteCost {
    /// A write whose cost does not grow with anything: an edit, a delete, a read mark, a
    /// participant change, a topic, a group join.
    pub(crate) const ONE: WriteCost = WriteCost(1);

    /// A send (or a new conversation) reaching `participants` users: one token per
    /// [`RECIPIENTS_PER_TOKEN`] started.
    pub(crate) fn reaching(participants: usize) -> WriteCost {
        let tokens = participants.max(1).div_ceil(RECIPIENTS_PER_TOKEN);
        WriteCost(u32::try_from(tokens).unwrap_or(u32::MAX))
    }
}

/// Token buckets by user id.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: u32,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

/// One token bucket: refilled at `rate` tokens per second up to `burst`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A bucket holding `burst` tokens at `now`.
    pub(crate) fn full(burst: f64, now: Instant) -> TokenBucket {
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
    pub(crate) fn take(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), u64> {
        self.take_n(now, rate, burst, 1.0)
    }

    /// Takes `cost` tokens at `now` (a cost above `burst` counts as `burst`, so it can always be
    /// paid once the bucket is full), or says in how many whole seconds (at least 1) they are
    /// there. A refused take leaves the bucket as it was.
    pub(crate) fn take_n(
        &mut self,
        now: Instant,
        rate: f64,
        burst: f64,
        cost: f64,
    ) -> Result<(), u64> {
        let cost = cost.min(burst);
        self.tokens = self.refilled(now, rate, burst);
        self.updated = now;
        if self.tokens >= cost {
            self.tokens -= cost;
            return Ok(());
        }
        let wait = (cost - self.tokens) / rate;
        Err((wait.ceil() as u64).max(1))
    }
}

impl RateLimiter {
    /// A limiter allowing `rate` writes per second per user (burst `2 × rate`); 0 = unlimited.
    pub(crate) fn new(rate: u32) -> Self {
        RateLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The configured rate (write tokens per second).
    pub(crate) fn rate(&self) -> u32 {
        self.rate
    }

    fn burst(&self) -> f64 {
        2.0 * f64::from(self.rate)
    }

    /// Takes one token for `user`, or says in how many whole seconds (at least 1) one is there.
    #[cfg(test)]
    pub(crate) fn check(&self, user: &str) -> Result<(), u64> {
        self.charge(user, WriteCost::ONE)
    }

    /// Takes `cost` tokens for `user`, or says in how many whole seconds (at least 1) they are
    /// there.
    pub(crate) fn charge(&self, user: &str, cost: WriteCost) -> Result<(), u64> {
        self.charge_at(user, cost, Instant::now())
    }

    /// [`check`](Self::check) at a given moment (tests use it to move time).
    #[cfg(test)]
    pub(crate) fn check_at(&self, user: &str, now: Instant) -> Result<(), u64> {
        self.charge_at(user, WriteCost::ONE, now)
    }

    /// [`charge`](Self::charge) at a given moment.
    pub(crate) fn charge_at(&self, user: &str, cost: WriteCost, now: Instant) -> Result<(), u64> {
        if self.rate == 0 {
            return Ok(());
        }
        let rate = f64::from(self.rate);
        let burst = self.burst();
        let mut buckets = self.buckets.lock();
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| b.refilled(now, rate, burst) < burst);
        }
        buckets
            .entry(user.to_owned())
            .or_insert(TokenBucket::full(burst, now))
            .take_n(now, rate, burst, f64::from(cost.0))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    // The steps below are sums of halves and quarters of a second: exact in binary, so the
    // token counts they give are exact and the boundaries are where the arithmetic says.
    const QUARTER: Duration = Duration::from_millis(250);

    #[tokio::test(start_paused = true)]
    async fn an_emptied_bucket_refills_exactly_after_the_retry_after_it_names() {
        // 4 tokens/s, burst 8: a write costing the whole burst, then the same write again.
        let limiter = RateLimiter::new(4);
        assert_eq!(limiter.charge("ann", WriteCost(8)), Ok(()));
        assert_eq!(
            limiter.charge("ann", WriteCost(8)),
            Err(2),
            "8 tokens at 4/s"
        );
        tokio::time::advance(7 * QUARTER).await;
        assert_eq!(
            limiter.charge("ann", WriteCost(8)),
            Err(1),
            "7 tokens are back, the 8th in a quarter of a second"
        );
        tokio::time::advance(QUARTER).await;
        assert_eq!(limiter.charge("ann", WriteCost(8)), Ok(()));
        assert!(limiter.check("ann").is_err(), "emptied again");
    }

    #[tokio::test(start_paused = true)]
    async fn one_write_per_second_gets_one_token_back_each_second_and_no_more_than_the_burst() {
        let limiter = RateLimiter::new(1);
        assert_eq!(limiter.check("ann"), Ok(()));
        assert_eq!(limiter.check("ann"), Ok(()));
        assert_eq!(limiter.check("ann"), Err(1), "Retry-After: 1");
        tokio::time::advance(2 * QUARTER).await;
        assert_eq!(limiter.check("ann"), Err(1), "half a token is not one");
        tokio::time::advance(2 * QUARTER).await;
        assert_eq!(limiter.check("ann"), Ok(()), "the wait it named was enough");
        assert!(limiter.check("ann").is_err());
        // An hour of silence refills the burst (2), not 3,600 tokens.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(limiter.check("ann"), Ok(()));
        assert_eq!(limiter.check("ann"), Ok(()));
        assert_eq!(limiter.check("ann"), Err(1));
    }

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
    fn a_costly_write_takes_more_tokens_and_a_refusal_takes_none() {
        let limiter = RateLimiter::new(5);
        let start = Instant::now();
        assert_eq!(limiter.charge_at("ann", WriteCost(8), start), Ok(()));
        assert!(limiter.charge_at("ann", WriteCost(3), start).is_err());
        assert_eq!(
            limiter.charge_at("ann", WriteCost(2), start),
            Ok(()),
            "the refused write took nothing"
        );
        assert!(limiter.check_at("ann", start).is_err());
    }

    #[test]
    fn a_cost_above_the_burst_is_paid_with_a_full_bucket() {
        let limiter = RateLimiter::new(1);
        let start = Instant::now();
        assert_eq!(limiter.charge_at("ann", WriteCost(50), start), Ok(()));
        assert!(limiter.charge_at("ann", WriteCost(50), start).is_err());
    }

    #[test]
    fn a_send_costs_one_token_per_hundred_recipients_started() {
        assert_eq!(WriteCost::reaching(0), WriteCost(1));
        assert_eq!(WriteCost::reaching(2), WriteCost(1));
        assert_eq!(WriteCost::reaching(100), WriteCost(1));
        assert_eq!(WriteCost::reaching(101), WriteCost(2));
        assert_eq!(WriteCost::reaching(1000), WriteCost(10));
    }

    #[test]
    fn zero_turns_limiting_off() {
        let limiter = RateLimiter::new(0);
        for _ in 0..1000 {
            assert_eq!(limiter.check("ann"), Ok(()));
        }
    }
}
