//! Reconnect delays for upstream subscriptions: exponential backoff with full jitter, never
//! shorter than the origin's `retry:` value (WHATWG HTML §9.2.6: the `retry` field sets the
//! reconnection time, the least a client waits), up to [`MAX_RETRY_FLOOR`].
//!
//! This module owns the delay arithmetic only; it never sleeps.

use std::time::Duration;

use rand::Rng;

use super::attempt::MAX_RETRY_AFTER;

/// The longest origin `retry:` a delay waits for, the bound of an honoured `Retry-After`
/// (10 minutes): an origin's typo cannot stall a topic for days; its subscribers ride the wait
/// out on heartbeats.
pub const MAX_RETRY_FLOOR: Duration = MAX_RETRY_AFTER;

/// Bounds a [`Backoff`] cannot have: `min` must be above zero and at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("need 0 < min ({min:?}) <= max ({max:?})")]
pub struct BackoffError {
    /// The smallest delay asked for.
    pub min: Duration,
    /// The largest delay asked for.
    pub max: Duration,
}

/// Backoff state of one upstream subscription.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Creates a backoff between `min` and `max`.
    ///
    /// # Errors
    /// [`BackoffError`] when `min` is zero or greater than `max`.
    pub fn try_new(min: Duration, max: Duration) -> Result<Self, BackoffError> {
        if min.is_zero() || min > max {
            return Err(BackoffError { min, max });
        }
        Ok(Self {
            min,
            max,
            attempt: 0,
        })
    }

    /// The delay before the next attempt: the floor plus a jitter uniform in
    /// `[0, window - min]`, where `floor = max(min, retry)` (the origin's `retry:`, at most
    /// [`MAX_RETRY_FLOOR`]: an origin is never asked again sooner than it said),
    /// `window = min(max, min(floor, max) · 2^attempt)`. Without a `retry:` (or with
    /// `retry: 0`) that is full jitter in `[min, window]` ("full jitter", AWS Architecture Blog,
    /// 2015); with one, the same spread above the floor, so many topics of one origin that
    /// reconnect at once spread out and none comes early. Each call widens the window for the
    /// next one.
    pub fn next_delay(&mut self, retry: Option<Duration>) -> Duration {
        let floor = retry.map_or(self.min, |r| r.min(MAX_RETRY_FLOOR).max(self.min));
        let factor = 1u32 << self.attempt.min(16);
        let window = floor.min(self.max).saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let spread = window.saturating_sub(self.min);
        if spread.is_zero() {
            return floor;
        }
        floor + rand::rng().random_range(Duration::ZERO..=spread)
    }

    /// The ceiling of the window: of every delay without an origin `retry:`; with one, the
    /// jitter above the floor is at most `max - min`.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Forgets past failures (after a stream that stayed up for [`Self::max`]).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn rejects_inverted_or_zero_bounds() {
        assert!(Backoff::try_new(Duration::ZERO, MS).is_err());
        assert!(Backoff::try_new(MS * 10, MS).is_err());
    }

    #[test]
    fn delays_stay_within_bounds_and_window_grows() {
        let mut b = Backoff::try_new(MS * 100, MS * 1000).unwrap();
        let mut widest = Duration::ZERO;
        for _ in 0..200 {
            let d = b.next_delay(None);
            assert!(d >= MS * 100 && d <= MS * 1000, "{d:?}");
            widest = widest.max(d);
        }
        assert!(widest > MS * 800, "window reaches the max: {widest:?}");
        b.reset();
        assert_eq!(b.next_delay(None), MS * 100);
    }

    #[test]
    fn origin_retry_is_a_floor_with_the_jitter_above_it() {
        // min 10 ms, max 10 s, the origin's `retry: 3000`: never sooner than 3 s; the first
        // window spreads 3 s above the floor ([3 s, 5.99 s]), later ones up to `max - min`.
        let fresh = || Backoff::try_new(MS * 10, MS * 10_000).unwrap();
        let firsts: Vec<_> = (0..200)
            .map(|_| fresh().next_delay(Some(MS * 3000)))
            .collect();
        assert!(
            firsts.iter().all(|d| *d >= MS * 3000 && *d <= MS * 5990),
            "{firsts:?}"
        );
        assert!(firsts.iter().any(|d| *d > MS * 4000), "{firsts:?}");
        let mut b = fresh();
        let draws: Vec<_> = (0..1000).map(|_| b.next_delay(Some(MS * 3000))).collect();
        assert!(
            draws.iter().all(|d| *d >= MS * 3000 && *d <= MS * 12_990),
            "{draws:?}"
        );
        assert!(draws.iter().any(|d| *d > MS * 10_000), "the window widens");
    }

    #[test]
    fn an_origin_retry_over_the_max_is_still_the_floor_up_to_ten_minutes() {
        let mut b = Backoff::try_new(MS * 100, MS * 2000).unwrap();
        for _ in 0..1000 {
            let d = b.next_delay(Some(MS * 60_000));
            assert!(d >= MS * 60_000 && d <= MS * 61_900, "{d:?}");
        }
        let mut b = Backoff::try_new(MS * 100, MS * 2000).unwrap();
        for retry in [Duration::from_secs(86_400), Duration::from_millis(u64::MAX)] {
            for _ in 0..100 {
                let d = b.next_delay(Some(retry));
                assert!(
                    d >= MAX_RETRY_FLOOR && d <= MAX_RETRY_FLOOR + MS * 1900,
                    "{d:?}"
                );
            }
        }
        assert_eq!(MAX_RETRY_FLOOR, Duration::from_secs(600));
    }

    #[test]
    fn retry_zero_still_waits_at_least_the_minimum() {
        let fresh = || Backoff::try_new(MS * 100, MS * 2000).unwrap();
        assert_eq!(fresh().next_delay(Some(Duration::ZERO)), MS * 100);
        let mut b = fresh();
        for _ in 0..1000 {
            let d = b.next_delay(Some(Duration::ZERO));
            assert!(d >= MS * 100 && d <= MS * 2000, "{d:?}");
        }
    }
}
