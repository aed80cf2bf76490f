//! The file descriptors the relay's long-lived holders take, counted against the process's
//! limit (`RLIMIT_NOFILE`) minus a reserve: client connections always count in (they have their
//! own cap, `limits.max_connections`), a new topic's upstream connection only while the count
//! stays below the limit less the reserve. So when descriptors run short, new topics are what
//! is refused, while the reserve keeps `accept(2)` working for clients of the topics already
//! open (past the limit an accept fails with EMFILE and such a client gets no answer at all).
//!
//! It only counts; it never opens, closes or refuses anything itself (its owners do).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Descriptors kept out of the topics' reach for what is neither a client connection nor a
/// topic's upstream (listeners, the admin listener, catch-ups, passthrough requests and
/// tunnels, peer links, TLS and config files), count; at most a tenth of the limit
/// ([`Descriptors::new`]), so a small limit still leaves room for topics.
pub const RESERVE: usize = 1024;

/// The count of descriptors held, shared by the server (connections) and the hub (topics).
#[derive(Debug)]
pub struct Descriptors {
    /// Held descriptors above which no new topic opens: the limit less the reserve.
    topic_ceiling: usize,
    held: AtomicUsize,
}

/// One descriptor counted in [`Descriptors`] while this lives.
#[derive(Debug)]
pub struct Held(Arc<Descriptors>);

impl Descriptors {
    /// Counts against `limit` descriptors (the soft `RLIMIT_NOFILE` in force), keeping
    /// [`RESERVE`] of them, or a tenth of `limit` if that is less, away from topics.
    pub fn new(limit: usize) -> Arc<Self> {
        let reserve = RESERVE.min(limit / 10);
        Arc::new(Self {
            topic_ceiling: limit.saturating_sub(reserve),
            held: AtomicUsize::new(0),
        })
    }

    /// Counts without a limit (the limit could not be read, or a test does not care).
    pub fn unlimited() -> Arc<Self> {
        Arc::new(Self {
            topic_ceiling: usize::MAX,
            held: AtomicUsize::new(0),
        })
    }

    /// Counts one descriptor whatever the count: a client connection, already accepted.
    pub fn hold(self: &Arc<Self>) -> Held {
        self.held.fetch_add(1, Ordering::Relaxed);
        Held(self.clone())
    }

    /// Counts one descriptor for a new topic's upstream, if the count stays within the limit
    /// less the reserve; `None` otherwise (the topic is not to open).
    pub fn try_hold(self: &Arc<Self>) -> Option<Held> {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held < self.topic_ceiling).then_some(held + 1)
            })
            .ok()
            .map(|_| Held(self.clone()))
    }

    /// Descriptors counted now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_stop_at_the_reserve_while_connections_still_count_in() {
        let descriptors = Descriptors::new(100);
        let topics: Vec<_> = std::iter::from_fn(|| descriptors.try_hold()).collect();
        assert_eq!(topics.len(), 90, "a tenth of a small limit is kept back");
        let connection = descriptors.hold();
        assert_eq!(
            descriptors.held(),
            91,
            "a connection counts past the ceiling"
        );
        drop(topics);
        assert_eq!(descriptors.held(), 1);
        drop(connection);
        assert!(
            descriptors.try_hold().is_some(),
            "released descriptors are free again"
        );
    }

    #[test]
    fn a_large_limit_keeps_the_whole_reserve() {
        let descriptors = Descriptors::new(20_000);
        let topics: Vec<_> = std::iter::from_fn(|| descriptors.try_hold()).collect();
        assert_eq!(topics.len(), 20_000 - RESERVE);
    }
}
