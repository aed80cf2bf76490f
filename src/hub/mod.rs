//! The hub: topics and their subscribers. The [`registry`] gets or opens a topic by key (one
//! upstream subscription per topic key, however many subscribers); each topic is a replay ring
//! with its subscribers' cursors and wakers ([`topic`], [`subscription`]), which asks the
//! origin once more for what a resuming subscriber missed and the ring lacks ([`catch_up`]); one
//! [`supervisor`] per topic owns its life (follow upstream, idle grace, origin closed, drain,
//! retire). The hub also runs the heartbeat ticker and the spread-out drain.
//!
//! The hub knows nothing of HTTP beyond the origin's final answer it passes on ([`verdict`]):
//! a topic's upstream is a future handed in with its [`TopicSpec`], and it never blocks the
//! upstream on a subscriber (docs/architecture.md, invariant 4).

mod batch;
mod catch_up;
mod lock;
mod metrics;
mod opener;
mod presence;
mod registry;
mod request;
mod ring;
mod subscription;
mod supervisor;
#[cfg(test)]
mod tests;
mod topic;
pub mod verdict;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::compress::CompressionSettings;
use crate::ops::descriptors::Descriptors;
pub use batch::BATCH_BYTES;
pub use catch_up::{CatchUp, CatchUpSettings, Replay};
pub use metrics::{CatchUpOutcome, HubMetrics, TopicRefusal, DEFAULT_MAX_TOPIC_LABELS};
pub use opener::Opener;
pub use registry::MAX_CLOSED_KEYS;
use registry::{Attach, Registry};
pub use request::{RequestLife, ResumeMiss};
pub use ring::{CloseReason, RingLimits};
pub use subscription::{Delivery, Gap, Next, Packed, Packs, Recent, Subscription};
pub use topic::{Topic, TopicSnapshot, UpstreamState, DRAIN_DONE};
pub use verdict::{OriginAnswer, Verdict};

/// Settings of the hub.
#[derive(Debug, Clone, Copy)]
pub struct HubSettings {
    /// Replay ring bounds per topic.
    pub ring: RingLimits,
    /// How long a topic outlives its last subscriber.
    pub idle_grace: Duration,
    /// How long a topic key the origin closed (204) answers new subscribers 204 without a new
    /// upstream request ([`Refused::Origin`]; zero: not at all).
    pub origin_closed_ttl: Duration,
    /// How long a topic key the origin refused (e.g. 404) answers new subscribers the same
    /// without a new upstream request ([`Refused::Origin`]; zero: not at all).
    pub origin_error_ttl: Duration,
    /// Interval of heartbeat ticks (and of age-based eviction).
    pub heartbeat_interval: Duration,
    /// Budget of bytes in all rings together; past it new subscribers are refused, bytes.
    pub max_buffered_bytes: usize,
    /// Topics open at once; past it subscribers of new topics are refused (each topic holds an
    /// upstream connection and a ring), count.
    pub max_topics: usize,
    /// Topics one client ([`Opener`]) may hold open at once; past it that client's subscribers
    /// of new topics are refused like past `max_topics`, count (at least 1).
    pub max_topics_per_client: usize,
    /// Origin-assisted catch-up for resumes the ring cannot serve ([`catch_up`]).
    pub catch_up: CatchUpSettings,
    /// Compression toward clients, once per topic and coding ([`crate::compress`]).
    pub compression: CompressionSettings,
}

/// Why a topic's upstream follower gave up (it never returns otherwise: outages, errors and
/// broken streams are retried inside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamEnd {
    /// The origin answered 204 No Content: the topic is over.
    OriginClosed,
    /// The origin refused the topic for good (a 4xx such as 404, or answers that are not an
    /// event stream): its subscribers get this answer.
    Refused(Arc<OriginAnswer>),
    /// A request stream's answer ended (the origin finished it, or it broke: it cannot be
    /// asked for again): the topic is kept, closed, for its retention ([`RequestLife`]).
    Finished,
}

/// Starts a new topic's upstream: called once, when the topic opens, with the topic to publish
/// into; the future runs until the topic ends (the supervisor drops it on retire or drain).
pub type Follow = Box<dyn FnOnce(Arc<Topic>) -> BoxFuture<'static, UpstreamEnd> + Send>;

/// What a subscriber asks for: a topic key, the label of its per-topic metrics, and how to
/// follow its origin if the topic has to be opened.
pub struct TopicSpec {
    /// The topic key: two subscribers share a topic exactly when their keys are equal.
    pub key: String,
    /// How the key is shown (`/topics`, the logs) when that differs from the key, e.g. with a
    /// user's claim hashed; `None`: the key is shown as it is.
    pub shown: Option<String>,
    /// Names the topic in per-topic metrics (e.g. the request path).
    pub label: String,
    /// Starts the upstream of a new topic (dropped unused when the topic is open already).
    pub follow: Follow,
    /// How a new topic asks its origin to replay after an id its ring lacks ([`catch_up`];
    /// `None`: it does not, and such resumes get the gap signal).
    pub replay: Option<Replay>,
    /// The client a new topic is charged to, against `max_topics_per_client` (`None`: no one,
    /// as for `topics.always_on` and for another relay of the cluster, which charged its own
    /// client).
    pub opener: Option<Opener>,
}

/// Why [`Hub::subscribe`] refused a subscriber.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// A new topic would exceed its opener's budget (`limits.max_topics_per_client_percent`
    /// of `limits.max_topics`).
    #[error("this client holds its budget of topics")]
    ClientBudget,
    /// A new topic's upstream connection would leave fewer file descriptors than the reserve
    /// kept for clients of the open topics ([`crate::ops::descriptors`]).
    #[error("too few file descriptors left for a new topic")]
    Descriptors,
    /// The origin closed this topic (204) less than `topics.origin_closed_ttl_ms` ago, or
    /// refused it less than `topics.origin_error_ttl_ms` ago: the client should get the same
    /// answer, so it stops reconnecting as it would against the origin itself.
    #[error("the origin answered {}", .0.status)]
    Origin(Arc<OriginAnswer>),
}

/// The topic registry (cheap to clone).
#[derive(Clone)]
pub struct Hub {
    registry: Arc<Registry>,
}

/// Steps in which the drain window ends streams.
const DRAIN_STEPS: u32 = 64;

impl Hub {
    /// Creates a hub that counts no descriptors ([`Hub::with_descriptors`]).
    /// Must be called within a tokio runtime.
    pub fn new(settings: HubSettings, metrics: Arc<HubMetrics>) -> Self {
        Self::with_descriptors(settings, metrics, Descriptors::unlimited())
    }

    /// Creates a hub and starts its heartbeat ticker (which stops when the hub is dropped);
    /// each open topic holds one of `descriptors`, and a new topic opens only while they are
    /// not short. Must be called within a tokio runtime.
    pub fn with_descriptors(
        settings: HubSettings,
        metrics: Arc<HubMetrics>,
        descriptors: Arc<Descriptors>,
    ) -> Self {
        let registry = Arc::new(Registry::new(settings, metrics, descriptors));
        tokio::spawn(run_ticker(
            Arc::downgrade(&registry),
            settings.heartbeat_interval,
        ));
        Self { registry }
    }

    /// How its topics compress streams for subscribers that ask.
    pub fn compression(&self) -> &CompressionSettings {
        &self.registry.settings.compression
    }

    /// The hub's metrics.
    pub fn metrics(&self) -> &Arc<HubMetrics> {
        &self.registry.metrics
    }

    /// Subscribes to the topic of `spec`, opening it (and its one upstream subscription) if
    /// needed. `last_event_id` positions the cursor (see [`Subscription`]); a new topic also
    /// passes it upstream ([`Topic::initial_last_event_id`]), so the origin can replay.
    ///
    /// # Errors
    /// [`Refused::Draining`] once [`Hub::drain`] was called; [`Refused::OverBudget`] while the
    /// rings hold more than the buffer budget, [`Refused::TooManyTopics`],
    /// [`Refused::ClientBudget`] or [`Refused::Descriptors`] for a new topic past the topic cap,
    /// its opener's budget or the descriptors (all counted in
    /// `sse_relay_subscribers_shed_total`);
    /// [`Refused::Origin`] while the origin's final answer for this key is remembered.
    pub fn subscribe(
        &self,
        spec: TopicSpec,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, Refused> {
        let registry = &self.registry;
        let over =
            registry.metrics.buffered_bytes.get() > registry.settings.max_buffered_bytes as i64;
        if over {
            registry.metrics.subscribers_shed.inc();
            return Err(Refused::OverBudget);
        }
        if let Some(answer) = registry.remembered(&spec.key) {
            return Err(Refused::Origin(answer));
        }
        let topic = self.open(spec, last_event_id, Attach::Subscriber)?;
        Ok(Subscription::attach(&topic, last_event_id))
    }

    /// Subscribes another relay of the cluster, as [`Hub::subscribe`] does a client; while it
    /// is attached the topic reads from the origin, whoever the owner is in this relay's view
    /// (a peer subscription is never passed on to a third relay, so peers cannot subscribe in
    /// a circle).
    ///
    /// # Errors
    /// As [`Hub::subscribe`].
    pub fn subscribe_peer(
        &self,
        spec: TopicSpec,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, Refused> {
        let mut subscription = self.subscribe(spec, last_event_id)?;
        subscription.mark_peer();
        Ok(subscription)
    }

    /// Opens the topic of `spec` now and keeps it open, with or without subscribers, until the
    /// origin closes it (204) or the relay drains: `topics.always_on`, so its replay buffer
    /// fills before the first client comes (docs/architecture.md, invariant 1).
    ///
    /// # Errors
    /// [`Refused::Draining`] or [`Refused::TooManyTopics`], as for [`Hub::subscribe`].
    pub fn open_always_on(&self, spec: TopicSpec) -> Result<(), Refused> {
        self.open(spec, None, Attach::Pin).map(drop)
    }

    /// Starts a request stream: opens the new topic of `spec` (whose key must be fresh), with
    /// `life`, and subscribes its starter from the first event on. Its upstream (`spec.follow`)
    /// reads the one answer.
    ///
    /// # Errors
    /// As [`Hub::subscribe`] for a new topic.
    pub fn start(&self, spec: TopicSpec, life: RequestLife) -> Result<Subscription, Refused> {
        let registry = &self.registry;
        if registry.metrics.buffered_bytes.get() > registry.settings.max_buffered_bytes as i64 {
            registry.metrics.subscribers_shed.inc();
            return Err(Refused::OverBudget);
        }
        let topic = self.open(spec, None, Attach::Start(life))?;
        Ok(Subscription::attach(&topic, None))
    }

    /// Follows the request stream `key` as one more viewer, if its scope is `scope`: after the
    /// event `last_event_id` names (a gap signal first if the ring no longer holds it), or
    /// without one from the oldest event held.
    ///
    /// # Errors
    /// [`ResumeMiss::Unknown`] when there is no such stream in this scope (a shared topic's key
    /// is no stream either); [`ResumeMiss::Spent`] when it ended and nothing is left to send.
    pub fn resume(
        &self,
        key: &str,
        scope: &str,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, ResumeMiss> {
        let topic = self
            .registry
            .join(key, |topic| topic.in_scope(scope))
            .ok_or(ResumeMiss::Unknown)?;
        let mut subscription = Subscription::attach(&topic, last_event_id);
        if last_event_id.is_none() {
            subscription.rewind();
        }
        if subscription.is_spent() {
            return Err(ResumeMiss::Spent);
        }
        Ok(subscription)
    }

    /// Follows the request stream `key` for another relay of the cluster (a viewer that
    /// reconnected there), as [`Hub::resume`]: while this relay drains, such a follower is not
    /// ended with the local viewers, so viewers that moved elsewhere keep the stream until
    /// [`Hub::drain_streams`] lets go.
    ///
    /// # Errors
    /// As [`Hub::resume`].
    pub fn resume_for_peer(
        &self,
        key: &str,
        scope: &str,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, ResumeMiss> {
        let mut subscription = self.resume(key, scope, last_event_id)?;
        subscription.mark_peer();
        Ok(subscription)
    }

    /// Cancels the request stream `key` if its scope is `scope`: its upstream is dropped (the
    /// origin request with it), its viewers get what the ring holds for them, then the end, and
    /// it is removed. False when there is no such stream in this scope.
    pub fn cancel(&self, key: &str, scope: &str) -> bool {
        self.stream(key, scope)
            .map(|topic| topic.cancel())
            .is_some()
    }

    /// Cancels every request stream in scope `scope` (an MCP session that ended), as
    /// [`Hub::cancel`] does one; how many.
    pub fn cancel_scope(&self, scope: &str) -> usize {
        self.streams_in(scope).map(|topic| topic.cancel()).count()
    }

    /// True when `key` is a request stream in scope `scope`.
    pub fn holds_stream(&self, key: &str, scope: &str) -> bool {
        self.stream(key, scope).is_some()
    }

    /// The key of the request stream in scope `scope` whose ring holds an event with id `id`
    /// (the newest such stream), if any: how a resume that names only an event finds its
    /// stream.
    pub fn find_event(&self, scope: &str, id: &str) -> Option<String> {
        self.streams_in(scope)
            .find(|topic| topic.holds_event(id))
            .map(|topic| topic.key().to_string())
    }

    /// The request stream `key`, if it is one in scope `scope`.
    fn stream(&self, key: &str, scope: &str) -> Option<Arc<Topic>> {
        self.registry.get(key).filter(|topic| topic.in_scope(scope))
    }

    /// The request streams in scope `scope`.
    fn streams_in<'a>(&self, scope: &'a str) -> impl Iterator<Item = Arc<Topic>> + 'a {
        let topics = self.topics().into_iter();
        topics.filter(move |topic| topic.in_scope(scope))
    }

    /// Gets or opens the topic; a new one gets its supervisor, which runs its upstream.
    fn open(
        &self,
        spec: TopicSpec,
        last_event_id: Option<&str>,
        attach: Attach,
    ) -> Result<Arc<Topic>, Refused> {
        let (topic, follow) = self.registry.open(spec, last_event_id, attach)?;
        if let Some(follow) = follow {
            let span = tracing::info_span!("topic", topic = %topic.shown());
            let supervised = supervisor::supervise(self.registry.clone(), topic.clone(), follow);
            tokio::spawn(tracing::Instrument::instrument(supervised, span));
        }
        Ok(topic)
    }

    /// Drains over `window`: refuses new subscriptions at once, then ends existing streams in
    /// a random order spread evenly over the window (so clients reconnect elsewhere without a
    /// stampede), then has every supervisor close its topic (ending its upstream subscription),
    /// and returns once all are closed.
    pub async fn drain(&self, window: Duration) {
        self.end_subscribers(window).await;
        self.close_all().await;
    }

    /// Drains a hub of request streams: as [`Hub::drain`], but before the topics are closed,
    /// their answers are read on for up to `limit` after the window, until every one ended:
    /// viewers that reconnected to another relay follow them from here over the peer link
    /// meanwhile ([`Hub::resume_for_peer`]).
    pub async fn drain_streams(&self, window: Duration, limit: Duration) {
        self.end_subscribers(window).await;
        let all_ended = async {
            while self.topics().iter().any(|topic| !topic.is_closed()) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let _ = tokio::time::timeout(limit, all_ended).await;
        self.close_all().await;
    }

    /// Refuses new subscriptions, then ends existing streams spread over `window`.
    async fn end_subscribers(&self, window: Duration) {
        let registry = &self.registry;
        registry.draining.store(true, Ordering::Release);
        registry.metrics.draining.set(1);
        let step = window / DRAIN_STEPS;
        for i in 1..=DRAIN_STEPS {
            if !step.is_zero() {
                tokio::time::sleep(step).await;
            }
            registry
                .drain_progress
                .store(DRAIN_DONE * i / DRAIN_STEPS, Ordering::Relaxed);
            for topic in registry.topics() {
                topic.wake_all();
            }
        }
    }

    /// Has every supervisor close its topic, and waits until all are.
    async fn close_all(&self) {
        let registry = &self.registry;
        registry.stop.send_replace(true);
        let mut open = registry.open.subscribe();
        let _ = open.wait_for(|open| *open == 0).await;
    }

    /// True once [`Hub::drain`] started.
    pub fn is_draining(&self) -> bool {
        self.registry.draining.load(Ordering::Acquire)
    }

    /// The open topics.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.registry.topics()
    }

    /// Snapshots of every open topic, sorted by the key as shown (the order of the keys
    /// themselves would tell how users' claims sort).
    pub fn snapshot(&self) -> Vec<TopicSnapshot> {
        let mut all: Vec<_> = self.topics().iter().map(|t| t.snapshot()).collect();
        all.sort_by(|a, b| a.shown.cmp(&b.shown));
        all
    }

    /// Number of open topics.
    pub fn topic_count(&self) -> usize {
        self.registry.len()
    }
}

async fn run_ticker(registry: Weak<Registry>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(registry) = registry.upgrade() else {
            return;
        };
        let topics = registry.topics();
        drop(registry);
        for topic in topics {
            topic.tick();
        }
    }
}
