//! The topic registry: get-or-open under one lock (so a topic is never opened twice, and
//! retirement cannot slip in between a lookup and a subscriber's arrival), the caps on topics
//! and buffered bytes, and the memory of the origin's final answers (204, refusals).
//!
//! Only the registry adds topics and only a topic's supervisor removes it. A new topic is
//! charged to its opener ([`Opener`]) and holds one counted descriptor until it is removed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::catch_up::CatchUpPool;
use super::lock::lock;
use super::metrics::{HubMetrics, TopicRefusal};
use super::opener::{Budget, Opener};
use super::request::RequestLife;
use super::topic::{HubShare, NewTopic, Topic};
use super::verdict::OriginAnswer;
use super::{HubSettings, Refused, TopicSpec, UpstreamEnd};
use crate::ops::descriptors::{Descriptors, Held};

/// Topic keys whose origin's final answer is remembered, at most, count (expired ones are
/// forgotten first when full, then all).
pub const MAX_CLOSED_KEYS: usize = 4096;

/// An origin's final answer for a topic key, and until when it stands.
struct Remembered {
    until: Instant,
    answer: Arc<OriginAnswer>,
}

/// What [`Registry::open`] does to the topic it gets.
pub(super) enum Attach {
    /// Counts one more subscriber.
    Subscriber,
    /// Keeps it open without subscribers.
    Pin,
    /// Starts a request stream: the key must be new; counts one subscriber (the starter), and
    /// pins the topic if its life detaches it from its viewers.
    Start(RequestLife),
}

/// An open topic, whom it is charged to and the descriptor its upstream holds.
struct Entry {
    topic: Arc<Topic>,
    opener: Option<Opener>,
    _descriptor: Held,
}

/// The open topics by key, and what each opener holds of them.
struct Topics {
    by_key: HashMap<String, Entry>,
    budget: Budget,
}

/// What the hub's handles and the topics' supervisors share.
pub(super) struct Registry {
    topics: Mutex<Topics>,
    /// Descriptors held by topics (and, counted by the server, connections).
    descriptors: Arc<Descriptors>,
    pub settings: HubSettings,
    pub metrics: Arc<HubMetrics>,
    pub draining: AtomicBool,
    /// Topic keys the origin closed (204) or refused, with its answer (bounded by
    /// [`MAX_CLOSED_KEYS`]).
    answered: Mutex<HashMap<String, Remembered>>,
    /// 0 normally; rises to [`super::topic::DRAIN_DONE`] over the drain window.
    pub drain_progress: Arc<AtomicU32>,
    /// Turns true at the end of the drain: every supervisor closes its topic.
    pub stop: watch::Sender<bool>,
    /// Topics registered, count (the drain waits for 0).
    pub open: watch::Sender<usize>,
    /// Catch-ups under way in all topics, and their settings.
    catch_up_pool: Arc<CatchUpPool>,
}

impl Registry {
    pub fn new(
        settings: HubSettings,
        metrics: Arc<HubMetrics>,
        descriptors: Arc<Descriptors>,
    ) -> Self {
        Self {
            topics: Mutex::new(Topics {
                by_key: HashMap::new(),
                budget: Budget::new(settings.max_topics_per_client),
            }),
            descriptors,
            settings,
            metrics,
            draining: AtomicBool::new(false),
            answered: Mutex::new(HashMap::new()),
            drain_progress: Arc::new(AtomicU32::new(0)),
            stop: watch::Sender::new(false),
            open: watch::Sender::new(0),
            catch_up_pool: Arc::new(CatchUpPool::new(settings.catch_up)),
        }
    }

    /// Gets or creates the topic of `spec` and, under the registry lock, counts a subscriber or
    /// pins it. For a new topic it also returns its upstream, started from `spec.follow`, for
    /// the caller to hand to the topic's supervisor.
    pub fn open(
        &self,
        spec: TopicSpec,
        last_event_id: Option<&str>,
        attach: Attach,
    ) -> Result<(Arc<Topic>, Option<BoxFuture<'static, UpstreamEnd>>), Refused> {
        let mut topics = lock(&self.topics);
        if self.draining.load(Ordering::Acquire) {
            return Err(Refused::Draining);
        }
        let (topic, follow) = match topics.by_key.get(&spec.key) {
            Some(_) if matches!(attach, Attach::Start(_)) => {
                // A request stream's key is random and fresh: a clash is a caller's bug.
                return Err(Refused::TooManyTopics);
            }
            Some(entry) => (entry.topic.clone(), None),
            None => {
                let descriptor = self.admit(&topics, spec.opener.as_ref())?;
                let (label, gauge) = self.metrics.topic_label(&spec.label);
                let new = NewTopic {
                    key: spec.key.clone(),
                    shown: spec.shown,
                    label,
                    initial_last_event_id: last_event_id.map(str::to_string),
                    replay: spec.replay,
                    life: match &attach {
                        Attach::Start(life) => Some(life.clone()),
                        _ => None,
                    },
                };
                let topic = Arc::new(Topic::new(
                    new,
                    HubShare {
                        limits: self.settings.ring,
                        compression: self.settings.compression,
                        subscribers_gauge: gauge,
                        drain_progress: &self.drain_progress,
                        metrics: &self.metrics,
                        catch_up_pool: &self.catch_up_pool,
                    },
                ));
                if let Some(opener) = &spec.opener {
                    topics.budget.charge(opener);
                }
                let entry = Entry {
                    topic: topic.clone(),
                    opener: spec.opener,
                    _descriptor: descriptor,
                };
                topics.by_key.insert(spec.key, entry);
                self.metrics.topics.inc();
                self.open.send_replace(topics.by_key.len());
                let follow = (spec.follow)(topic.clone());
                (topic, Some(follow))
            }
        };
        match attach {
            Attach::Subscriber => topic.presence().add(),
            Attach::Pin => topic.presence().pin(),
            Attach::Start(life) => {
                topic.presence().add();
                if life.detach {
                    topic.presence().pin();
                }
            }
        }
        Ok((topic, follow))
    }

    /// Whether a new topic charged to `opener` may open: within the topic cap, the opener's
    /// budget and the descriptors left above the reserve; the descriptor it is to hold.
    ///
    /// # Errors
    /// [`Refused::TooManyTopics`], [`Refused::ClientBudget`] or [`Refused::Descriptors`],
    /// each counted in `sse_relay_subscribers_shed_total` and
    /// `sse_relay_topics_refused_total{reason}`.
    fn admit(&self, topics: &Topics, opener: Option<&Opener>) -> Result<Held, Refused> {
        let refused = if topics.by_key.len() >= self.settings.max_topics {
            Refused::TooManyTopics
        } else if opener.is_some_and(|opener| !topics.budget.admits(opener)) {
            Refused::ClientBudget
        } else {
            match self.descriptors.try_hold() {
                Some(held) => return Ok(held),
                None => Refused::Descriptors,
            }
        };
        let reason = match refused {
            Refused::ClientBudget => TopicRefusal::ClientBudget,
            Refused::Descriptors => TopicRefusal::Descriptors,
            _ => TopicRefusal::TopicCap,
        };
        self.metrics.subscribers_shed.inc();
        self.metrics.topics_refused.inc(reason);
        Err(refused)
    }

    /// The open topics.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        lock(&self.topics)
            .by_key
            .values()
            .map(|entry| entry.topic.clone())
            .collect()
    }

    /// The topic under `key`, if any, with one more subscriber counted (under the registry
    /// lock, so it cannot retire in between) when `admits` says yes; the caller attaches that
    /// subscriber at once.
    pub fn join(&self, key: &str, admits: impl FnOnce(&Topic) -> bool) -> Option<Arc<Topic>> {
        let topics = lock(&self.topics);
        let topic = &topics.by_key.get(key)?.topic;
        if !admits(topic) {
            return None;
        }
        topic.presence().add();
        Some(topic.clone())
    }

    /// The topic under `key`, if any.
    pub fn get(&self, key: &str) -> Option<Arc<Topic>> {
        let topics = lock(&self.topics);
        topics.by_key.get(key).map(|entry| entry.topic.clone())
    }

    /// Open topics, count.
    pub fn len(&self) -> usize {
        lock(&self.topics).by_key.len()
    }

    /// Removes `topic` (not a newer one under the same key).
    pub fn unregister(&self, topic: &Topic) {
        let mut topics = lock(&self.topics);
        self.unregister_locked(&mut topics, topic);
    }

    /// Removes `topic` if it still has no subscriber and is not pinned; true if it did.
    /// Checked under the registry lock, so a subscriber arriving concurrently either finds the
    /// topic alive or creates a fresh one.
    pub fn retire_if_unused(&self, topic: &Topic) -> bool {
        let mut topics = lock(&self.topics);
        if topic.subscriber_count() > 0 || topic.presence().is_pinned() {
            return false;
        }
        self.unregister_locked(&mut topics, topic);
        true
    }

    fn unregister_locked(&self, topics: &mut Topics, topic: &Topic) {
        let same = topics
            .by_key
            .get(topic.key())
            .is_some_and(|entry| std::ptr::eq(Arc::as_ptr(&entry.topic), topic));
        if !same {
            return;
        }
        if let Some(entry) = topics.by_key.remove(topic.key()) {
            if let Some(opener) = &entry.opener {
                topics.budget.refund(opener);
            }
        }
        self.metrics.topics.dec();
        self.metrics.release_topic_label(topic.label());
        self.open.send_replace(topics.by_key.len());
    }

    /// Remembers the origin's final answer for `key` for `ttl` (zero: not at all), so new
    /// subscribers get it without a new upstream request.
    pub fn remember(&self, key: &str, answer: Arc<OriginAnswer>, ttl: std::time::Duration) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut answered = lock(&self.answered);
        if answered.len() >= MAX_CLOSED_KEYS {
            answered.retain(|_, r| r.until > now);
            if answered.len() >= MAX_CLOSED_KEYS {
                answered.clear();
            }
        }
        let until = now + ttl;
        answered.insert(key.to_string(), Remembered { until, answer });
    }

    /// The origin's final answer for `key`, while it is remembered.
    pub fn remembered(&self, key: &str) -> Option<Arc<OriginAnswer>> {
        let mut answered = lock(&self.answered);
        match answered.get(key) {
            Some(r) if r.until > Instant::now() => Some(r.answer.clone()),
            Some(_) => {
                answered.remove(key);
                None
            }
            None => None,
        }
    }
}
