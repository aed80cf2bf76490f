//! Appending to a ring: an event or a change of the origin's `retry:` is admitted (open ring,
//! not a new source's overlap, a `retry:` that changed), compressed once per coding in use by
//! the topic's shared compressors (under their lock, outside the state's, so parts are made in
//! append order and readers are not held up), appended with its parts, the bounds applied, the
//! bytes accounted, and every waiting reader woken. It never waits for a reader.

use std::sync::Arc;
use std::task::Waker;

use bytes::Bytes;
use tokio::time::Instant;

use super::{Entry, Ring, RingState};
use crate::compress::{Coding, Parts};
use crate::hub::lock::lock;
use crate::ops::WarnLimit;

impl Ring {
    /// Appends an encoded event (`id`: its own `id:` field), evicts what exceeds the bounds and
    /// wakes every waiting reader. Nothing is appended once the ring is closed, nor an event of
    /// a new source's overlap (see [`Ring::expect_overlap`]). Never waits for a reader.
    pub fn publish(&self, id: Option<&str>, frame: Bytes) {
        self.publish_entry(frame, false, |state, frame| {
            if state.overlap {
                if id.is_some_and(|id| state.holds(id, frame)) {
                    self.duplicates_dropped.inc();
                    return None;
                }
                state.overlap = false;
            }
            state.received += 1;
            Some(id.map(Arc::from))
        });
    }

    /// Records the origin's `retry:` (its encoded frame, WHATWG HTML §9.2.6: the reconnection
    /// time): when it differs from the current one, it becomes the current one and is appended
    /// like an event, so every reader gets the change in order with the events, and wakes the
    /// waiting readers. The entry has no id: resumes, id lookups, catch-ups and the overlap
    /// guard pass over it, and it is not counted as an event. Nothing once the ring is closed.
    pub fn publish_retry(&self, frame: Bytes) {
        self.publish_entry(frame, true, |state, frame| {
            if state.retry.as_ref() == Some(frame) {
                return None;
            }
            state.retry = Some(frame.clone());
            Some(None)
        });
    }

    /// Appends `frame` if the ring is open and `admit` lets it in (giving its id), compressed
    /// in every coding in use (outside the state's lock, under the compressors', so parts are
    /// made in append order), then wakes every waiting reader.
    fn publish_entry(
        &self,
        frame: Bytes,
        retry: bool,
        admit: impl FnOnce(&mut RingState, &Bytes) -> Option<Option<Arc<str>>>,
    ) {
        let mut compressors = lock(&self.compressors);
        let mut state = lock(&self.state);
        if state.closed.is_some() {
            return;
        }
        let Some(id) = admit(&mut state, &frame) else {
            return;
        };
        let mut parts = None;
        if compressors.in_use() {
            drop(state);
            let (packed, failure) = compressors.pack(&frame, Instant::now());
            if let Some(error) = failure {
                static WARN: std::sync::LazyLock<WarnLimit> =
                    std::sync::LazyLock::new(WarnLimit::default);
                if let Some(suppressed) = WARN.check() {
                    tracing::warn!(%error, suppressed, "compressing an event failed: its subscribers get it compressed on their own");
                }
            }
            parts = packed;
            state = lock(&self.state);
            if state.closed.is_some() {
                return;
            }
        }
        self.append(&mut state, id, frame, retry, parts);
        let wakers = state.take_waiters();
        drop(state);
        drop(compressors);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// A subscriber of `coding` came: the topic compresses in it from the next frame on.
    pub fn join_coding(&self, coding: Coding) {
        lock(&self.compressors).join(coding);
    }

    /// A subscriber of `coding` left (with the last one, the coding's compressor is freed).
    pub fn leave_coding(&self, coding: Coding) {
        lock(&self.compressors).leave(coding);
    }

    /// Appends an entry, evicts what exceeds the bounds and accounts the bytes.
    fn append(
        &self,
        state: &mut RingState,
        id: Option<Arc<str>>,
        frame: Bytes,
        retry: bool,
        parts: Option<Arc<Parts>>,
    ) {
        let now = Instant::now();
        let packed = parts.as_deref().map_or(0, Parts::len);
        let added = frame.len() + packed;
        state.bytes += frame.len();
        state.packed_bytes += packed;
        state.retry_entries += usize::from(retry);
        state.entries.push_back(Entry {
            id,
            frame,
            at: now,
            retry,
            parts,
        });
        let evicted = state.evict(now);
        self.buffered_bytes.add(added as i64 - evicted as i64);
    }
}
