//! The hub: the registry of topics. Get-or-subscribe (the first subscriber of a topic key
//! starts exactly one upstream task through the [`TopicOpener`]), retirement after the idle
//! grace period, the heartbeat ticker, and the spread-out drain.
//!
//! The per-topic ring and cursors live in [`crate::topic`]. This module knows nothing of HTTP
//! and never blocks the upstream on a subscriber (DESIGN.md invariant 1).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::topic::{lock, TopicInit, DRAIN_DONE};
pub use crate::topic::{
    CloseReason, Delivery, Next, RingLimits, Subscription, Topic, TopicSnapshot, UpstreamState,
};

/// Settings of the hub.
#[derive(Debug, Clone, Copy)]
pub struct HubSettings {
    /// Replay ring bounds per topic.
    pub ring: RingLimits,
    /// How long a topic outlives its last subscriber.
    pub idle_grace: Duration,
    /// How long a topic key the origin closed (204) refuses new subscribers with
    /// [`Refused::OriginClosed`] (zero: not at all).
    pub origin_closed_ttl: Duration,
    /// Interval of heartbeat ticks (and of age-based eviction).
    pub heartbeat_interval: Duration,
    /// Budget of bytes in all rings together; past it new subscribers are refused.
    pub max_buffered_bytes: usize,
    /// Topics open at once; past it subscribers of new topics are refused (each topic holds an
    /// upstream connection and a ring), count.
    pub max_topics: usize,
}

/// Starts the upstream subscription of a newly created topic (called once per topic).
pub type TopicOpener = Arc<dyn Fn(Arc<Topic>) + Send + Sync>;

/// The topic registry (cheap to clone).
#[derive(Clone)]
pub struct Hub {
    shared: Arc<HubShared>,
}

/// What the hub's handles and its topics share.
pub struct HubShared {
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    settings: HubSettings,
    opener: TopicOpener,
    pub(crate) metrics: Arc<Metrics>,
    draining: AtomicBool,
    /// Topic keys the origin closed with 204, and when (bounded by [`MAX_CLOSED_KEYS`]).
    origin_closed: Mutex<HashMap<String, Instant>>,
    /// 0 normally; rises to [`DRAIN_DONE`] over the drain window.
    drain_progress: Arc<AtomicU32>,
}

/// Why [`Hub::subscribe`] refused a subscriber. Either way the client should be told to
/// retry later (with a 200 stream, so a browser's EventSource does retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The relay is draining.
    #[error("the relay is draining")]
    Draining,
    /// The replay rings hold more than `limits.max_buffered_bytes`.
    #[error("over the buffer budget")]
    OverBudget,
    /// A new topic would exceed `limits.max_topics`.
    #[error("too many topics")]
    TooManyTopics,
    /// The origin closed this topic (204) less than `topics.origin_closed_ttl_ms` ago: the
    /// client should be told 204 too, so it stops reconnecting.
    #[error("the origin closed this topic")]
    OriginClosed,
}

/// Topic keys remembered as closed by their origin, at most, count (older ones are forgotten
/// first when full).
pub const MAX_CLOSED_KEYS: usize = 4096;

/// What [`Hub::open`] does to the topic it gets.
#[derive(Clone, Copy)]
enum Attach {
    /// Counts one more subscriber.
    Subscriber,
    /// Keeps it open without subscribers.
    Pin,
}

/// Steps in which the drain window ends streams.
const DRAIN_STEPS: u32 = 64;

impl Hub {
    /// Creates a hub and starts its heartbeat ticker (which stops when the hub is dropped).
    /// Must be called within a tokio runtime.
    pub fn new(settings: HubSettings, metrics: Arc<Metrics>, opener: TopicOpener) -> Self {
        let shared = Arc::new(HubShared {
            topics: Mutex::new(HashMap::new()),
            settings,
            opener,
            metrics,
            draining: AtomicBool::new(false),
            origin_closed: Mutex::new(HashMap::new()),
            drain_progress: Arc::new(AtomicU32::new(0)),
        });
        tokio::spawn(run_ticker(
            Arc::downgrade(&shared),
            settings.heartbeat_interval,
        ));
        Self { shared }
    }

    /// Subscribes to the topic `key`, creating it (and its one upstream subscription to
    /// `upstream`) if needed; `label` names it in per-topic metrics (e.g. the request path).
    /// `last_event_id` positions the cursor (see [`Topic::initial_last_event_id`] and
    /// [`Subscription`]); a new topic also passes it upstream, so the origin can replay.
    ///
    /// # Errors
    /// [`Refused::Draining`] once [`Hub::drain`] was called; [`Refused::OverBudget`] while the
    /// rings hold more than the buffer budget, [`Refused::TooManyTopics`] for a new topic past
    /// the topic cap (both counted in `sse_relay_subscribers_shed_total`).
    pub fn subscribe(
        &self,
        key: &str,
        label: &str,
        upstream: &str,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, Refused> {
        let shared = &self.shared;
        let over = shared.metrics.buffered_bytes.get() > shared.settings.max_buffered_bytes as i64;
        if over {
            shared.metrics.subscribers_shed.inc();
            return Err(Refused::OverBudget);
        }
        if shared.recently_closed(key) {
            return Err(Refused::OriginClosed);
        }
        let topic = self.open(key, label, upstream, last_event_id, Attach::Subscriber)?;
        Ok(topic.attach(last_event_id))
    }

    /// Opens the topic `key` now and keeps it open, with or without subscribers, until the
    /// origin closes it (204) or the relay drains: `topics.always_on`, so its replay buffer
    /// fills before the first client comes (DESIGN.md invariant 1).
    ///
    /// # Errors
    /// [`Refused::Draining`] or [`Refused::TooManyTopics`], as for [`Hub::subscribe`].
    pub fn open_always_on(&self, key: &str, label: &str, upstream: &str) -> Result<(), Refused> {
        self.open(key, label, upstream, None, Attach::Pin).map(drop)
    }

    /// Gets or creates the topic `key` and, under the registry lock (so retirement cannot slip
    /// in between), counts a subscriber or pins it; starts the upstream of a new topic.
    fn open(
        &self,
        key: &str,
        label: &str,
        upstream: &str,
        last_event_id: Option<&str>,
        attach: Attach,
    ) -> Result<Arc<Topic>, Refused> {
        let shared = &self.shared;
        let (topic, created) = {
            let mut topics = lock(&shared.topics);
            if shared.draining.load(Ordering::Acquire) {
                return Err(Refused::Draining);
            }
            let (topic, created) = match topics.get(key) {
                Some(t) => (t.clone(), false),
                None if topics.len() >= shared.settings.max_topics => {
                    shared.metrics.subscribers_shed.inc();
                    return Err(Refused::TooManyTopics);
                }
                None => {
                    let (label, subscribers_gauge) = shared.metrics.topic_label(label);
                    let t = Arc::new(Topic::new(TopicInit {
                        key,
                        label,
                        upstream,
                        last_event_id,
                        limits: shared.settings.ring,
                        idle_grace: shared.settings.idle_grace,
                        subscribers_gauge,
                        drain_progress: shared.drain_progress.clone(),
                        metrics: shared.metrics.clone(),
                        hub: Arc::downgrade(shared),
                    }));
                    topics.insert(key.to_string(), t.clone());
                    shared.metrics.topics.inc();
                    (t, true)
                }
            };
            match attach {
                Attach::Subscriber => topic.add_subscriber(),
                Attach::Pin => topic.pin(),
            }
            (topic, created)
        };
        if created {
            (shared.opener)(topic.clone());
        }
        Ok(topic)
    }

    /// Drains over `window`: refuses new subscriptions at once, then ends existing streams in
    /// a random order spread evenly over the window (so clients reconnect elsewhere without a
    /// stampede), then closes every topic (ending its upstream subscription).
    pub async fn drain(&self, window: Duration) {
        let shared = &self.shared;
        shared.draining.store(true, Ordering::Release);
        shared.metrics.draining.set(1);
        let step = window / DRAIN_STEPS;
        for i in 1..=DRAIN_STEPS {
            if !step.is_zero() {
                tokio::time::sleep(step).await;
            }
            shared
                .drain_progress
                .store(DRAIN_DONE * i / DRAIN_STEPS, Ordering::Relaxed);
            for topic in self.topics() {
                topic.wake_all();
            }
        }
        let topics: Vec<_> = lock(&shared.topics).drain().map(|(_, t)| t).collect();
        for topic in topics {
            shared.forget(&topic);
            topic.mark_closed(CloseReason::Draining);
        }
    }

    /// True once [`Hub::drain`] started.
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
    }

    /// The open topics.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        lock(&self.shared.topics).values().cloned().collect()
    }

    /// Snapshots of every open topic, sorted by key.
    pub fn snapshot(&self) -> Vec<TopicSnapshot> {
        let mut all: Vec<_> = self.topics().iter().map(|t| t.snapshot()).collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// Number of open topics.
    pub fn topic_count(&self) -> usize {
        lock(&self.shared.topics).len()
    }
}

impl HubShared {
    /// Removes `topic` (not a newer one under the same key) from the registry.
    pub(crate) fn unregister(&self, topic: &Topic) {
        let mut topics = lock(&self.topics);
        self.unregister_locked(&mut topics, topic);
    }

    /// Remembers that the origin closed `topic` (see [`HubSettings::origin_closed_ttl`]).
    pub(crate) fn origin_closed(&self, topic: &Topic) {
        if self.settings.origin_closed_ttl.is_zero() {
            return;
        }
        let mut closed = lock(&self.origin_closed);
        if closed.len() >= MAX_CLOSED_KEYS {
            let ttl = self.settings.origin_closed_ttl;
            closed.retain(|_, at| at.elapsed() < ttl);
            if closed.len() >= MAX_CLOSED_KEYS {
                closed.clear();
            }
        }
        closed.insert(topic.key().to_string(), Instant::now());
    }

    fn recently_closed(&self, key: &str) -> bool {
        let ttl = self.settings.origin_closed_ttl;
        if ttl.is_zero() {
            return false;
        }
        let mut closed = lock(&self.origin_closed);
        match closed.get(key) {
            Some(at) if at.elapsed() < ttl => true,
            Some(_) => {
                closed.remove(key);
                false
            }
            None => false,
        }
    }

    /// Removes `topic` if it still has no subscriber; true if it did (the caller ends the
    /// upstream subscription). Checked under the registry lock, so a subscriber arriving
    /// concurrently either finds the topic alive or creates a fresh one.
    pub(crate) fn retire_if_unused(&self, topic: &Topic) -> bool {
        let mut topics = lock(&self.topics);
        if topic.subscriber_count() > 0 || topic.is_pinned() {
            return false;
        }
        self.unregister_locked(&mut topics, topic);
        true
    }

    fn unregister_locked(&self, topics: &mut HashMap<String, Arc<Topic>>, topic: &Topic) {
        let same = topics
            .get(topic.key())
            .is_some_and(|t| std::ptr::eq(Arc::as_ptr(t), topic));
        if same {
            topics.remove(topic.key());
            self.forget(topic);
        }
    }

    fn forget(&self, topic: &Topic) {
        self.metrics.topics.dec();
        self.metrics.release_topic_label(topic.label());
    }
}

async fn run_ticker(hub: Weak<HubShared>, interval: Duration) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::future::poll_fn;
    use std::sync::atomic::AtomicUsize;

    fn hub(max_events: usize, opened: Arc<AtomicUsize>) -> Hub {
        let metrics = Arc::new(Metrics::new(&prometheus::Registry::new(), 10).unwrap());
        let settings = HubSettings {
            ring: RingLimits {
                max_events,
                max_bytes: 1 << 20,
                max_age: Duration::from_secs(60),
            },
            idle_grace: Duration::from_millis(50),
            origin_closed_ttl: Duration::ZERO,
            heartbeat_interval: Duration::from_secs(3600),
            max_buffered_bytes: 512 * 1024,
            max_topics: 3,
        };
        let opener: TopicOpener = Arc::new(move |_| {
            opened.fetch_add(1, Ordering::SeqCst);
        });
        Hub::new(settings, metrics, opener)
    }

    async fn next(sub: &mut Subscription) -> Next {
        poll_fn(|cx| sub.poll_next(cx)).await
    }

    fn frame(next: Next) -> Bytes {
        match next {
            Next::Frame(d) => d.frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn one_topic_opened_for_many_subscribers() {
        let opened = Arc::new(AtomicUsize::new(0));
        let hub = hub(8, opened.clone());
        let subs: Vec<_> = (0..10)
            .map(|_| hub.subscribe("k", "/k", "http://o/k", None).unwrap())
            .collect();
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        assert_eq!(subs[0].topic().subscriber_count(), 10);
    }

    #[tokio::test]
    async fn subscribers_share_the_same_frame_buffer() {
        let hub = hub(8, Arc::default());
        let mut a = hub.subscribe("k", "/k", "u", None).unwrap();
        let mut b = hub.subscribe("k", "/k", "u", None).unwrap();
        a.topic()
            .publish(Some("1"), Bytes::from_static(b"id: 1\ndata: x\n\n"));
        let (fa, fb) = (frame(next(&mut a).await), frame(next(&mut b).await));
        assert_eq!(
            fa.as_ptr(),
            fb.as_ptr(),
            "one buffer, no per-subscriber copy"
        );
    }

    #[tokio::test]
    async fn resume_starts_after_the_last_event_id() {
        let hub = hub(8, Arc::default());
        let first = hub.subscribe("k", "/k", "u", None).unwrap();
        for i in 1..=4 {
            first
                .topic()
                .publish(Some(&i.to_string()), Bytes::from(format!("{i}")));
        }
        let mut resumed = hub.subscribe("k", "/k", "u", Some("2")).unwrap();
        let d = next(&mut resumed).await;
        assert!(
            matches!(&d, Next::Frame(d) if d.frame == "34" && d.events == 2 && d.behind == 0),
            "{d:?}"
        );
    }

    #[tokio::test]
    async fn waiting_events_go_out_joined_up_to_the_batch_size() {
        let hub = hub(64, Arc::default());
        let mut sub = hub.subscribe("k", "/k", "u", None).unwrap();
        let event = |c: u8| Bytes::from(vec![c; crate::topic::BATCH_BYTES / 3]);
        for c in [b'a', b'b', b'c', b'd'] {
            sub.topic().publish(None, event(c));
        }
        // Three fit one batch, in order; the fourth comes next, alone and shared (no copy).
        let Next::Frame(first) = next(&mut sub).await else {
            panic!("expected a batch")
        };
        assert_eq!((first.events, first.behind), (3, 1));
        assert_eq!(
            first.frame,
            [event(b'a'), event(b'b'), event(b'c')].concat()
        );
        let Next::Frame(second) = next(&mut sub).await else {
            panic!("expected the last event")
        };
        assert_eq!((second.events, second.behind), (1, 0));
        assert_eq!(second.frame, event(b'd'));
        let big = Bytes::from(vec![b'z'; crate::topic::BATCH_BYTES * 2]);
        sub.topic().publish(None, big.clone());
        sub.topic().publish(None, event(b'e'));
        let Next::Frame(alone) = next(&mut sub).await else {
            panic!("expected the big event")
        };
        assert_eq!(alone.events, 1, "an event over the batch size goes alone");
        assert_eq!(alone.frame.as_ptr(), big.as_ptr(), "shared, not copied");
    }

    #[tokio::test]
    async fn slow_subscriber_falls_out_of_the_ring() {
        let hub = hub(2, Arc::default());
        let mut slow = hub.subscribe("k", "/k", "u", None).unwrap();
        for i in 0..5 {
            slow.topic().publish(None, Bytes::from(format!("{i}")));
        }
        assert_eq!(next(&mut slow).await, Next::Lagged);
    }

    #[tokio::test]
    async fn topic_retires_after_grace_unless_a_subscriber_returns() {
        let opened = Arc::new(AtomicUsize::new(0));
        let hub = hub(8, opened.clone());
        let sub = hub.subscribe("k", "/k", "u", None).unwrap();
        let topic = sub.topic().clone();
        drop(sub);
        let again = hub.subscribe("k", "/k", "u", None).unwrap();
        let retired = tokio::time::timeout(Duration::from_millis(200), topic.retired()).await;
        assert!(retired.is_err(), "kept while a subscriber is attached");
        drop(again);
        tokio::time::timeout(Duration::from_secs(2), topic.retired())
            .await
            .expect("retired after grace");
        assert_eq!(hub.topic_count(), 0);
        assert_eq!(opened.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn new_subscribers_are_shed_over_the_buffer_budget() {
        let hub = hub(1000, Arc::default());
        let first = hub.subscribe("k", "/k", "u", None).unwrap();
        for _ in 0..5 {
            first
                .topic()
                .publish(None, Bytes::from(vec![b'x'; 300 * 1024]));
        }
        assert_eq!(
            hub.subscribe("k2", "/k2", "u", None).err(),
            Some(Refused::OverBudget)
        );
        drop(first);
    }

    #[tokio::test]
    async fn new_topics_past_the_cap_are_refused_existing_ones_still_join() {
        let hub = hub(8, Arc::default());
        let _held: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|k| hub.subscribe(k, k, "u", None).unwrap())
            .collect();
        assert_eq!(
            hub.subscribe("d", "d", "u", None).err(),
            Some(Refused::TooManyTopics)
        );
        assert!(
            hub.subscribe("a", "a", "u", None).is_ok(),
            "existing topics still join"
        );
    }

    #[tokio::test]
    async fn drain_ends_every_stream_and_refuses_new_ones() {
        let hub = hub(8, Arc::default());
        let mut subs: Vec<_> = (0..50)
            .map(|_| hub.subscribe("k", "/k", "u", None).unwrap())
            .collect();
        hub.drain(Duration::from_millis(64)).await;
        assert_eq!(
            hub.subscribe("k", "/k", "u", None).err(),
            Some(Refused::Draining)
        );
        for s in &mut subs {
            assert_eq!(next(s).await, Next::Closed(CloseReason::Draining));
        }
        assert_eq!(hub.topic_count(), 0);
    }
}
