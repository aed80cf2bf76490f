//! Reconnect delays for upstream subscriptions: exponential backoff with full jitter, whose
//! window starts at the origin's `retry:` value (WHATWG HTML §9.2.6 "reconnection time") when
//! that is larger than the configured minimum.
//!
//! This module owns the delay arithmetic only; it never sleeps.

use std::time::Duration;

use rand::Rng;

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

    /// The delay before the next attempt: uniform in `[min, window]` where
    /// `window = min(max, base · 2^attempt)` and `base = max(min, retry)` ("full jitter", AWS
    /// Architecture Blog, 2015), so many topics reconnecting at once spread out. Each call
    /// widens the window for the next one.
    pub fn next_delay(&mut self, retry: Option<Duration>) -> Duration {
        let base = retry.map_or(self.min, |r| r.max(self.min)).min(self.max);
        let factor = 1u32 << self.attempt.min(16);
        let window = base.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        if window <= self.min {
            return self.min;
        }
        rand::rng().random_range(self.min..=window)
    }

    /// The ceiling of every delay.
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
    fn origin_retry_widens_the_window() {
        // Without `retry:` the first window is [min, min]; the origin's 3 s widens it to
        // [min, 3 s], and the next one to [min, 6 s].
        let fresh = || Backoff::try_new(MS * 10, MS * 10_000).unwrap();
        assert_eq!(fresh().next_delay(None), MS * 10);
        let firsts: Vec<_> = (0..100)
            .map(|_| fresh().next_delay(Some(MS * 3000)))
            .collect();
        assert!(
            firsts.iter().all(|d| *d >= MS * 10 && *d <= MS * 3000),
            "{firsts:?}"
        );
        assert!(
            firsts.iter().any(|d| *d > MS * 1000),
            "the retry value widens the first window: {firsts:?}"
        );
        let mut b = fresh();
        b.next_delay(Some(MS * 3000));
        let seconds: Vec<_> = (0..100)
            .map(|_| {
                let mut b = b.clone();
                b.next_delay(Some(MS * 3000))
            })
            .collect();
        assert!(seconds.iter().all(|d| *d <= MS * 6000), "{seconds:?}");
        assert!(seconds.iter().any(|d| *d > MS * 3000), "{seconds:?}");
    }
}
