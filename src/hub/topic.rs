//! One topic: publishing into its replay ring ([`super::ring`]) and waking its subscribers,
//! its subscriber counts, upstream state, verdict, source and catch-ups.
//!
//! Events live once per topic, as shared [`Bytes`], in a ring bounded by events, bytes and
//! age. Publishing never waits for a subscriber (DESIGN.md invariants 2–4). The topic does not
//! decide its own life: its [`super::supervisor`] closes it, and nothing here calls back into
//! the registry. This module knows nothing of HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use prometheus::IntGauge;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::catch_up::{CatchUp, CatchUpPool, Replay};
use super::metrics::HubMetrics;
pub use super::ring::RingLimits;
use super::ring::{Entry, RingState};
use super::verdict::{OriginAnswer, Verdict};

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

    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Connecting,
            1 => Self::Streaming,
            2 => Self::Backoff,
            _ => Self::Closed,
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
    /// The peer relay the upstream reads from (cluster mode), `None` for the origin.
    pub source_peer: Option<String>,
    /// Other relays of the cluster subscribed here, count.
    pub peer_subscribers: usize,
}

/// One topic: its replay ring and its subscribers' wakers.
pub struct Topic {
    key: String,
    label: String,
    initial_last_event_id: Option<String>,
    pub(super) state: Mutex<RingState>,
    subscribers: AtomicUsize,
    /// When the last subscriber last left, so the idle grace counts from the last leave.
    emptied_at: Mutex<Instant>,
    /// Notified when the last subscriber leaves.
    unused: Notify,
    /// Kept open without subscribers (`topics.always_on`).
    pinned: AtomicBool,
    pub(super) subscribers_gauge: IntGauge,
    upstream_state: AtomicU8,
    /// What new subscribers are answered (see [`Verdict`]).
    verdict: watch::Sender<Verdict>,
    /// The hub's drain progress: 0 normally, rising to [`DRAIN_DONE`] over the drain window.
    pub(super) drain_progress: Arc<AtomicU32>,
    pub(super) metrics: Arc<HubMetrics>,
    /// How to ask the origin to replay after an id the ring lacks, and the relay-wide caps.
    catch_up: Option<(Replay, Arc<CatchUpPool>)>,
    /// Catch-ups under way, by the id they replay after.
    catch_ups: Mutex<HashMap<Box<str>, Arc<CatchUp>>>,
    /// Subscribers that are other relays of the cluster, count: while there are any, this
    /// relay reads the topic from the origin itself (so peers never subscribe in a circle).
    peer_subscribers: watch::Sender<usize>,
    /// Where the upstream reads from now (`None`: the origin), for `/topics`.
    source: Mutex<Option<std::net::SocketAddr>>,
}

/// What a new topic is made of, besides what the hub gives every topic.
pub(super) struct NewTopic {
    pub key: String,
    /// Its metrics label, resolved by the registry.
    pub label: String,
    pub initial_last_event_id: Option<String>,
    pub replay: Option<Replay>,
}

/// Drain progress at which every subscriber has been ended (slots are `u16`).
pub const DRAIN_DONE: u32 = 1 << 16;

impl Topic {
    pub(super) fn new(
        new: NewTopic,
        limits: RingLimits,
        subscribers_gauge: IntGauge,
        drain_progress: Arc<AtomicU32>,
        metrics: Arc<HubMetrics>,
        catch_up_pool: &Arc<CatchUpPool>,
    ) -> Self {
        Self {
            key: new.key,
            label: new.label,
            initial_last_event_id: new.initial_last_event_id,
            state: Mutex::new(RingState::new(limits)),
            subscribers: AtomicUsize::new(0),
            emptied_at: Mutex::new(Instant::now()),
            unused: Notify::new(),
            pinned: AtomicBool::new(false),
            subscribers_gauge,
            upstream_state: AtomicU8::new(UpstreamState::Connecting as u8),
            verdict: watch::Sender::new(Verdict::Pending),
            drain_progress,
            metrics,
            catch_up: new.replay.map(|replay| (replay, catch_up_pool.clone())),
            catch_ups: Mutex::new(HashMap::new()),
            peer_subscribers: watch::Sender::new(0),
            source: Mutex::new(None),
        }
    }

    /// Watches how many subscribers are other relays of the cluster.
    pub fn peer_subscribers(&self) -> watch::Receiver<usize> {
        self.peer_subscribers.subscribe()
    }

    /// Counts a subscriber that is another relay (`joined`), or one leaving.
    pub(super) fn count_peer(&self, joined: bool) {
        self.peer_subscribers
            .send_modify(|n| *n = if joined { *n + 1 } else { n.saturating_sub(1) });
    }

    /// Records where the upstream reads from (`None`: the origin; else the owning peer).
    pub fn set_source(&self, peer: Option<std::net::SocketAddr>) {
        *lock(&self.source) = peer;
    }

    /// The topic's way to ask its origin for a replay, and the caps, when it has one.
    pub(super) fn catch_up_source(&self) -> Option<(Replay, Arc<CatchUpPool>)> {
        self.catch_up.clone()
    }

    /// The catch-ups under way, by the id they replay after.
    pub(super) fn catch_ups(&self) -> &Mutex<HashMap<Box<str>, Arc<CatchUp>>> {
        &self.catch_ups
    }

    /// Ready when the ring's head moved past `seen` (which it then records) or the topic
    /// closed; otherwise registers the task (once per wake generation, `listed_in`) to be
    /// woken by the next publish, tick or close.
    pub(super) fn poll_changed(
        &self,
        seen: &mut Option<u64>,
        listed_in: &mut Option<u64>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let mut state = lock(&self.state);
        let head = state.next_seq();
        if *seen != Some(head) || state.closed.is_some() {
            *seen = Some(head);
            return Poll::Ready(());
        }
        if *listed_in != Some(state.wake_generation) {
            state.waiters.push(cx.waker().clone());
            *listed_in = Some(state.wake_generation);
        }
        Poll::Pending
    }

    /// The topic key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The label used in per-topic metrics (possibly `other`).
    pub fn label(&self) -> &str {
        &self.label
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

    /// Records the upstream subscription's state (set by the upstream follower).
    pub fn set_upstream_state(&self, state: UpstreamState) {
        self.upstream_state.store(state as u8, Ordering::Relaxed);
    }

    /// Decides that subscribers get an event stream, unless the origin's answer is in already
    /// (set by the upstream follower when a stream opens or a retried failure happens).
    pub fn accept(&self) {
        self.verdict.send_if_modified(|verdict| {
            let pending = *verdict == Verdict::Pending;
            if pending {
                *verdict = Verdict::Stream;
            }
            pending
        });
    }

    /// Records the origin's final answer for anyone still waiting or arriving before the topic
    /// is gone. Called by the topic's supervisor only, before it closes the topic.
    pub(super) fn conclude(&self, answer: Arc<OriginAnswer>) {
        self.verdict.send_replace(Verdict::Final(answer));
    }

    /// Resolves once the origin's answer is known: [`Verdict::Stream`] or
    /// [`Verdict::Final`], never [`Verdict::Pending`].
    pub async fn verdict(&self) -> Verdict {
        let mut verdict = self.verdict.subscribe();
        let decided = verdict.wait_for(|v| *v != Verdict::Pending).await;
        // The sender lives in this topic, which `self` borrows: it cannot be dropped.
        decided.map_or(Verdict::Stream, |v| v.clone())
    }

    /// Appends an encoded event (`id`: the event's own `id:` field) to the ring, evicts what
    /// exceeds the bounds and wakes every waiting subscriber. Never waits for a subscriber.
    pub fn publish(&self, id: Option<&str>, frame: Bytes) {
        let wakers = {
            let mut state = lock(&self.state);
            if state.closed.is_some() {
                return;
            }
            if state.overlap {
                if id.is_some_and(|id| state.holds(id, &frame)) {
                    self.metrics.duplicates_dropped.inc();
                    return;
                }
                state.overlap = false;
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

    /// Says that the upstream now reads from another source, resuming after the newest id the
    /// ring holds (a cluster's ownership move): the new source may send again events this ring
    /// has (an owner that fell back to its oldest buffered event, an origin that ignored
    /// `Last-Event-ID`). Until the first event the ring does not hold (or one without an id),
    /// [`Self::publish`] drops each event the ring holds, the same id with the same encoded
    /// bytes, counted in `sse_relay_upstream_duplicates_dropped_total`: no subscriber gets an
    /// event twice that the ring still holds (an overlap reaching back past the ring's oldest
    /// event ends the guard at its first event, and passes). An event that reuses an id with
    /// other data is new: it passes and ends the guard, so an origin that repeats ids loses
    /// nothing. The guard stays on across reconnects until that first new event.
    pub fn expect_overlap(&self) {
        lock(&self.state).overlap = true;
    }

    /// Marks the topic closed and ends every subscriber's stream (after the frames already in
    /// the ring). Called by the topic's supervisor only.
    pub(super) fn close(&self, reason: CloseReason) {
        let wakers = {
            let mut state = lock(&self.state);
            state.closed.get_or_insert(reason);
            state.take_waiters()
        };
        self.set_upstream_state(UpstreamState::Closed);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// True once the topic was closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed.is_some()
    }

    /// Resolves once no subscriber has been attached for `grace`, counted from the last leave
    /// (a subscriber who comes and goes meanwhile restarts it). Never resolves for an
    /// always-on topic. The caller still checks under the registry lock before retiring.
    pub(super) async fn idle_for(&self, grace: Duration) {
        loop {
            if self.is_pinned() {
                std::future::pending::<()>().await;
            }
            while self.subscriber_count() > 0 {
                self.unused.notified().await;
            }
            let left = *lock(&self.emptied_at);
            tokio::time::sleep_until(left + grace).await;
            if *lock(&self.emptied_at) == left && self.subscriber_count() == 0 {
                return;
            }
        }
    }

    /// A heartbeat tick: evicts events past their age and wakes every waiting subscriber, which
    /// sends a heartbeat if it sent nothing since the previous tick.
    pub(super) fn tick(&self) {
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
    pub(super) fn wake_all(&self) {
        let wakers = lock(&self.state).take_waiters();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// A point-in-time view.
    pub fn snapshot(&self) -> TopicSnapshot {
        let state = lock(&self.state);
        let upstream = UpstreamState::from_u8(self.upstream_state.load(Ordering::Relaxed));
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
            source_peer: lock(&self.source).map(|p| p.to_string()),
            peer_subscribers: *self.peer_subscribers.borrow(),
        }
    }

    /// Keeps the topic open without subscribers (see [`Topic::idle_for`]).
    pub(super) fn pin(&self) {
        self.pinned.store(true, Ordering::Release);
    }

    /// True for an always-on topic.
    pub(super) fn is_pinned(&self) -> bool {
        self.pinned.load(Ordering::Acquire)
    }

    /// Counts one more subscriber (under the registry lock, so retirement cannot slip in).
    pub(super) fn add_subscriber(&self) {
        self.subscribers.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts one subscriber less; the last one's leave starts the idle grace.
    pub(super) fn remove_subscriber(&self) {
        self.subscribers_gauge.dec();
        self.metrics.subscribers.dec();
        if self.subscribers.fetch_sub(1, Ordering::AcqRel) == 1 {
            *lock(&self.emptied_at) = Instant::now();
            self.unused.notify_one();
        }
    }
}

impl Drop for Topic {
    fn drop(&mut self) {
        let state = lock(&self.state);
        self.metrics.buffered_bytes.sub(state.bytes as i64);
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (every critical
/// section here leaves the data consistent).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
