//! The hub: the registry of topics, and each topic's replay ring and subscriber wakeups.
//!
//! One [`Topic`] per topic key, created by the first subscriber (which starts exactly one
//! upstream task through the [`TopicOpener`]) and removed after an idle grace period once the
//! last subscriber left. A topic's events live once, as shared encoded [`Bytes`], in a bounded
//! ring (events, bytes, age); a [`Subscription`] is a cursor into that ring plus a waker slot, so
//! per-subscriber state is O(1) and a slow subscriber only falls behind (DESIGN.md invariants
//! 1–4). This module knows nothing of HTTP and never blocks the upstream on a subscriber.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

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

/// Settings of the hub.
#[derive(Debug, Clone, Copy)]
pub struct HubSettings {
    /// Replay ring bounds per topic.
    pub ring: RingLimits,
    /// How long a topic outlives its last subscriber.
    pub idle_grace: Duration,
    /// Interval of heartbeat ticks (and of age-based eviction).
    pub heartbeat_interval: Duration,
}

/// Starts the upstream subscription of a newly created topic (called once per topic).
pub type TopicOpener = Arc<dyn Fn(Arc<Topic>) + Send + Sync>;

/// Why a topic ended its subscribers' streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The origin answered 204 No Content: the topic is over.
    OriginClosed,
    /// The relay is draining (shutting down).
    Draining,
}

/// The topic registry.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    settings: HubSettings,
    opener: TopicOpener,
    metrics: Arc<Metrics>,
    draining: AtomicBool,
}

/// One topic: its replay ring, its subscribers' wakers and its lifecycle signals.
pub struct Topic {
    key: String,
    upstream: String,
    initial_last_event_id: Option<String>,
    state: Mutex<RingState>,
    subscribers: AtomicUsize,
    unused: Notify,
    ended: tokio::sync::watch::Sender<bool>,
    hub: Weak<HubInner>,
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
}

impl Hub {
    /// Creates a hub and starts its heartbeat ticker (which stops when the hub is dropped).
    /// Must be called within a tokio runtime.
    pub fn new(settings: HubSettings, metrics: Arc<Metrics>, opener: TopicOpener) -> Self {
        let inner = Arc::new(HubInner {
            topics: Mutex::new(HashMap::new()),
            settings,
            opener,
            metrics,
            draining: AtomicBool::new(false),
        });
        tokio::spawn(run_ticker(
            Arc::downgrade(&inner),
            settings.heartbeat_interval,
        ));
        Self { inner }
    }

    /// Subscribes to the topic `key`, creating it (and its one upstream subscription to
    /// `upstream`) if needed. `last_event_id` positions the cursor just after that event if the
    /// ring still holds it; otherwise at the oldest buffered event (nothing that could be kept
    /// is lost). A new topic also passes it to its upstream, so the origin can replay.
    ///
    /// # Errors
    /// [`Draining`] once [`Hub::drain`] was called.
    pub fn subscribe(
        &self,
        key: &str,
        upstream: &str,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, Draining> {
        let (topic, created) = {
            let mut topics = lock(&self.inner.topics);
            if self.inner.draining.load(Ordering::Acquire) {
                return Err(Draining);
            }
            let (topic, created) = match topics.get(key) {
                Some(t) => (t.clone(), false),
                None => {
                    let t = Arc::new(Topic::new(key, upstream, last_event_id, &self.inner));
                    topics.insert(key.to_string(), t.clone());
                    self.inner.metrics.topics.inc();
                    (t, true)
                }
            };
            topic.subscribers.fetch_add(1, Ordering::AcqRel);
            (topic, created)
        };
        self.inner.metrics.subscribers.inc();
        if created {
            (self.inner.opener)(topic.clone());
        }
        let cursor = topic.start_cursor(last_event_id, &self.inner.metrics);
        let heartbeat_seen = lock(&topic.state).heartbeat_generation;
        Ok(Subscription {
            topic,
            cursor,
            listed_in: None,
            heartbeat_seen,
            metrics: self.inner.metrics.clone(),
        })
    }

    /// Starts draining: new subscriptions are refused and every topic ends its subscribers'
    /// streams with [`CloseReason::Draining`].
    pub fn drain(&self) {
        let topics: Vec<_> = {
            let mut map = lock(&self.inner.topics);
            self.inner.draining.store(true, Ordering::Release);
            map.drain().map(|(_, t)| t).collect()
        };
        for topic in topics {
            self.inner.metrics.topics.dec();
            topic.close(CloseReason::Draining);
        }
    }

    /// Number of open topics.
    pub fn topic_count(&self) -> usize {
        lock(&self.inner.topics).len()
    }
}

/// Returned by [`Hub::subscribe`] while the relay drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the relay is draining")]
pub struct Draining;

async fn run_ticker(hub: Weak<HubInner>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        let topics: Vec<_> = lock(&hub.topics).values().cloned().collect();
        drop(hub);
        for topic in topics {
            topic.tick();
        }
    }
}

impl Topic {
    fn new(key: &str, upstream: &str, last_event_id: Option<&str>, hub: &Arc<HubInner>) -> Self {
        Self {
            key: key.to_string(),
            upstream: upstream.to_string(),
            initial_last_event_id: last_event_id.map(str::to_string),
            state: Mutex::new(RingState {
                entries: VecDeque::new(),
                first_seq: 0,
                bytes: 0,
                limits: hub.settings.ring,
                waiters: Vec::new(),
                wake_generation: 0,
                heartbeat_generation: 0,
                closed: None,
            }),
            subscribers: AtomicUsize::new(0),
            unused: Notify::new(),
            ended: tokio::sync::watch::Sender::new(false),
            hub: Arc::downgrade(hub),
        }
    }

    /// The topic key.
    pub fn key(&self) -> &str {
        &self.key
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

    /// Appends an encoded event (`id`: the event's own `id:` field) to the ring, evicts what
    /// exceeds the bounds and wakes every waiting subscriber. Never waits for a subscriber.
    pub fn publish(&self, id: Option<&str>, frame: Bytes) {
        let wakers = {
            let mut state = lock(&self.state);
            if state.closed.is_some() {
                return;
            }
            state.bytes += frame.len();
            state.entries.push_back(Entry {
                id: id.map(Arc::from),
                frame,
                at: Instant::now(),
            });
            state.evict(Instant::now());
            state.take_waiters()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Ends every subscriber's stream (after the frames already in the ring) and removes the
    /// topic from the hub so the next subscriber opens a fresh one.
    pub fn close(&self, reason: CloseReason) {
        if let Some(hub) = self.hub.upgrade() {
            self.unregister(&hub, &mut lock(&hub.topics));
        }
        let wakers = {
            let mut state = lock(&self.state);
            state.closed.get_or_insert(reason);
            state.take_waiters()
        };
        self.ended.send_replace(true);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Resolves once the topic was closed (by the origin or by draining).
    pub async fn closed(&self) {
        let mut ended = self.ended.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we are borrowed.
        let _ = ended.wait_for(|ended| *ended).await;
    }

    /// True once [`Topic::close`] ran.
    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed.is_some()
    }

    /// Resolves when the topic has had no subscriber for the idle grace period, after removing
    /// it from the hub (atomically with the check, so a subscriber arriving meanwhile keeps it).
    /// The caller then ends the upstream subscription.
    pub async fn retired(&self) {
        let Some(grace) = self.hub.upgrade().map(|h| h.settings.idle_grace) else {
            return;
        };
        loop {
            while self.subscriber_count() > 0 {
                self.unused.notified().await;
            }
            tokio::time::sleep(grace).await;
            let Some(hub) = self.hub.upgrade() else {
                return;
            };
            let mut topics = lock(&hub.topics);
            if self.subscriber_count() == 0 {
                self.unregister(&hub, &mut topics);
                lock(&self.state)
                    .closed
                    .get_or_insert(CloseReason::Draining);
                return;
            }
        }
    }

    /// Removes this topic (not a newer one under the same key) from the registry.
    fn unregister(&self, hub: &HubInner, topics: &mut HashMap<String, Arc<Topic>>) {
        let same = topics
            .get(&self.key)
            .is_some_and(|t| std::ptr::eq(Arc::as_ptr(t), self));
        if same {
            topics.remove(&self.key);
            hub.metrics.topics.dec();
        }
    }

    fn tick(&self) {
        let wakers = {
            let mut state = lock(&self.state);
            state.heartbeat_generation += 1;
            state.evict(Instant::now());
            state.take_waiters()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    fn start_cursor(&self, last_event_id: Option<&str>, metrics: &Metrics) -> u64 {
        let state = lock(&self.state);
        let next = state.next_seq();
        let Some(wanted) = last_event_id else {
            return next;
        };
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
}

impl RingState {
    fn next_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64
    }

    fn evict(&mut self, now: Instant) {
        while self.entries.len() > 1 {
            let front = &self.entries[0];
            let too_old = now.saturating_duration_since(front.at) > self.limits.max_age;
            if self.entries.len() <= self.limits.max_events
                && self.bytes <= self.limits.max_bytes
                && !too_old
            {
                break;
            }
            self.pop_front();
        }
        if self.entries.len() == 1
            && now.saturating_duration_since(self.entries[0].at) > self.limits.max_age
        {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.frame.len();
            self.first_seq += 1;
        }
    }

    fn take_waiters(&mut self) -> Vec<Waker> {
        if self.waiters.is_empty() {
            return Vec::new();
        }
        self.wake_generation += 1;
        std::mem::take(&mut self.waiters)
    }
}

/// What a subscriber gets next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// An encoded event frame (shared by all subscribers).
    Frame(Bytes),
    /// Nothing was sent since the last heartbeat tick: send a heartbeat.
    Heartbeat,
    /// The cursor fell out of the ring (events were evicted before this subscriber read them).
    Lagged,
    /// The topic ended.
    Closed(CloseReason),
}

/// One subscriber's place in a topic: a cursor and a waker slot, nothing per event.
/// Dropping it detaches the subscriber (and may start the topic's idle grace period).
pub struct Subscription {
    topic: Arc<Topic>,
    cursor: u64,
    /// `wake_generation` at which this subscriber's waker was listed, if any.
    listed_in: Option<u64>,
    heartbeat_seen: u64,
    metrics: Arc<Metrics>,
}

impl Subscription {
    /// The topic subscribed to.
    pub fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }

    /// Polls for the next item; registers the task's waker when nothing is ready.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        let mut state = lock(&self.topic.state);
        if self.cursor < state.first_seq {
            return Poll::Ready(Next::Lagged);
        }
        let offset = (self.cursor - state.first_seq) as usize;
        if let Some(entry) = state.entries.get(offset) {
            self.cursor += 1;
            self.heartbeat_seen = state.heartbeat_generation;
            return Poll::Ready(Next::Frame(entry.frame.clone()));
        }
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
        self.metrics.subscribers.dec();
        if self.topic.subscribers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.topic.unused.notify_one();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::sync::atomic::AtomicUsize;

    fn hub(max_events: usize, opened: Arc<AtomicUsize>) -> Hub {
        let metrics = Arc::new(Metrics::new(&prometheus::Registry::new()).unwrap());
        let settings = HubSettings {
            ring: RingLimits {
                max_events,
                max_bytes: 1 << 20,
                max_age: Duration::from_secs(60),
            },
            idle_grace: Duration::from_millis(50),
            heartbeat_interval: Duration::from_secs(3600),
        };
        let opener: TopicOpener = Arc::new(move |_| {
            opened.fetch_add(1, Ordering::SeqCst);
        });
        Hub::new(settings, metrics, opener)
    }

    async fn next(sub: &mut Subscription) -> Next {
        poll_fn(|cx| sub.poll_next(cx)).await
    }

    #[tokio::test]
    async fn one_topic_opened_for_many_subscribers() {
        let opened = Arc::new(AtomicUsize::new(0));
        let hub = hub(8, opened.clone());
        let subs: Vec<_> = (0..10)
            .map(|_| hub.subscribe("k", "http://o/k", None).unwrap())
            .collect();
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        assert_eq!(subs[0].topic().subscriber_count(), 10);
    }

    #[tokio::test]
    async fn subscribers_share_the_same_frame_buffer() {
        let hub = hub(8, Arc::default());
        let mut a = hub.subscribe("k", "u", None).unwrap();
        let mut b = hub.subscribe("k", "u", None).unwrap();
        a.topic()
            .publish(Some("1"), Bytes::from_static(b"id: 1\ndata: x\n\n"));
        let (Next::Frame(fa), Next::Frame(fb)) = (next(&mut a).await, next(&mut b).await) else {
            panic!("expected frames");
        };
        assert_eq!(
            fa.as_ptr(),
            fb.as_ptr(),
            "one buffer, no per-subscriber copy"
        );
    }

    #[tokio::test]
    async fn resume_starts_after_the_last_event_id() {
        let hub = hub(8, Arc::default());
        let first = hub.subscribe("k", "u", None).unwrap();
        for i in 1..=4 {
            first
                .topic()
                .publish(Some(&i.to_string()), Bytes::from(format!("{i}")));
        }
        let mut resumed = hub.subscribe("k", "u", Some("2")).unwrap();
        assert_eq!(next(&mut resumed).await, Next::Frame(Bytes::from("3")));
        assert_eq!(next(&mut resumed).await, Next::Frame(Bytes::from("4")));
    }

    #[tokio::test]
    async fn slow_subscriber_falls_out_of_the_ring() {
        let hub = hub(2, Arc::default());
        let mut slow = hub.subscribe("k", "u", None).unwrap();
        for i in 0..5 {
            slow.topic().publish(None, Bytes::from(format!("{i}")));
        }
        assert_eq!(next(&mut slow).await, Next::Lagged);
    }

    #[tokio::test]
    async fn topic_retires_after_grace_unless_a_subscriber_returns() {
        let opened = Arc::new(AtomicUsize::new(0));
        let hub = hub(8, opened.clone());
        let sub = hub.subscribe("k", "u", None).unwrap();
        let topic = sub.topic().clone();
        drop(sub);
        let again = hub.subscribe("k", "u", None).unwrap();
        let retired = tokio::time::timeout(Duration::from_millis(200), topic.retired()).await;
        assert!(retired.is_err(), "kept while a subscriber is attached");
        drop(again);
        tokio::time::timeout(Duration::from_secs(2), topic.retired())
            .await
            .expect("retired after grace");
        assert_eq!(hub.topic_count(), 0);
        assert_eq!(opened.load(Ordering::SeqCst), 1);
    }
}
