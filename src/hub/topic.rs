//! One topic: what it is (key, label, the id its upstream opened with), its replay ring
//! ([`super::ring`]), who is attached ([`super::presence`]), its catch-ups, and what the
//! upstream follower reports of it (state, source, the verdict new subscribers get, the
//! origin's `retry:` as an encoded frame).
//!
//! Events live once per topic, as shared [`Bytes`], in the ring; publishing never waits for a
//! subscriber (docs/architecture.md, invariants 2–4). The topic does not decide its own life:
//! its [`super::supervisor`] closes it, and nothing here calls back into the registry. This
//! module knows nothing of HTTP.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prometheus::IntGauge;
use tokio::sync::watch;

use crate::compress::CompressionSettings;

use super::catch_up::{CatchUp, CatchUpPool, CatchUps, Replay};
use super::lock::lock;
use super::metrics::HubMetrics;
use super::presence::Presence;
use super::request::RequestLife;
use super::ring::{CloseReason, Ring, RingLimits};
use super::verdict::{OriginAnswer, Verdict};

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
    /// The topic key, for the reader's own use (e.g. the topic's owner in a cluster); never
    /// serialized: the document shows [`Self::shown`] under `key`.
    #[serde(skip)]
    pub key: String,
    /// The key as shown ([`Topic::shown`]).
    #[serde(rename = "key")]
    pub shown: String,
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

/// One topic: its replay ring, who is attached, and what its upstream reports.
pub struct Topic {
    key: String,
    /// The key as shown when that differs from the key (see [`Topic::shown`]).
    shown: Option<Box<str>>,
    label: String,
    initial_last_event_id: Option<String>,
    /// Shared with the topic's catch-ups, which read it while they wait for the origin.
    ring: Arc<Ring>,
    presence: Presence,
    upstream_state: AtomicU8,
    /// What new subscribers are answered (see [`Verdict`]).
    verdict: watch::Sender<Verdict>,
    /// The hub's drain progress: 0 normally, rising to [`DRAIN_DONE`] over the drain window.
    drain_progress: Arc<AtomicU32>,
    metrics: Arc<HubMetrics>,
    /// Catch-ups of resumes the ring cannot serve: how to ask the origin, those under way.
    catch_ups: CatchUps,
    /// Subscribers that are other relays of the cluster, count: while there are any, this
    /// relay reads the topic from the origin itself (so peers never subscribe in a circle).
    peer_subscribers: watch::Sender<usize>,
    /// Where the upstream reads from now (`None`: the origin), for `/topics`.
    source: Mutex<Option<std::net::SocketAddr>>,
    /// A request stream's life (`None`: a shared subscription).
    life: Option<Box<RequestLife>>,
    /// Set once cancelling the topic was asked for ([`Topic::cancel`]); its supervisor waits
    /// on `cancel_asked`.
    cancel_requested: std::sync::atomic::AtomicBool,
    cancel_asked: tokio::sync::Notify,
}

/// What a new topic is made of, besides what the hub gives every topic.
pub(super) struct NewTopic {
    pub key: String,
    pub shown: Option<String>,
    /// Its metrics label, resolved by the registry.
    pub label: String,
    pub initial_last_event_id: Option<String>,
    pub replay: Option<Replay>,
    pub life: Option<RequestLife>,
}

/// What the hub gives every topic it opens.
pub(super) struct HubShare<'a> {
    pub limits: RingLimits,
    /// How its frames are compressed for subscribers that ask ([`crate::compress`]).
    pub compression: CompressionSettings,
    /// The per-topic subscriber gauge, by the topic's label.
    pub subscribers_gauge: IntGauge,
    pub drain_progress: &'a Arc<AtomicU32>,
    pub metrics: &'a Arc<HubMetrics>,
    pub catch_up_pool: &'a Arc<CatchUpPool>,
}

/// Drain progress at which every subscriber has been ended (slots are `u16`).
pub const DRAIN_DONE: u32 = 1 << 16;

impl Topic {
    pub(super) fn new(new: NewTopic, hub: HubShare<'_>) -> Self {
        let metrics = hub.metrics;
        let ring = Arc::new(Ring::new(
            hub.limits,
            hub.compression,
            new.key.len() + new.shown.as_ref().map_or(0, String::len),
            metrics.buffered_bytes.clone(),
            metrics.duplicates_dropped.clone(),
        ));
        Self {
            key: new.key,
            shown: new.shown.map(String::into_boxed_str),
            label: new.label,
            initial_last_event_id: new.initial_last_event_id,
            catch_ups: CatchUps::new(new.replay, hub.catch_up_pool, &ring, metrics),
            ring,
            presence: Presence::new(metrics.subscribers.clone(), hub.subscribers_gauge),
            upstream_state: AtomicU8::new(UpstreamState::Connecting as u8),
            verdict: watch::Sender::new(Verdict::Pending),
            drain_progress: hub.drain_progress.clone(),
            metrics: metrics.clone(),
            peer_subscribers: watch::Sender::new(0),
            source: Mutex::new(None),
            life: new.life.map(Box::new),
            cancel_requested: std::sync::atomic::AtomicBool::new(false),
            cancel_asked: tokio::sync::Notify::new(),
        }
    }

    /// A request stream's life (`None`: a shared subscription).
    pub fn life(&self) -> Option<&RequestLife> {
        self.life.as_deref()
    }

    /// True for a request stream in scope `scope` (see [`RequestLife::scope`]).
    pub fn in_scope(&self, scope: &str) -> bool {
        self.life().is_some_and(|life| life.scope == scope)
    }

    /// True when the ring holds an event with id `id`.
    pub fn holds_event(&self, id: &str) -> bool {
        let [seq] = self.ring.seqs_of([Some(id)]);
        seq.is_some()
    }

    /// Asks the topic's supervisor to end it now, dropping its upstream (a request stream's
    /// `DELETE`): its subscribers get the frames already in the ring, then the end.
    pub(super) fn cancel(&self) {
        self.cancel_requested.store(true, Ordering::Release);
        self.cancel_asked.notify_one();
    }

    /// True once [`Topic::cancel`] was called (so an upstream that is being dropped can tell a
    /// cancellation from its viewers leaving).
    pub fn is_cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::Acquire)
    }

    /// Resolves once cancelling was asked for (at once if it was already).
    pub(super) async fn cancel_asked(&self) {
        if !self.is_cancel_requested() {
            self.cancel_asked.notified().await;
        }
    }

    /// The replay ring.
    pub(super) fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Who is attached.
    pub(super) fn presence(&self) -> &Presence {
        &self.presence
    }

    /// The hub's metrics.
    pub(super) fn metrics(&self) -> &HubMetrics {
        &self.metrics
    }

    /// True once the drain has reached `slot` (a subscriber's place in the drain order).
    pub(super) fn drained_past(&self, slot: u16) -> bool {
        self.drain_progress.load(Ordering::Relaxed) > u32::from(slot)
    }

    /// Starts (or joins) a catch-up from `wanted` for a subscriber the ring cannot serve;
    /// `head` is the ring's next sequence number. `None`: the subscriber gets the gap signal.
    pub(super) fn start_catch_up(&self, wanted: &str, head: u64) -> Option<Arc<CatchUp>> {
        self.catch_ups.start(wanted, head)
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

    /// The topic key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key as `/topics`, `/stats` and the logs show it: with a per-user topic's claims
    /// hashed (docs/security.md, "The admin port"); the key itself for other topics.
    pub fn shown(&self) -> &str {
        self.shown.as_deref().unwrap_or(&self.key)
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
        self.presence.count()
    }

    /// Records the upstream subscription's state (set by the upstream follower).
    pub fn set_upstream_state(&self, state: UpstreamState) {
        self.upstream_state.store(state as u8, Ordering::Relaxed);
    }

    /// Decides that subscribers are answered with an event stream, unless the origin's final
    /// answer is in already (set by the upstream follower when a stream opens or a failure it
    /// retries happens).
    pub fn answer_with_stream(&self) {
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
        self.ring.publish(id, frame);
    }

    /// Records the origin's `retry:` as its encoded frame (the upstream encodes it; the hub
    /// holds frames): the topic's subscribers get the current one at the start of their stream
    /// ([`Self::retry`]) and a change in order with the events, even when no event follows
    /// (see [`Ring::publish_retry`]). The same value again changes nothing.
    pub fn publish_retry(&self, frame: Bytes) {
        self.ring.publish_retry(frame);
    }

    /// The origin's current `retry:` frame, for the start of a subscriber's stream (`None`:
    /// the origin set none). Asked after the subscriber attached, it misses no change: a later
    /// one reaches the subscriber through the ring.
    pub fn retry(&self) -> Option<Bytes> {
        self.ring.retry()
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
        self.ring.expect_overlap();
    }

    /// Marks the topic closed and ends every subscriber's stream (after the frames already in
    /// the ring). Called by the topic's supervisor only.
    pub(super) fn close(&self, reason: CloseReason) {
        self.ring.close(reason);
        self.set_upstream_state(UpstreamState::Closed);
    }

    /// True once the topic was closed.
    pub fn is_closed(&self) -> bool {
        self.ring.is_closed()
    }

    /// A heartbeat tick (see [`Ring::tick`]).
    pub(super) fn tick(&self) {
        self.ring.tick();
    }

    /// Wakes every waiting subscriber (drain progress moved).
    pub(super) fn wake_all(&self) {
        self.ring.wake_all();
    }

    /// A point-in-time view.
    pub fn snapshot(&self) -> TopicSnapshot {
        let ring = self.ring.figures();
        let upstream = UpstreamState::from_u8(self.upstream_state.load(Ordering::Relaxed));
        TopicSnapshot {
            key: self.key.clone(),
            shown: self.shown().to_string(),
            label: self.label.clone(),
            subscribers: self.subscriber_count(),
            upstream: upstream.as_str(),
            last_event_id: ring.last_event_id,
            ring_events: ring.events,
            ring_bytes: ring.bytes,
            events_received: ring.received,
            always_on: self.presence.is_pinned(),
            source_peer: lock(&self.source).map(|p| p.to_string()),
            peer_subscribers: *self.peer_subscribers.borrow(),
        }
    }

    /// Counts one subscriber less; the last one's leave starts the idle grace.
    pub(super) fn remove_subscriber(&self) {
        self.presence.remove();
    }

    /// Resolves once no subscriber has been attached for `grace` (see [`Presence::idle_for`]).
    pub(super) async fn idle_for(&self, grace: Duration) {
        self.presence.idle_for(grace).await;
    }
}
