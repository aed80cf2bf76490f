//! Rate-limited warnings: at most one log line per condition per interval, reporting how many
//! occurrences were suppressed since, so a flapping origin or a flood of bad events cannot
//! flood the logs (the metrics still count every occurrence).
//!
//! This module owns the limiter only; callers decide what a condition is.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The interval used for the relay's warnings.
pub const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// One condition's limiter.
#[derive(Debug)]
pub struct WarnLimit {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimit {
    /// A limiter allowing one warning per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(State::default()),
        }
    }

    /// Call on each occurrence: `Some(n)` when a warning should be logged now (`n` occurrences
    /// were suppressed since the previous one), `None` when it should be suppressed.
    pub fn check(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if state.last.is_some_and(|last| now - last < self.interval) {
            state.suppressed += 1;
            return None;
        }
        state.last = Some(now);
        Some(std::mem::take(&mut state.suppressed))
    }
}

impl Default for WarnLimit {
    fn default() -> Self {
        Self::new(WARN_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_warning_per_interval_with_the_suppressed_count() {
        let limit = WarnLimit::new(Duration::from_secs(10));
        assert_eq!(limit.check(), Some(0));
        assert_eq!(limit.check(), None);
        assert_eq!(limit.check(), None);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(limit.check(), Some(2));
    }
}
