//! Prometheus metrics: one [`Metrics`] struct owning every series the relay exports, registered
//! in a registry the caller owns (no global statics), so tests read values directly.
//!
//! Names follow Prometheus conventions (`sse_relay_…_total` for counters, `_seconds`, `_bytes`).
//! Labelled children are resolved once here (or once per topic), never per event.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Topics beyond this many distinct labels share the label `other` in per-topic series.
pub const DEFAULT_MAX_TOPIC_LABELS: usize = 100;

/// Every metric of the relay.
pub struct Metrics {
    /// Subscribers currently attached to a topic (gauge).
    pub subscribers: IntGauge,
    /// Topics currently open, each with one upstream subscription task (gauge).
    pub topics: IntGauge,
    /// Upstream connection attempts (counter).
    pub upstream_connects: IntCounter,
    /// Upstream connection attempts after the first one of a topic (counter).
    pub upstream_reconnects: IntCounter,
    /// Upstream event streams established right now (gauge).
    pub upstream_open: IntGauge,
    /// Upstream attempts that failed or streams that broke, by reason (counter).
    pub upstream_failures: UpstreamFailures,
    /// Events received from origins and put into a replay buffer (counter).
    pub events_received: IntCounter,
    /// Event frames written to subscribers' streams (counter; one per subscriber per event).
    pub events_delivered: IntCounter,
    /// Bytes of event frames written to subscribers' streams (counter).
    pub bytes_delivered: IntCounter,
    /// Events dropped because they exceeded `limits.max_event_bytes` (counter).
    pub events_oversized: IntCounter,
    /// Subscribers whose cursor fell out of the replay buffer (lag policy applied) (counter).
    pub subscribers_lagged: IntCounter,
    /// Resumes with `Last-Event-ID` found in the replay buffer (counter).
    pub replay_hits: IntCounter,
    /// Resumes with a `Last-Event-ID` not in the replay buffer (counter).
    pub replay_misses: IntCounter,
    /// Heartbeat comments sent to subscribers (counter).
    pub heartbeats: IntCounter,
    /// Time from an event's arrival from upstream to its hand-off to a subscriber's stream,
    /// seconds (histogram; one observation per hand-off: when several waiting events go out as
    /// one batch, the oldest one's time).
    pub fanout_latency: Histogram,
    /// How many events a subscriber was still behind the topic's head after a hand-off, count
    /// (histogram; one observation per hand-off).
    pub subscriber_lag: Histogram,
    /// How long a subscriber's stream was not polled while events were waiting for it (the
    /// client's flow-control window was closed), seconds (histogram).
    pub subscriber_stall: Histogram,
    /// Downstream connections accepted, by protocol of their first request (`h2`, `http/1.1`,
    /// or `none` for connections that never sent one) (counter).
    pub connections_accepted: ProtocolCounters,
    /// Downstream connections open, by protocol (gauge).
    pub connections_open: ProtocolGauges,
    /// TLS handshakes that failed or timed out (counter).
    pub tls_handshake_failures: IntCounter,
    /// Connections refused at a cap, by cap (`global`, `per_ip`) (counter).
    pub connections_refused: RefusedCounters,
    /// Connections closed by a watchdog, by cause (counter).
    pub connections_closed: ClosedCounters,
    /// New subscribers shed (200 + `retry:` + end) because the buffer budget was exceeded
    /// (counter).
    pub subscribers_shed: IntCounter,
    /// Bytes held in all replay rings (gauge).
    pub buffered_bytes: IntGauge,
    /// Subscriptions refused by authorization, by status (counter).
    pub auth_denied: AuthDenied,
    /// 1 while the relay drains (gauge).
    pub draining: IntGauge,
    /// Certificate reloads, by result (`ok`, `rejected`) (counter).
    pub cert_reloads: CertReloads,
    /// Passthrough requests, by outcome (counter).
    pub passthrough: PassthroughCounters,
    /// Requests or request parts refused as malformed, by reason (counter).
    pub rejected: RejectedCounters,
    /// Defects in upstream event streams, by kind (counter).
    pub upstream_malformed: MalformedCounters,
    topic_subscribers: IntGaugeVec,
    topic_labels: Mutex<HashMap<String, usize>>,
    max_topic_labels: usize,
}

/// `sse_relay_upstream_failures_total{reason}` children, resolved once.
pub struct UpstreamFailures {
    /// Could not connect or send the request.
    pub connect: IntCounter,
    /// The origin answered a non-2xx status (other than 204).
    pub status: IntCounter,
    /// The origin answered without `text/event-stream`.
    pub content_type: IntCounter,
    /// The stream broke or ended.
    pub stream: IntCounter,
    /// Nothing arrived for `upstream.read_idle_timeout_ms`.
    pub idle_timeout: IntCounter,
    /// The `Last-Event-ID` to resume from cannot be sent as a header; resumed without it.
    pub last_event_id: IntCounter,
}

/// `sse_relay_upstream_malformed_total{kind}` children: what the SSE parsing rules tolerate
/// (WHATWG HTML §9.2.6) but an operator should hear about.
pub struct MalformedCounters {
    /// A field value that was not valid UTF-8 (decoded with U+FFFD).
    pub invalid_utf8: IntCounter,
    /// A `retry` value that was not all digits (ignored).
    pub bad_retry: IntCounter,
    /// An `id` containing U+0000 (ignored).
    pub nul_in_id: IntCounter,
    /// The stream ended in the middle of an event (discarded; resumed with `Last-Event-ID`).
    pub truncated: IntCounter,
}

impl MalformedCounters {
    /// Counts one defect reported by the parser.
    pub fn count(&self, kind: crate::sse::Malformed) {
        use crate::sse::Malformed;
        match kind {
            Malformed::InvalidUtf8 => self.invalid_utf8.inc(),
            Malformed::BadRetry => self.bad_retry.inc(),
            Malformed::NulInId => self.nul_in_id.inc(),
        }
    }
}

/// `sse_relay_requests_rejected_total{reason}` children.
pub struct RejectedCounters {
    /// A path that is an SSE route's only in non-canonical spelling (`//`, trailing `/`, case,
    /// `;params`, dot segments): answered 404, never passed through.
    pub noncanonical_path: IntCounter,
    /// A `Last-Event-ID` (header or `lastEventId` query) that no origin can have sent: ignored.
    pub last_event_id: IntCounter,
}

/// Children by downstream protocol, counters.
pub struct ProtocolCounters {
    /// HTTP/2 (TLS with ALPN h2, or h2c).
    pub h2: IntCounter,
    /// HTTP/1.1.
    pub http1: IntCounter,
    /// No request was ever made on the connection.
    pub none: IntCounter,
}

/// Children by downstream protocol, gauges.
pub struct ProtocolGauges {
    /// HTTP/2.
    pub h2: IntGauge,
    /// HTTP/1.1.
    pub http1: IntGauge,
    /// Not yet known (TLS handshake or first request pending).
    pub pending: IntGauge,
}

/// `sse_relay_connections_refused_total{cap}` children.
pub struct RefusedCounters {
    /// `limits.max_connections`.
    pub global: IntCounter,
    /// `limits.max_connections_per_ip`.
    pub per_ip: IntCounter,
}

/// `sse_relay_connections_closed_total{cause}` children.
pub struct ClosedCounters {
    /// No request within `limits.first_request_timeout_ms`.
    pub first_request_timeout: IntCounter,
    /// No open stream for `limits.idle_connection_timeout_ms`.
    pub idle: IntCounter,
    /// `limits.max_streams_per_connection_lifetime` reached (GOAWAY).
    pub stream_lifetime: IntCounter,
}

/// `sse_relay_auth_denied_total{status}` children.
pub struct AuthDenied {
    /// 401: no or invalid credentials.
    pub unauthorized: IntCounter,
    /// 403: valid credentials without access to the topic.
    pub forbidden: IntCounter,
    /// The authorization server could not answer.
    pub unavailable: IntCounter,
}

/// `sse_relay_cert_reloads_total{result}` children.
pub struct CertReloads {
    /// A new certificate was loaded.
    pub ok: IntCounter,
    /// A changed certificate/key pair was invalid; the old one stays.
    pub rejected: IntCounter,
}

/// `sse_relay_passthrough_requests_total{outcome}` children.
pub struct PassthroughCounters {
    /// Answered by the origin.
    pub ok: IntCounter,
    /// The origin could not be reached (502).
    pub connect_error: IntCounter,
    /// The origin's response headers did not come in time (504).
    pub timeout: IntCounter,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`; at most `max_topic_labels`
    /// distinct topic labels are used in per-topic series.
    ///
    /// # Errors
    /// A `prometheus::Error` if a name is already registered there.
    pub fn new(registry: &Registry, max_topic_labels: usize) -> prometheus::Result<Self> {
        let r = registry;
        let failures = counter_vec(
            r,
            "sse_relay_upstream_failures_total",
            "Upstream attempts that failed or streams that broke, by reason.",
            "reason",
        )?;
        let f = |v: &str| failures.with_label_values(&[v]);
        let accepted = counter_vec(
            r,
            "sse_relay_connections_accepted_total",
            "Downstream connections accepted, by protocol of their first request.",
            "protocol",
        )?;
        let open = IntGaugeVec::new(
            Opts::new(
                "sse_relay_connections_open",
                "Downstream connections open, by protocol.",
            ),
            &["protocol"],
        )?;
        r.register(Box::new(open.clone()))?;
        let reloads = counter_vec(
            r,
            "sse_relay_cert_reloads_total",
            "Certificate reloads, by result.",
            "result",
        )?;
        let passthrough = counter_vec(
            r,
            "sse_relay_passthrough_requests_total",
            "Passthrough requests, by outcome.",
            "outcome",
        )?;
        let refused = counter_vec(
            r,
            "sse_relay_connections_refused_total",
            "Connections refused at a cap.",
            "cap",
        )?;
        let closed = counter_vec(
            r,
            "sse_relay_connections_closed_total",
            "Connections closed by a watchdog, by cause.",
            "cause",
        )?;
        let rejected = counter_vec(
            r,
            "sse_relay_requests_rejected_total",
            "Malformed requests or request parts refused, by reason.",
            "reason",
        )?;
        let malformed = counter_vec(
            r,
            "sse_relay_upstream_malformed_total",
            "Defects in upstream event streams (tolerated by the parsing rules), by kind.",
            "kind",
        )?;
        let denied = counter_vec(
            r,
            "sse_relay_auth_denied_total",
            "Subscriptions refused by authorization, by status.",
            "status",
        )?;
        let topic_subscribers = IntGaugeVec::new(
            Opts::new(
                "sse_relay_topic_subscribers",
                "Subscribers per topic (topics past the label cap share topic=\"other\").",
            ),
            &["topic"],
        )?;
        r.register(Box::new(topic_subscribers.clone()))?;
        Ok(Self {
            subscribers: gauge(r, "sse_relay_subscribers", "Subscribers attached.")?,
            topics: gauge(r, "sse_relay_topics", "Open topics (one upstream each).")?,
            upstream_connects: counter(
                r,
                "sse_relay_upstream_connects_total",
                "Upstream connection attempts.",
            )?,
            upstream_reconnects: counter(
                r,
                "sse_relay_upstream_reconnects_total",
                "Upstream connection attempts after a topic's first.",
            )?,
            upstream_open: gauge(
                r,
                "sse_relay_upstream_subscriptions_open",
                "Upstream event streams established.",
            )?,
            upstream_failures: UpstreamFailures {
                connect: f("connect"),
                status: f("status"),
                content_type: f("content_type"),
                stream: f("stream"),
                idle_timeout: f("idle_timeout"),
                last_event_id: f("last_event_id"),
            },
            events_received: counter(
                r,
                "sse_relay_events_received_total",
                "Events received from origins.",
            )?,
            events_delivered: counter(
                r,
                "sse_relay_events_delivered_total",
                "Event frames written to subscriber streams.",
            )?,
            bytes_delivered: counter(
                r,
                "sse_relay_delivered_bytes_total",
                "Bytes of event frames written to subscriber streams.",
            )?,
            events_oversized: counter(
                r,
                "sse_relay_events_oversized_total",
                "Events dropped for exceeding limits.max_event_bytes.",
            )?,
            subscribers_lagged: counter(
                r,
                "sse_relay_subscribers_lagged_total",
                "Subscribers that fell out of the replay buffer.",
            )?,
            replay_hits: counter(
                r,
                "sse_relay_replay_hits_total",
                "Resumes whose Last-Event-ID was in the replay buffer.",
            )?,
            replay_misses: counter(
                r,
                "sse_relay_replay_misses_total",
                "Resumes whose Last-Event-ID was not in the replay buffer.",
            )?,
            heartbeats: counter(
                r,
                "sse_relay_heartbeats_total",
                "Heartbeat comments sent to subscribers.",
            )?,
            fanout_latency: histogram(
                r,
                "sse_relay_fanout_latency_seconds",
                "Event arrival from upstream to hand-off to a subscriber stream (per hand-off; a batch counts its oldest event).",
                prometheus::exponential_buckets(0.0001, 2.0, 18)?,
            )?,
            subscriber_lag: histogram(
                r,
                "sse_relay_subscriber_lag_events",
                "Events a subscriber was still behind the head after each hand-off.",
                [
                    0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ]
                .to_vec(),
            )?,
            subscriber_stall: histogram(
                r,
                "sse_relay_subscriber_stall_seconds",
                "Time a subscriber stream was not polled while events waited (flow control).",
                prometheus::exponential_buckets(0.001, 4.0, 10)?,
            )?,
            connections_accepted: ProtocolCounters {
                h2: accepted.with_label_values(&["h2"]),
                http1: accepted.with_label_values(&["http/1.1"]),
                none: accepted.with_label_values(&["none"]),
            },
            connections_open: ProtocolGauges {
                h2: open.with_label_values(&["h2"]),
                http1: open.with_label_values(&["http/1.1"]),
                pending: open.with_label_values(&["pending"]),
            },
            tls_handshake_failures: counter(
                r,
                "sse_relay_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out.",
            )?,
            connections_refused: RefusedCounters {
                global: refused.with_label_values(&["global"]),
                per_ip: refused.with_label_values(&["per_ip"]),
            },
            connections_closed: ClosedCounters {
                first_request_timeout: closed.with_label_values(&["first_request_timeout"]),
                idle: closed.with_label_values(&["idle"]),
                stream_lifetime: closed.with_label_values(&["stream_lifetime"]),
            },
            subscribers_shed: counter(
                r,
                "sse_relay_subscribers_shed_total",
                "New subscribers shed because the buffer budget was exceeded.",
            )?,
            buffered_bytes: gauge(
                r,
                "sse_relay_buffered_bytes",
                "Bytes held in all replay rings.",
            )?,
            auth_denied: AuthDenied {
                unauthorized: denied.with_label_values(&["401"]),
                forbidden: denied.with_label_values(&["403"]),
                unavailable: denied.with_label_values(&["unavailable"]),
            },
            draining: gauge(r, "sse_relay_draining", "1 while the relay drains.")?,
            cert_reloads: CertReloads {
                ok: reloads.with_label_values(&["ok"]),
                rejected: reloads.with_label_values(&["rejected"]),
            },
            passthrough: PassthroughCounters {
                ok: passthrough.with_label_values(&["ok"]),
                connect_error: passthrough.with_label_values(&["connect_error"]),
                timeout: passthrough.with_label_values(&["timeout"]),
            },
            upstream_malformed: MalformedCounters {
                invalid_utf8: malformed.with_label_values(&["invalid_utf8"]),
                bad_retry: malformed.with_label_values(&["bad_retry"]),
                nul_in_id: malformed.with_label_values(&["nul_in_id"]),
                truncated: malformed.with_label_values(&["truncated"]),
            },
            rejected: RejectedCounters {
                noncanonical_path: rejected.with_label_values(&["noncanonical_path"]),
                last_event_id: rejected.with_label_values(&["last_event_id"]),
            },
            topic_subscribers,
            topic_labels: Mutex::new(HashMap::new()),
            max_topic_labels,
        })
    }

    /// Counts a connection closed by a watchdog.
    pub fn connection_closed(&self, cause: crate::connection::CloseCause) {
        use crate::connection::CloseCause;
        let c = &self.connections_closed;
        match cause {
            CloseCause::FirstRequestTimeout => c.first_request_timeout.inc(),
            CloseCause::Idle => c.idle.inc(),
            CloseCause::StreamLifetime => c.stream_lifetime.inc(),
        }
    }

    /// The per-topic subscriber gauge for a topic labelled `label`, resolved once per topic.
    /// Past `max_topic_labels` distinct labels, new topics share `other`. Pair every call with
    /// [`Metrics::release_topic_label`].
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

    /// Releases a label taken by [`Metrics::topic_label`]; the series disappears with its last
    /// topic.
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

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
) -> prometheus::Result<Histogram> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_labels_are_capped_and_released() {
        let m = Metrics::new(&Registry::new(), 2).unwrap();
        let (a, _) = m.topic_label("/events/a");
        let (b, _) = m.topic_label("/events/b");
        let (c, gauge_c) = m.topic_label("/events/c");
        assert_eq!(
            (a.as_str(), b.as_str(), c.as_str()),
            ("/events/a", "/events/b", "other")
        );
        gauge_c.inc();
        m.release_topic_label(&a);
        let (d, _) = m.topic_label("/events/d");
        assert_eq!(d, "/events/d", "a released label frees a slot");
    }
}
