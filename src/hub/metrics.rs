//! The hub's metrics: subscribers and topics (with a capped per-topic label), the replay
//! buffers' bytes, replay hits and misses, catch-ups by outcome, shedding, refused topics and
//! the drain flag.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

use crate::ops::metrics::{counter, gauge, Family, Label};

/// Topics beyond this many distinct labels share the label `other` in per-topic series, by
/// default: enough to see the busiest routes, few enough that a topic spray cannot blow up
/// Prometheus' series count.
pub const DEFAULT_MAX_TOPIC_LABELS: usize = 100;

/// How an origin-assisted catch-up ended (`sse_relay_catch_ups_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUpOutcome {
    /// The origin replayed what the ring lacked; its subscribers joined the ring after it.
    Joined,
    /// The origin did not replay from the id (its first event was in the ring, or it sent live
    /// events): its subscribers got the gap signal.
    NoReplay,
    /// The request failed, ended, timed out or outgrew `replay.catch_up_max_bytes` before
    /// meeting the ring: its subscribers got the gap signal.
    Failed,
    /// Not needed after all: by the time the catch-up was decided (met the ring, failed, timed
    /// out), the topic's own subscription had delivered the resume id into the ring (a topic
    /// whose upstream had just opened); its subscribers resumed right after it.
    Ring,
    /// Not started: over `replay.catch_up_max_per_topic` or `_max_total` (the subscriber got
    /// the gap signal).
    Capped,
}

impl Label for CatchUpOutcome {
    const ALL: &'static [Self] = &[
        Self::Joined,
        Self::NoReplay,
        Self::Failed,
        Self::Capped,
        Self::Ring,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Joined => "joined",
            Self::NoReplay => "no_replay",
            Self::Failed => "failed",
            Self::Capped => "capped",
            Self::Ring => "ring",
        }
    }
}

/// Why a new topic was refused (`sse_relay_topics_refused_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRefusal {
    /// `limits.max_topics` topics are open.
    TopicCap,
    /// The client that would open it holds its budget of topics
    /// (`limits.max_topics_per_client_percent`).
    ClientBudget,
    /// Its upstream connection would eat into the file descriptors kept for clients.
    Descriptors,
}

impl Label for TopicRefusal {
    const ALL: &'static [Self] = &[Self::TopicCap, Self::ClientBudget, Self::Descriptors];

    fn label(self) -> &'static str {
        match self {
            Self::TopicCap => "topic_cap",
            Self::ClientBudget => "client_budget",
            Self::Descriptors => "descriptors",
        }
    }
}

/// The metrics of the hub and its topics.
pub struct HubMetrics {
    /// Subscribers currently attached to a topic (gauge).
    pub subscribers: IntGauge,
    /// Topics currently open, each with one upstream subscription (gauge).
    pub topics: IntGauge,
    /// Bytes held in all replay rings (gauge).
    pub buffered_bytes: IntGauge,
    /// New subscribers shed (200 + `retry:` + end) because the buffer budget, the topic cap,
    /// the client's topic budget or the descriptors were reached (counter).
    pub subscribers_shed: IntCounter,
    /// New topics refused, by why (counter; each also counts in `subscribers_shed`).
    pub topics_refused: Family<TopicRefusal>,
    /// Resumes with `Last-Event-ID` found in the replay buffer (counter).
    pub replay_hits: IntCounter,
    /// Resumes with a `Last-Event-ID` not in the replay buffer (counter).
    pub replay_misses: IntCounter,
    /// Events an upstream that moved to another source sent again although the topic's ring
    /// held them, dropped (counter; see [`super::Topic::expect_overlap`]).
    pub duplicates_dropped: IntCounter,
    /// Origin-assisted catch-ups, by how they ended (counter; one per request, however many
    /// subscribers shared it).
    pub catch_ups: Family<CatchUpOutcome>,
    /// Catch-up requests under way (gauge).
    pub catch_ups_open: IntGauge,
    /// 1 while the relay drains (gauge).
    pub draining: IntGauge,
    topic_subscribers: IntGaugeVec,
    topic_labels: Mutex<HashMap<String, usize>>,
    max_topic_labels: usize,
}

impl HubMetrics {
    /// Registers the hub's metrics in `registry`; at most `max_topic_labels` distinct topic
    /// labels are used in `sse_relay_topic_subscribers`.
    ///
    /// # Errors
    /// A `prometheus::Error` if a name is already registered there.
    pub fn new(registry: &Registry, max_topic_labels: usize) -> prometheus::Result<Self> {
        Self::named(registry, "sse_relay_", max_topic_labels)
    }

    /// Registers the metrics of a second hub (request streams: `sse_relay_request_stream_`)
    /// under names that start with `prefix` instead of `sse_relay_`.
    ///
    /// # Errors
    /// A `prometheus::Error` if a name is already registered there.
    pub fn named(
        registry: &Registry,
        prefix: &str,
        max_topic_labels: usize,
    ) -> prometheus::Result<Self> {
        let r = registry;
        let name = |suffix: &str| format!("{prefix}{suffix}");
        let topic_subscribers = IntGaugeVec::new(
            Opts::new(
                name("topic_subscribers"),
                "Subscribers per topic (topics past the label cap share topic=\"other\").",
            ),
            &["topic"],
        )?;
        r.register(Box::new(topic_subscribers.clone()))?;
        Ok(Self {
            subscribers: gauge(r, &name("subscribers"), "Subscribers attached.")?,
            topics: gauge(r, &name("topics"), "Open topics (one upstream each).")?,
            buffered_bytes: gauge(
                r,
                &name("buffered_bytes"),
                "Bytes held in all replay rings.",
            )?,
            subscribers_shed: counter(
                r,
                &name("subscribers_shed_total"),
                "New subscribers shed because the buffer budget or a topic cap was reached.",
            )?,
            topics_refused: Family::new(
                r,
                &name("topics_refused_total"),
                "New topics refused, by reason (topic cap, client budget, descriptors).",
                "reason",
            )?,
            replay_hits: counter(
                r,
                &name("replay_hits_total"),
                "Resumes whose Last-Event-ID was in the replay buffer.",
            )?,
            duplicates_dropped: counter(
                r,
                &name("upstream_duplicates_dropped_total"),
                "Events a moved upstream sent again that the replay buffer held, dropped.",
            )?,
            replay_misses: counter(
                r,
                &name("replay_misses_total"),
                "Resumes whose Last-Event-ID was not in the replay buffer.",
            )?,
            catch_ups: Family::new(
                r,
                &name("catch_ups_total"),
                "Origin-assisted catch-ups for resumes the replay buffer could not serve, by outcome.",
                "outcome",
            )?,
            catch_ups_open: gauge(
                r,
                &name("catch_ups_open"),
                "Catch-up requests to origins under way.",
            )?,
            draining: gauge(r, &name("draining"), "1 while the relay drains.")?,
            topic_subscribers,
            topic_labels: Mutex::new(HashMap::new()),
            max_topic_labels,
        })
    }

    /// The per-topic subscriber gauge for a topic labelled `label`, resolved once per topic.
    /// Past `max_topic_labels` distinct labels, new topics share `other`. Pair every call with
    /// [`HubMetrics::release_topic_label`].
    pub fn topic_label(&self, label: &str) -> (String, IntGauge) {
        let mut labels = self.topic_labels.lock().unwrap_or_else(|p| p.into_inner());
        let named = labels.len() - usize::from(labels.contains_key("other"));
        let label = if labels.contains_key(label) || named < self.max_topic_labels {
            label.to_string()
        } else {
            "other".to_string()
        };
        *labels.entry(label.clone()).or_insert(0) += 1;
        let gauge = self.topic_subscribers.with_label_values(&[&label]);
        (label, gauge)
    }

    /// Releases a label taken by [`HubMetrics::topic_label`]; the series disappears with its
    /// last topic.
    pub fn release_topic_label(&self, label: &str) {
        let mut labels = self.topic_labels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = labels.get_mut(label) {
            *count -= 1;
            if *count == 0 {
                labels.remove(label);
                let _ = self.topic_subscribers.remove_label_values(&[label]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_labels_are_capped_and_released() {
        let registry = Registry::new();
        let m = HubMetrics::new(&registry, 2).unwrap();
        let (a, _) = m.topic_label("/events/a");
        let (b, _) = m.topic_label("/events/b");
        let (c, gauge_c) = m.topic_label("/events/c");
        assert_eq!(
            (a.as_str(), b.as_str(), c.as_str()),
            ("/events/a", "/events/b", "other")
        );
        gauge_c.inc();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains("sse_relay_topic_subscribers{topic=\"other\"} 1"),
            "the capped topic counts under `other`: {text}"
        );
        m.release_topic_label(&a);
        let (d, _) = m.topic_label("/events/d");
        assert_eq!(d, "/events/d", "a released label frees a slot");
    }
}
