//! A ring's state under its lock: the bookkeeping [`super::Ring`]'s methods share (sequence
//! numbers, lookups by id, eviction past the bounds, the waiting readers' wakers). It never
//! wakes a reader itself: the ring wakes them after unlocking.

use std::sync::Arc;
use std::task::Waker;

use bytes::Bytes;
use tokio::time::Instant;

use super::{Listing, RingState};

impl RingState {
    /// The sequence number the next event gets.
    pub(super) fn next_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64
    }

    /// True when the ring holds an event with this `id` and these encoded bytes (the same
    /// event: the encoding is the same on every relay).
    pub(super) fn holds(&self, id: &str, frame: &Bytes) -> bool {
        self.entries
            .iter()
            .rev()
            .any(|e| e.id.as_deref() == Some(id) && e.frame == *frame)
    }

    /// The id of the first event from `offset` on, passing over `retry:` changes (`None`: it
    /// has none, or only changes wait).
    pub(super) fn next_event_id(&self, offset: usize) -> Option<Arc<str>> {
        let next = self.entries.range(offset..).find(|e| !e.retry)?;
        next.id.clone()
    }

    /// The sequence number of the newest buffered event whose id is `id`.
    pub(super) fn seq_of(&self, id: &str) -> Option<u64> {
        self.entries
            .iter()
            .rposition(|e| e.id.as_deref() == Some(id))
            .map(|index| self.first_seq + index as u64)
    }

    /// Drops what exceeds the bounds; returns the bytes freed (frames and their compressed
    /// parts).
    pub(super) fn evict(&mut self, now: Instant) -> usize {
        let before = self.bytes + self.packed_bytes;
        while let Some(front) = self.entries.front() {
            let too_old = now.saturating_duration_since(front.at) > self.limits.max_age;
            let over = self.entries.len() > self.limits.max_events
                || (self.bytes > self.limits.max_bytes && self.entries.len() > 1);
            if !(too_old || over) {
                break;
            }
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= e.frame.len();
                self.packed_bytes -= e.parts.as_deref().map_or(0, super::Parts::len);
                self.retry_entries -= usize::from(e.retry);
                self.first_seq += 1;
            }
        }
        before - self.bytes - self.packed_bytes
    }

    /// Lists `waker` for the next wake-up unless `listing` says it is listed already.
    pub(super) fn listen(&mut self, listing: &mut Listing, waker: &Waker) {
        let current = Listing(self.wake_generation + 1);
        if listing.0 != current.0 {
            self.waiters.push(waker.clone());
            *listing = current;
        }
    }

    /// Takes the listed wakers (starting a new wake generation), to wake after unlocking.
    pub(super) fn take_waiters(&mut self) -> Vec<Waker> {
        if self.waiters.is_empty() {
            return Vec::new();
        }
        self.wake_generation += 1;
        // Most readers list themselves again right after: one allocation of the size they
        // need instead of a dozen doublings per event.
        let size = self.waiters.len();
        std::mem::replace(&mut self.waiters, Vec::with_capacity(size))
    }
}
