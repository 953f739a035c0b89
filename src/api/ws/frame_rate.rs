//! One session's frame rate (`ws.frameRate`): a token bucket refilled at that many client
//! frames per second up to a burst of twice that; 0 turns it off. A frame over it is refused
//! as 429 with the whole seconds until a frame is allowed again. The bucket lives with the
//! session's reader and is forgotten with it.
//!
//! This module only counts: the reader decides what a frame is and answers the refusal. Time
//! is tokio's clock, so tests move it with a paused clock.

use tokio::time::Instant;

use crate::api::problem::ApiError;
use crate::api::rate_limit::TokenBucket;

/// The frame budget of one session.
#[derive(Debug)]
pub(super) struct FrameRate {
    /// Frames per second; 0 = unlimited.
    rate: u32,
    bucket: TokenBucket,
}

impl FrameRate {
    /// A full budget of `rate` frames per second (burst `2 × rate`); 0 = unlimited.
    pub(super) fn new(rate: u32) -> FrameRate {
        FrameRate {
            rate,
            bucket: TokenBucket::full(burst_of(rate), Instant::now()),
        }
    }

    /// Takes one frame from the budget now, or refuses it with 429 and its `Retry-After`.
    pub(super) fn admit(&mut self) -> Result<(), ApiError> {
        if self.rate == 0 {
            return Ok(());
        }
        let rate = f64::from(self.rate);
        self.bucket
            .take(Instant::now(), rate, burst_of(self.rate))
            .map_err(|retry_after| ApiError::TooManyRequests {
                limit: self.rate,
                retry_after,
            })
    }
}

fn burst_of(rate: u32) -> f64 {
    2.0 * f64::from(rate)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Frames admitted one after the other, at the same moment, until the first refusal.
    fn admitted_in_a_row(frames: &mut FrameRate) -> (usize, ApiError) {
        let mut admitted = 0;
        loop {
            match frames.admit() {
                Ok(()) => admitted += 1,
                Err(refused) => return (admitted, refused),
            }
        }
    }

    // 4 frames per second and steps of 1/32 s: the token counts are exact in binary, so each
    // boundary is where the arithmetic says and not a rounding away from it.
    const STEP: Duration = Duration::from_micros(31_250);

    /// The burst is twice the rate; a refusal is 429 naming the rate and a one-second wait.
    #[tokio::test(start_paused = true)]
    async fn a_burst_of_twice_the_rate_then_429_with_retry_after() {
        let mut frames = FrameRate::new(4);
        let (admitted, refused) = admitted_in_a_row(&mut frames);
        assert_eq!(admitted, 8);
        assert!(
            matches!(
                refused,
                ApiError::TooManyRequests {
                    limit: 4,
                    retry_after: 1
                }
            ),
            "{refused:?}"
        );
        assert_eq!(refused.status().as_u16(), 429);
    }

    /// The window refills at the rate: one frame per quarter of a second at 4/s, the whole
    /// burst (and no more) after two seconds or an hour of quiet.
    #[tokio::test(start_paused = true)]
    async fn the_budget_refills_at_the_rate_up_to_the_burst() {
        let mut frames = FrameRate::new(4);
        admitted_in_a_row(&mut frames);
        tokio::time::advance(4 * STEP).await;
        assert!(frames.admit().is_err(), "half a frame is not one");
        tokio::time::advance(4 * STEP).await;
        assert!(frames.admit().is_ok(), "one frame back after 250 ms");
        assert!(frames.admit().is_err());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(admitted_in_a_row(&mut frames).0, 8, "the whole burst again");
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(admitted_in_a_row(&mut frames).0, 8, "never more than it");
    }

    /// Refused frames take nothing: a client hammering at a full stop recovers as fast as one
    /// that waits.
    #[tokio::test(start_paused = true)]
    async fn refused_frames_do_not_delay_the_recovery() {
        let mut frames = FrameRate::new(4);
        admitted_in_a_row(&mut frames);
        for _ in 0..7 {
            tokio::time::advance(STEP).await;
            assert!(frames.admit().is_err());
        }
        tokio::time::advance(STEP).await;
        assert!(
            frames.admit().is_ok(),
            "250 ms after emptying, as if it had waited"
        );
    }

    /// A rate of 0 admits everything.
    #[tokio::test(start_paused = true)]
    async fn zero_turns_the_frame_rate_off() {
        let mut frames = FrameRate::new(0);
        for _ in 0..10_000 {
            assert!(frames.admit().is_ok());
        }
    }
}
