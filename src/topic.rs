//! One topic: its replay ring of shared encoded frames, its subscribers' cursors and wakeups,
//! and the signals of its lifecycle (unused, closed).
//!
//! Events live once per topic, as shared [`Bytes`], in a ring bounded by events, bytes and
//! age. A [`Subscription`] is a cursor into that ring plus a waker slot, so per-subscriber state
//! is O(1) and a slow subscriber only falls behind (DESIGN.md invariants 2–4). Publishing never
//! waits for a subscriber. This module knows nothing of HTTP.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use prometheus::IntGauge;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::hub::HubShared;
use crate::metrics::Metrics;

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

/// Why a topic ended its subscribers' streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The origin answered 204 No Content: the topic is over.
    OriginClosed,
    /// The relay is draining (shutting down).
    Draining,
}

/// The state of a topic's upstream subscription, for `/topics` and the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum UpstreamState {
    /// Connecting or waiting for response headers.
    Connecting = 0,
    /// An event stream is open.
    Streaming = 1,
    /// Waiting before the next attempt.
    Backoff = 2,
    /// Ended (204, retired or drained).
    Closed = 3,
}

impl UpstreamState {
    /// The state's name, as shown in `/topics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Streaming => "streaming",
            Self::Backoff => "backoff",
            Self::Closed => "closed",
        }
    }
}

/// A point-in-time view of a topic, for `/topics` and the status page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TopicSnapshot {
    /// The topic key.
    pub key: String,
    /// The topic's label (its first subscriber's request path).
    pub label: String,
    /// Subscribers attached, count.
    pub subscribers: usize,
    /// Upstream subscription state.
    pub upstream: &'static str,
    /// The id of the newest buffered event that carried one.
    pub last_event_id: Option<String>,
    /// Events in the replay ring, count.
    pub ring_events: usize,
    /// Bytes in the replay ring.
    pub ring_bytes: usize,
    /// Events received since the topic opened, count.
    pub events_received: u64,
    /// Kept open without subscribers (`topics.always_on`).
    pub always_on: bool,
}

/// One topic: its replay ring, its subscribers' wakers and its lifecycle signals.
pub struct Topic {
    key: String,
    label: String,
    upstream: String,
    initial_last_event_id: Option<String>,
    state: Mutex<RingState>,
    subscribers: AtomicUsize,
    /// Bumped each time the last subscriber leaves, so the idle grace counts from the last leave.
    emptied: AtomicU64,
    /// Kept open without subscribers (`topics.always_on`).
    pinned: AtomicBool,
    subscribers_gauge: IntGauge,
    upstream_state: AtomicU8,
    unused: Notify,
    ended: tokio::sync::watch::Sender<bool>,
    drain_progress: Arc<AtomicU32>,
    idle_grace: Duration,
    metrics: Arc<Metrics>,
    hub: Weak<HubShared>,
}

struct Entry {
    /// The event's own `id:` field, if it had one.
    id: Option<Arc<str>>,
    frame: Bytes,
    at: Instant,
}

struct RingState {
    entries: VecDeque<Entry>,
    /// Sequence number of `entries[0]`; the next event gets `first_seq + entries.len()`.
    first_seq: u64,
    bytes: usize,
    limits: RingLimits,
    waiters: Vec<Waker>,
    /// Bumped each time `waiters` is drained, so a subscriber knows whether it is listed.
    wake_generation: u64,
    heartbeat_generation: u64,
    closed: Option<CloseReason>,
    received: u64,
}

/// Drain progress at which every subscriber has been ended (slots are `u16`).
pub const DRAIN_DONE: u32 = 1 << 16;

/// How a new topic is set up (by the hub).
pub(crate) struct TopicInit<'a> {
    pub key: &'a str,
    pub label: String,
    pub upstream: &'a str,
    pub last_event_id: Option<&'a str>,
    pub limits: RingLimits,
    pub idle_grace: Duration,
    pub subscribers_gauge: IntGauge,
    pub drain_progress: Arc<AtomicU32>,
    pub metrics: Arc<Metrics>,
    pub hub: Weak<HubShared>,
}

impl Topic {
    pub(crate) fn new(init: TopicInit<'_>) -> Self {
        Self {
            key: init.key.to_string(),
            label: init.label,
            upstream: init.upstream.to_string(),
            initial_last_event_id: init.last_event_id.map(str::to_string),
            state: Mutex::new(RingState {
                entries: VecDeque::new(),
                first_seq: 0,
                bytes: 0,
                limits: init.limits,
                waiters: Vec::new(),
                wake_generation: 0,
                heartbeat_generation: 0,
                closed: None,
                received: 0,
            }),
            subscribers: AtomicUsize::new(0),
            emptied: AtomicU64::new(0),
            pinned: AtomicBool::new(false),
            subscribers_gauge: init.subscribers_gauge,
            upstream_state: AtomicU8::new(UpstreamState::Connecting as u8),
            unused: Notify::new(),
            ended: tokio::sync::watch::Sender::new(false),
            drain_progress: init.drain_progress,
            idle_grace: init.idle_grace,
            metrics: init.metrics,
            hub: init.hub,
        }
    }

    /// The topic key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The label used in per-topic metrics (possibly `other`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The upstream URL this topic subscribes to.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The `Last-Event-ID` of the subscriber that opened the topic, for the first upstream
    /// request (so the origin can replay what that client missed).
    pub fn initial_last_event_id(&self) -> Option<&str> {
        self.initial_last_event_id.as_deref()
    }

    /// Subscribers attached now, count.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.load(Ordering::Acquire)
    }

    /// Records the upstream subscription's state (set by the upstream task).
    pub fn set_upstream_state(&self, state: UpstreamState) {
        self.upstream_state.store(state as u8, Ordering::Relaxed);
    }

    /// Appends an encoded event (`id`: the event's own `id:` field) to the ring, evicts what
    /// exceeds the bounds and wakes every waiting subscriber. Never waits for a subscriber.
    pub fn publish(&self, id: Option<&str>, frame: Bytes) {
        let wakers = {
            let mut state = lock(&self.state);
            if state.closed.is_some() {
                return;
            }
            let now = Instant::now();
            self.metrics.buffered_bytes.add(frame.len() as i64);
            state.bytes += frame.len();
            state.received += 1;
            state.entries.push_back(Entry {
                id: id.map(Arc::from),
                frame,
                at: now,
            });
            let evicted = state.evict(now);
            self.metrics.buffered_bytes.sub(evicted as i64);
            state.take_waiters()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Marks the topic closed and ends every subscriber's stream (after the frames already in
    /// the ring). The hub removes it from the registry.
    pub fn close(&self, reason: CloseReason) {
        if let Some(hub) = self.hub.upgrade() {
            hub.unregister(self);
            if reason == CloseReason::OriginClosed {
                hub.origin_closed(self);
            }
        }
        self.mark_closed(reason);
    }

    pub(crate) fn mark_closed(&self, reason: CloseReason) {
        let wakers = {
            let mut state = lock(&self.state);
            state.closed.get_or_insert(reason);
            state.take_waiters()
        };
        self.set_upstream_state(UpstreamState::Closed);
        self.ended.send_replace(true);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Resolves once the topic was closed (by the origin, by retirement or by draining).
    pub async fn closed(&self) {
        let mut ended = self.ended.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we are borrowed.
        let _ = ended.wait_for(|ended| *ended).await;
    }

    /// True once the topic was closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed.is_some()
    }

    /// Resolves when the topic has had no subscriber for the idle grace period, after removing
    /// it from the hub (atomically with the check, so a subscriber arriving meanwhile keeps
    /// it). The caller then ends the upstream subscription.
    /// An always-on topic never retires.
    pub async fn retired(&self) {
        loop {
            if self.is_pinned() {
                std::future::pending::<()>().await;
            }
            while self.subscriber_count() > 0 {
                self.unused.notified().await;
            }
            let emptied = self.emptied.load(Ordering::Acquire);
            tokio::time::sleep(self.idle_grace).await;
            if self.emptied.load(Ordering::Acquire) != emptied {
                // Someone came and left meanwhile: the grace counts from that leave.
                continue;
            }
            let Some(hub) = self.hub.upgrade() else {
                return;
            };
            if hub.retire_if_unused(self) {
                self.mark_closed(CloseReason::Draining);
                return;
            }
        }
    }

    /// A heartbeat tick: evicts events past their age and wakes every waiting subscriber, which
    /// sends a heartbeat if it sent nothing since the previous tick.
    pub(crate) fn tick(&self) {
        let wakers = {
            let mut state = lock(&self.state);
            state.heartbeat_generation += 1;
            let evicted = state.evict(Instant::now());
            self.metrics.buffered_bytes.sub(evicted as i64);
            state.take_waiters()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Wakes every waiting subscriber (drain progress moved).
    pub(crate) fn wake_all(&self) {
        let wakers = lock(&self.state).take_waiters();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// A point-in-time view.
    pub fn snapshot(&self) -> TopicSnapshot {
        let state = lock(&self.state);
        let upstream = match self.upstream_state.load(Ordering::Relaxed) {
            0 => UpstreamState::Connecting,
            1 => UpstreamState::Streaming,
            2 => UpstreamState::Backoff,
            _ => UpstreamState::Closed,
        };
        TopicSnapshot {
            key: self.key.clone(),
            label: self.label.clone(),
            subscribers: self.subscriber_count(),
            upstream: upstream.as_str(),
            last_event_id: state
                .entries
                .iter()
                .rev()
                .find_map(|e| e.id.as_deref().map(str::to_string)),
            ring_events: state.entries.len(),
            ring_bytes: state.bytes,
            events_received: state.received,
            always_on: self.is_pinned(),
        }
    }

    /// Attaches a subscriber (the hub has counted it already) positioned by `last_event_id`:
    /// just after that event if the ring still holds it, else at the oldest buffered event
    /// (nothing that could be kept is lost); without one, at the live head.
    pub(crate) fn attach(self: &Arc<Self>, last_event_id: Option<&str>) -> Subscription {
        let metrics = &self.metrics;
        metrics.subscribers.inc();
        self.subscribers_gauge.inc();
        let state = lock(&self.state);
        let cursor = match last_event_id {
            None => state.next_seq(),
            Some(wanted) => {
                let found = state
                    .entries
                    .iter()
                    .rposition(|e| e.id.as_deref() == Some(wanted));
                match found {
                    Some(index) => {
                        metrics.replay_hits.inc();
                        state.first_seq + index as u64 + 1
                    }
                    None => {
                        metrics.replay_misses.inc();
                        state.first_seq
                    }
                }
            }
        };
        Subscription {
            topic: self.clone(),
            cursor,
            listed_in: None,
            heartbeat_seen: state.heartbeat_generation,
            last_handoff: None,
            drain_slot: rand::random::<u16>(),
        }
    }

    /// Keeps the topic open without subscribers (see [`Topic::retired`]).
    pub(crate) fn pin(&self) {
        self.pinned.store(true, Ordering::Release);
    }

    /// True for an always-on topic.
    pub(crate) fn is_pinned(&self) -> bool {
        self.pinned.load(Ordering::Acquire)
    }

    pub(crate) fn add_subscriber(&self) {
        self.subscribers.fetch_add(1, Ordering::AcqRel);
    }
}

impl RingState {
    fn next_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64
    }

    /// Drops what exceeds the bounds; returns the bytes freed.
    fn evict(&mut self, now: Instant) -> usize {
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

    fn take_waiters(&mut self) -> Vec<Waker> {
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

/// What a subscriber gets next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// An encoded event frame (shared by all subscribers).
    Frame(Delivery),
    /// Nothing was sent since the last heartbeat tick: send a heartbeat.
    Heartbeat,
    /// The cursor fell out of the ring (events were evicted before this subscriber read them).
    Lagged,
    /// The topic ended, or the drain reached this subscriber.
    Closed(CloseReason),
}

/// Ready events handed to one subscriber in one piece: a single event's shared frame, or,
/// when several are waiting, their frames joined (up to [`BATCH_BYTES`]), so a subscriber that
/// is behind costs one h2 DATA frame per batch rather than one per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The encoded frames: the topic's shared one for a single event, else a joined copy.
    pub frame: Bytes,
    /// Events in `frame`, count (at least 1).
    pub events: u64,
    /// When the first (oldest) event in `frame` arrived from upstream.
    pub received_at: Instant,
    /// Events still ahead of this batch for this subscriber (its lag), count.
    pub behind: u64,
    /// Set when the subscriber was not polled for a while although this event was waiting (the
    /// client's flow-control window was closed): how long, from the previous hand-off.
    pub stalled_for: Option<Duration>,
}

/// Largest batch of waiting events joined into one [`Delivery`], bytes (a single larger event is
/// handed over alone). One h2 DATA frame's default maximum size (RFC 9113 §6.5.2).
pub const BATCH_BYTES: usize = 16_384;

/// Stalls shorter than this are scheduling noise, not flow control.
const MIN_STALL: Duration = Duration::from_millis(1);

/// One subscriber's place in a topic: a cursor and a waker slot, nothing per event.
/// Dropping it detaches the subscriber (and may start the topic's idle grace period).
pub struct Subscription {
    topic: Arc<Topic>,
    cursor: u64,
    /// `wake_generation` at which this subscriber's waker was listed, if any.
    listed_in: Option<u64>,
    heartbeat_seen: u64,
    /// When the previous frame was handed off, if the subscriber has not waited since.
    last_handoff: Option<Instant>,
    /// Position in the drain order: this stream ends once drain progress passes it.
    drain_slot: u16,
}

impl Subscription {
    /// The topic subscribed to.
    pub fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }

    /// Polls for the next item; registers the task's waker when nothing is ready.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        if self.topic.drain_progress.load(Ordering::Relaxed) > u32::from(self.drain_slot) {
            return Poll::Ready(Next::Closed(CloseReason::Draining));
        }
        let mut state = lock(&self.topic.state);
        if self.cursor < state.first_seq {
            return Poll::Ready(Next::Lagged);
        }
        let offset = (self.cursor - state.first_seq) as usize;
        if let Some(entry) = state.entries.get(offset) {
            let now = Instant::now();
            let stalled_for = self
                .last_handoff
                .filter(|&handoff| entry.at <= handoff)
                .map(|handoff| now.saturating_duration_since(handoff))
                .filter(|&stall| stall >= MIN_STALL);
            let received_at = entry.at;
            // How many waiting frames fit one batch (at least one).
            let (mut events, mut bytes) = (0, 0);
            for e in state.entries.range(offset..) {
                if events > 0 && bytes + e.frame.len() > BATCH_BYTES {
                    break;
                }
                events += 1;
                bytes += e.frame.len();
            }
            let behind = (state.entries.len() - offset - events) as u64;
            self.cursor += events as u64;
            self.heartbeat_seen = state.heartbeat_generation;
            self.last_handoff = Some(now);
            // One event is the topic's shared frame itself (no allocation); several are joined
            // after unlocking, from handles taken under the lock.
            let frame = if events == 1 {
                let frame = entry.frame.clone();
                drop(state);
                frame
            } else {
                let waiting: Vec<Bytes> = state
                    .entries
                    .range(offset..offset + events)
                    .map(|e| e.frame.clone())
                    .collect();
                drop(state);
                let mut joined = bytes::BytesMut::with_capacity(bytes);
                waiting.iter().for_each(|f| joined.extend_from_slice(f));
                joined.freeze()
            };
            return Poll::Ready(Next::Frame(Delivery {
                frame,
                events: events as u64,
                received_at,
                behind,
                stalled_for,
            }));
        }
        self.last_handoff = None;
        if let Some(reason) = state.closed {
            return Poll::Ready(Next::Closed(reason));
        }
        if self.heartbeat_seen != state.heartbeat_generation {
            self.heartbeat_seen = state.heartbeat_generation;
            return Poll::Ready(Next::Heartbeat);
        }
        if self.listed_in != Some(state.wake_generation) {
            state.waiters.push(cx.waker().clone());
            self.listed_in = Some(state.wake_generation);
        }
        Poll::Pending
    }

    /// Moves the cursor to the oldest buffered event (the `skip` lag policy).
    pub fn skip_to_oldest(&mut self) {
        self.cursor = lock(&self.topic.state).first_seq;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.topic.subscribers_gauge.dec();
        self.topic.metrics.subscribers.dec();
        if self.topic.subscribers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.topic.emptied.fetch_add(1, Ordering::AcqRel);
            self.topic.unused.notify_one();
        }
    }
}

impl Drop for Topic {
    fn drop(&mut self) {
        let state = lock(&self.state);
        self.metrics.buffered_bytes.sub(state.bytes as i64);
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
