//! A topic's replay ring: its buffered events (each encoded once, shared as [`Bytes`]) with
//! their sequence numbers, the bounds that evict them (events, bytes, age), and the list of
//! subscribers' wakers that the topic's one lock guards with them. It knows nothing of
//! subscribers' cursors, the upstream or HTTP; [`super::topic`] publishes into it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::topic::CloseReason;

/// Bounds of a topic's replay ring; an event leaves when any bound is exceeded.
#[derive(Debug, Clone, Copy)]
pub struct RingLimits {
    /// Events kept, count (≥ 1).
    pub max_events: usize,
    /// Encoded bytes kept (the newest event is always kept, whatever its size).
    pub max_bytes: usize,
    /// Oldest age kept.
    pub max_age: Duration,
}

/// One buffered event.
pub(super) struct Entry {
    /// The event's own `id:` field, if it had one.
    pub id: Option<Arc<str>>,
    /// Its encoded frame, shared by every subscriber.
    pub frame: Bytes,
    /// When it arrived from upstream.
    pub at: Instant,
}

/// A topic's ring and its subscribers' wake-up list (under the topic's one lock).
pub(super) struct RingState {
    pub entries: VecDeque<Entry>,
    /// Sequence number of `entries[0]`; the next event gets `first_seq + entries.len()`.
    pub first_seq: u64,
    pub bytes: usize,
    pub limits: RingLimits,
    pub waiters: Vec<Waker>,
    /// Bumped each time `waiters` is drained, so a subscriber knows whether it is listed.
    pub wake_generation: u64,
    pub heartbeat_generation: u64,
    pub closed: Option<CloseReason>,
    pub received: u64,
    /// Set when the upstream moved to another source: until an event the ring does not hold
    /// arrives, events it holds already are the new source's overlap and are dropped.
    pub overlap: bool,
}

impl RingState {
    /// An empty ring bounded by `limits`.
    pub fn new(limits: RingLimits) -> Self {
        Self {
            entries: VecDeque::new(),
            first_seq: 0,
            bytes: 0,
            limits,
            waiters: Vec::new(),
            wake_generation: 0,
            heartbeat_generation: 0,
            closed: None,
            received: 0,
            overlap: false,
        }
    }

    /// The sequence number the next event gets.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64
    }

    /// True when the ring holds an event with this `id` and these encoded bytes (the same
    /// event: the encoding is the same on every relay).
    pub fn holds(&self, id: &str, frame: &Bytes) -> bool {
        self.entries
            .iter()
            .rev()
            .any(|e| e.id.as_deref() == Some(id) && e.frame == *frame)
    }

    /// The sequence number of the newest buffered event whose id is `id`.
    pub fn seq_of(&self, id: &str) -> Option<u64> {
        self.entries
            .iter()
            .rposition(|e| e.id.as_deref() == Some(id))
            .map(|index| self.first_seq + index as u64)
    }

    /// Drops what exceeds the bounds; returns the bytes freed.
    pub fn evict(&mut self, now: Instant) -> usize {
        let before = self.bytes;
        while let Some(front) = self.entries.front() {
            let too_old = now.saturating_duration_since(front.at) > self.limits.max_age;
            let over = self.entries.len() > self.limits.max_events
                || (self.bytes > self.limits.max_bytes && self.entries.len() > 1);
            if !(too_old || over) {
                break;
            }
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= e.frame.len();
                self.first_seq += 1;
            }
        }
        before - self.bytes
    }

    /// Takes the listed wakers (bumping `wake_generation`), to wake after unlocking.
    pub fn take_waiters(&mut self) -> Vec<Waker> {
        if self.waiters.is_empty() {
            return Vec::new();
        }
        self.wake_generation += 1;
        // Most subscribers list themselves again right after: one allocation of the size they
        // need instead of a dozen doublings per event.
        let size = self.waiters.len();
        std::mem::replace(&mut self.waiters, Vec::with_capacity(size))
    }
}
