//! A topic's replay ring, behind its one lock: the buffered events (each encoded once, shared
//! as [`Bytes`]) with their sequence numbers, the origin's current `retry:` frame and its
//! changes (in order with the events), the bounds that evict them (events, bytes, age), the
//! byte accounting of the hub-wide buffer gauge, the heartbeat generation, the close, and the
//! list of wakers of the subscribers waiting on it; and, under a lock of their own, the topic's
//! shared compressors ([`Compressors`]): each frame appended is compressed once per coding in
//! use, in order, its parts kept beside it (docs/compression.md). Every rule of the ring is
//! kept here, by its methods: callers hold a [`Cursor`] and never the lock.
//!
//! It knows nothing of subscribers beyond their cursors, nothing of the upstream or HTTP, and
//! never waits for a subscriber: publishing appends, evicts and wakes (docs/architecture.md,
//! invariants 2–4). Appending, with its compression, is `append.rs`; the state under the lock
//! and its bookkeeping, `state.rs`.

mod append;
mod state;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use prometheus::{IntCounter, IntGauge};
use tokio::time::Instant;

use super::batch::{Batch, Frames, Packed, Packs};
use super::lock::lock;
use crate::compress::{Coding, CompressionSettings, Compressors, Parts};

/// Why a topic ended its subscribers' streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The origin answered 204 No Content: the topic is over (streams end without a hint).
    OriginClosed,
    /// The origin refused the topic (e.g. 404, or no event stream): streams end without a
    /// hint, and the reconnecting clients get the origin's answer.
    OriginRefused,
    /// The relay is draining (streams end after a `retry:` hint, to reconnect elsewhere).
    Draining,
    /// The last subscriber left and the idle grace passed (no stream is left to end).
    Retired,
    /// A request stream's answer is complete: the origin ended it (streams end without a
    /// hint, after every event; the topic stays resumable for its retention).
    Finished,
    /// A request stream was cancelled (`DELETE`, or its last viewer left under
    /// `on_disconnect = "cancel"`): streams end without a hint.
    Cancelled,
}

/// Bounds of a topic's replay ring; an event leaves when any bound is exceeded.
#[derive(Debug, Clone, Copy)]
pub struct RingLimits {
    /// Events kept, count (≥ 1); a change of the origin's `retry:` takes a place as an event
    /// does.
    pub max_events: usize,
    /// Encoded bytes kept (the newest event is always kept, whatever its size).
    pub max_bytes: usize,
    /// Oldest age kept.
    pub max_age: Duration,
}

/// A topic's replay ring and its waiting subscribers' wakers, under one lock.
pub(super) struct Ring {
    state: Mutex<RingState>,
    /// The shared compressors, locked before `state` by whoever appends (so parts are made in
    /// the order frames are appended) and by a heartbeat tick (so its segment cut comes before
    /// any reader can see the tick); never locked while `state` is.
    compressors: Mutex<Compressors>,
    /// Bytes in every ring of the relay (`sse_relay_buffered_bytes`): this ring adds and
    /// subtracts its own, and its topic's key bytes for as long as it lives.
    buffered_bytes: IntGauge,
    /// The topic key's bytes, counted in `buffered_bytes` from [`Ring::new`] to its drop: a
    /// client chooses the key (up to `limits.max_topic_variable_bytes` per variable), and the
    /// relay holds it in the registry, the topic, its label and its upstream URL.
    key_bytes: usize,
    /// Events dropped as the overlap of a new source (see [`Ring::expect_overlap`]).
    duplicates_dropped: IntCounter,
}

/// One buffered event, or a change of the origin's `retry:`.
struct Entry {
    /// The event's own `id:` field, if it had one (a `retry:` change has none).
    id: Option<Arc<str>>,
    /// Its encoded frame, shared by every subscriber.
    frame: Bytes,
    /// When it arrived from upstream.
    at: Instant,
    /// A `retry:` frame, not an event: never counted as one, and passed over when the gap
    /// signal names the next event's id.
    retry: bool,
    /// Its shared compressed parts, one per coding in use when it was appended (`None`: none
    /// was).
    parts: Option<Arc<Parts>>,
}

struct RingState {
    entries: VecDeque<Entry>,
    /// Sequence number of `entries[0]`; the next event gets `first_seq + entries.len()`.
    first_seq: u64,
    /// Encoded bytes of `entries`.
    bytes: usize,
    /// Bytes of the entries' compressed parts (in the buffer gauge, not against `max_bytes`:
    /// compressing never shortens what the ring can replay).
    packed_bytes: usize,
    limits: RingLimits,
    waiters: Vec<Waker>,
    /// Bumped each time `waiters` is drained, so a listener knows whether it is listed.
    wake_generation: u64,
    /// Bumped by each heartbeat tick.
    heartbeat_generation: u64,
    closed: Option<CloseReason>,
    /// Events appended since the topic opened, count.
    received: u64,
    /// The origin's current `retry:` as its encoded frame (`None`: it set none).
    retry: Option<Bytes>,
    /// Entries of `entries` that are `retry:` changes, count.
    retry_entries: usize,
    /// Set when the upstream moved to another source: until an event the ring does not hold
    /// arrives, events it holds already are the new source's overlap and are dropped.
    overlap: bool,
}

/// Whether a task's waker is listed for the ring's next wake-up: the wake generation it was
/// listed in, plus one (0: never listed). 8 bytes, as every live subscriber holds one.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Listing(u64);

/// A reader's place in the ring: the next sequence number it reads, whether it is listed for
/// the next wake-up, and the heartbeat generation it has answered.
#[derive(Debug)]
pub(super) struct Cursor {
    seq: u64,
    listing: Listing,
    heartbeat_seen: u64,
}

/// Where [`Ring::place`] put a new cursor.
pub(super) enum Placed {
    /// At the live head: no `Last-Event-ID` was given.
    Head,
    /// Right after the event with the given id, which the ring holds.
    After,
    /// The ring does not hold the given id: at the oldest buffered event; `head` is the
    /// sequence number the next event will get.
    Missing { head: u64 },
}

/// What a reader wants from [`Ring::poll_read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Want {
    /// The next batch of events.
    Events,
    /// Only the next event's id, leaving the event in place (a gap signal goes first).
    NextId,
    /// No events (a catch-up is under way): only the close, heartbeats or a wake-up.
    Nothing,
}

/// What [`Ring::poll_read`] found.
pub(super) enum Read {
    /// Events from the cursor on (the cursor moved past them).
    Batch(Batch),
    /// The id of the next event, which stays unread ([`Want::NextId`]).
    NextId(Option<Arc<str>>),
    /// The cursor fell out of the ring: events were evicted before it read them.
    Lagged,
    /// The topic is closed and the cursor has read everything.
    Closed(CloseReason),
    /// Nothing to read, and a heartbeat tick passed since the reader last got anything.
    Heartbeat,
}

/// A point-in-time view of a ring, for `/topics`.
pub(super) struct RingFigures {
    /// Buffered events, count.
    pub events: usize,
    /// Buffered bytes.
    pub bytes: usize,
    /// Events received since the topic opened, count.
    pub received: u64,
    /// The id of the newest buffered event that carried one.
    pub last_event_id: Option<String>,
}

impl Ring {
    /// An empty ring bounded by `limits`, accounting its bytes and its topic's `key_bytes` in
    /// `buffered_bytes` and its dropped overlap in `duplicates_dropped`.
    pub fn new(
        limits: RingLimits,
        compression: CompressionSettings,
        key_bytes: usize,
        buffered_bytes: IntGauge,
        duplicates_dropped: IntCounter,
    ) -> Self {
        buffered_bytes.add(key_bytes as i64);
        Self {
            compressors: Mutex::new(Compressors::new(compression)),
            state: Mutex::new(RingState {
                entries: VecDeque::new(),
                first_seq: 0,
                bytes: 0,
                packed_bytes: 0,
                limits,
                waiters: Vec::new(),
                wake_generation: 0,
                heartbeat_generation: 0,
                closed: None,
                received: 0,
                retry: None,
                retry_entries: 0,
                overlap: false,
            }),
            buffered_bytes,
            key_bytes,
            duplicates_dropped,
        }
    }

    /// The origin's current `retry:` frame (`None`: it set none). A reader placed before it
    /// asks gets every later change from its cursor (both are kept under the ring's lock).
    pub fn retry(&self) -> Option<Bytes> {
        lock(&self.state).retry.clone()
    }

    /// Until the first event the ring does not hold (or one without an id), drops each event
    /// it holds already: the same id with the same encoded bytes (an event that reuses an id
    /// with other data is new, passes and ends the guard).
    pub fn expect_overlap(&self) {
        lock(&self.state).overlap = true;
    }

    /// Closes the ring (the first reason stays) and wakes every reader: each gets the frames
    /// it has not read, then [`Read::Closed`].
    pub fn close(&self, reason: CloseReason) {
        let wakers = {
            let mut state = lock(&self.state);
            state.closed.get_or_insert(reason);
            state.take_waiters()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// True when the ring is closed and `cursor` is past its last frame: a reader there gets
    /// nothing but the close.
    pub fn is_spent(&self, cursor: &Cursor) -> bool {
        let state = lock(&self.state);
        state.closed.is_some() && cursor.seq >= state.next_seq()
    }

    /// True once the ring was closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed.is_some()
    }

    /// A heartbeat tick: evicts events past their age and wakes every waiting reader, which
    /// gets [`Read::Heartbeat`] if it read nothing since the previous tick.
    /// The next frame of every coding in use starts a segment, so a reader that answers this
    /// tick with bytes of its own joins the shared bytes again there.
    pub fn tick(&self) {
        let mut compressors = lock(&self.compressors);
        compressors.cut();
        let wakers = {
            let mut state = lock(&self.state);
            state.heartbeat_generation += 1;
            let evicted = state.evict(Instant::now());
            self.buffered_bytes.sub(evicted as i64);
            state.take_waiters()
        };
        drop(compressors);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Wakes every waiting reader (something outside the ring changed: the drain moved, a
    /// catch-up was decided).
    pub fn wake_all(&self) {
        let wakers = lock(&self.state).take_waiters();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// The sequence numbers of the newest buffered events with these ids, read at one instant.
    pub fn seqs_of<const N: usize>(&self, ids: [Option<&str>; N]) -> [Option<u64>; N] {
        let state = lock(&self.state);
        ids.map(|id| id.and_then(|id| state.seq_of(id)))
    }

    /// The sequence number of the oldest buffered event.
    pub fn first_seq(&self) -> u64 {
        lock(&self.state).first_seq
    }

    /// A cursor for a new reader: right after the event `last_event_id` names if the ring holds
    /// it, at the oldest buffered event if it does not, at the live head without an id.
    pub fn place(&self, last_event_id: Option<&str>) -> (Cursor, Placed) {
        let state = lock(&self.state);
        let at = |seq| Cursor {
            seq,
            listing: Listing::default(),
            heartbeat_seen: state.heartbeat_generation,
        };
        match last_event_id.map(|id| state.seq_of(id)) {
            None => (at(state.next_seq()), Placed::Head),
            Some(Some(seq)) => (at(seq + 1), Placed::After),
            Some(None) => (
                at(state.first_seq),
                Placed::Missing {
                    head: state.next_seq(),
                },
            ),
        }
    }

    /// The newest `back` events the ring holds (not the `retry:` changes), oldest first, each
    /// with when it arrived, and a cursor right after them, both read at one instant: a reader
    /// that shows the recent past and then follows misses nothing and sees nothing twice.
    pub fn recent(&self, back: usize) -> (Vec<(Bytes, Instant)>, Cursor) {
        let state = lock(&self.state);
        let mut recent: Vec<_> = state
            .entries
            .iter()
            .rev()
            .filter(|e| !e.retry)
            .take(back)
            .map(|e| (e.frame.clone(), e.at))
            .collect();
        recent.reverse();
        let cursor = Cursor {
            seq: state.next_seq(),
            listing: Listing::default(),
            heartbeat_seen: state.heartbeat_generation,
        };
        (recent, cursor)
    }

    /// Moves `cursor` to `seq` (a catch-up met the ring there), or to the oldest buffered event
    /// (`None`).
    pub fn seek(&self, cursor: &mut Cursor, seq: Option<u64>) {
        cursor.seq = seq.unwrap_or_else(|| self.first_seq());
    }

    /// Reads from `cursor` what `want` asks for; else the close, else a heartbeat owed; else
    /// lists the task's waker (once per wake generation) for the next publish, tick, close or
    /// [`Ring::wake_all`], and is pending.
    /// A reader of `coding` also gets each frame's shared part in it.
    pub fn poll_read(
        &self,
        cursor: &mut Cursor,
        want: Want,
        coding: Option<Coding>,
        cx: &mut Context<'_>,
    ) -> Poll<Read> {
        let mut state = lock(&self.state);
        if want != Want::Nothing {
            if cursor.seq < state.first_seq {
                return Poll::Ready(Read::Lagged);
            }
            let offset = (cursor.seq - state.first_seq) as usize;
            if let Some(entry) = state.entries.get(offset) {
                if want == Want::NextId {
                    return Poll::Ready(Read::NextId(state.next_event_id(offset)));
                }
                let first_at = entry.at;
                let waiting = state.entries.range(offset..).map(|e| &e.frame);
                let batch = match coding {
                    None => {
                        Frames::first_batch(waiting).map(|(frames, count)| (frames, None, count))
                    }
                    Some(_) => {
                        let count = Frames::batch_len(waiting);
                        let taken = state.entries.range(offset..offset + count);
                        let packed = packed(taken);
                        Some((Frames::Many(Vec::new(), 0), Some(packed), count))
                    }
                };
                if let Some((frames, packed, count)) = batch.filter(|b| b.2 > 0) {
                    cursor.seq += count as u64;
                    cursor.heartbeat_seen = state.heartbeat_generation;
                    let taken = state.entries.range(offset..offset + count);
                    let events = taken.filter(|e| !e.retry).count() as u64;
                    let behind = (state.entries.len() - offset - count) as u64;
                    return Poll::Ready(Read::Batch(Batch {
                        frames,
                        packed,
                        events,
                        first_at,
                        behind,
                    }));
                }
            }
        }
        if let Some(reason) = state.closed {
            return Poll::Ready(Read::Closed(reason));
        }
        if cursor.heartbeat_seen != state.heartbeat_generation {
            cursor.heartbeat_seen = state.heartbeat_generation;
            return Poll::Ready(Read::Heartbeat);
        }
        state.listen(&mut cursor.listing, cx.waker());
        Poll::Pending
    }

    /// Ready when the ring's head moved past `seen` (which it then records) or the ring closed;
    /// otherwise lists the task's waker (once per wake generation) and is pending.
    pub fn poll_changed(
        &self,
        seen: &mut Option<u64>,
        listing: &mut Listing,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let mut state = lock(&self.state);
        let head = state.next_seq();
        if *seen != Some(head) || state.closed.is_some() {
            *seen = Some(head);
            return Poll::Ready(());
        }
        state.listen(listing, cx.waker());
        Poll::Pending
    }

    /// A point-in-time view.
    pub fn figures(&self) -> RingFigures {
        let state = lock(&self.state);
        RingFigures {
            events: state.entries.len() - state.retry_entries,
            bytes: state.bytes,
            received: state.received,
            last_event_id: state
                .entries
                .iter()
                .rev()
                .find_map(|e| e.id.as_deref().map(str::to_string)),
        }
    }
}

/// The entries `taken`, each frame with its compressed parts (`None` for an entry appended
/// while no coding was in use), in order.
fn packed<'a>(taken: impl ExactSizeIterator<Item = &'a Entry>) -> Packs {
    let one = |e: &Entry| Packed {
        frame: e.frame.clone(),
        parts: e.parts.clone(),
    };
    let mut taken = taken;
    match (taken.len(), taken.next()) {
        (1, Some(e)) => Packs::One(one(e)),
        (_, Some(first)) => Packs::Many(std::iter::once(first).chain(taken).map(one).collect()),
        (_, None) => Packs::None,
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let state = lock(&self.state);
        self.buffered_bytes
            .sub((state.bytes + state.packed_bytes + self.key_bytes) as i64);
    }
}
