//! Who is attached to a topic: its subscriber count (with the hub-wide and per-topic gauges
//! that mirror it), whether it is kept open without subscribers, and the idle grace that
//! starts when the last one leaves. It decides nothing about the topic's life: the topic's
//! supervisor asks [`Presence::idle_for`] and the registry retires the topic.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::lock::lock;

/// A topic's subscriber count and idle state.
pub(super) struct Presence {
    count: AtomicUsize,
    /// When the last subscriber last left, so the idle grace counts from the last leave.
    emptied_at: Mutex<Instant>,
    /// Notified when the last subscriber leaves.
    unused: Notify,
    /// Kept open without subscribers (`topics.always_on`).
    pinned: AtomicBool,
    /// `sse_relay_subscribers` (every topic's).
    all_subscribers: IntGauge,
    /// The per-topic subscriber gauge (by the topic's label).
    topic_subscribers: IntGauge,
}

impl Presence {
    /// No subscriber yet, mirrored in these two gauges.
    pub fn new(all_subscribers: IntGauge, topic_subscribers: IntGauge) -> Self {
        Self {
            count: AtomicUsize::new(0),
            emptied_at: Mutex::new(Instant::now()),
            unused: Notify::new(),
            pinned: AtomicBool::new(false),
            all_subscribers,
            topic_subscribers,
        }
    }

    /// Subscribers attached now, count.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Counts one more subscriber (the registry calls it under its lock, so retirement cannot
    /// slip in).
    pub fn add(&self) {
        self.all_subscribers.inc();
        self.topic_subscribers.inc();
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts one subscriber less; the last one's leave starts the idle grace.
    pub fn remove(&self) {
        self.topic_subscribers.dec();
        self.all_subscribers.dec();
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            *lock(&self.emptied_at) = Instant::now();
            self.unused.notify_one();
        }
    }

    /// Keeps the topic open without subscribers (see [`Presence::idle_for`]).
    pub fn pin(&self) {
        self.pinned.store(true, Ordering::Release);
    }

    /// True for an always-on topic.
    pub fn is_pinned(&self) -> bool {
        self.pinned.load(Ordering::Acquire)
    }

    /// Resolves once no subscriber has been attached for `grace`, counted from the last leave
    /// (a subscriber who comes and goes meanwhile restarts it). Never resolves for an
    /// always-on topic. The caller still checks under the registry lock before retiring.
    pub async fn idle_for(&self, grace: Duration) {
        loop {
            if self.is_pinned() {
                std::future::pending::<()>().await;
            }
            while self.count() > 0 {
                self.unused.notified().await;
            }
            let left = *lock(&self.emptied_at);
            tokio::time::sleep_until(left + grace).await;
            if *lock(&self.emptied_at) == left && self.count() == 0 {
                return;
            }
        }
    }
}
