//! Prometheus metrics: one [`Metrics`] struct owning every series the relay exports, registered
//! in a registry the caller owns (no global statics), so tests read values directly.
//!
//! Names follow Prometheus conventions (`sse_relay_…_total` for counters). Labelled children are
//! resolved once here, never per event.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Every metric of the relay.
#[derive(Clone)]
pub struct Metrics {
    /// Subscribers currently attached to a topic (gauge).
    pub subscribers: IntGauge,
    /// Topics currently open, each with one upstream subscription task (gauge).
    pub topics: IntGauge,
    /// Upstream connection attempts (counter).
    pub upstream_connects: IntCounter,
    /// Upstream attempts that failed or streams that broke, by reason (counter).
    pub upstream_failures: UpstreamFailures,
    /// Events received from origins and put into a replay buffer (counter).
    pub events_received: IntCounter,
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
    /// Downstream connections accepted (counter).
    pub connections_accepted: IntCounter,
    /// Downstream connections open (gauge).
    pub connections_open: IntGauge,
    /// TLS handshakes that failed or timed out (counter).
    pub tls_handshake_failures: IntCounter,
    /// Connections refused because `limits.max_connections` was reached (counter).
    pub connections_refused: IntCounter,
}

/// `sse_relay_upstream_failures_total{reason}` children, resolved once.
#[derive(Clone)]
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
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Errors
    /// A `prometheus::Error` if a name is already registered there.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let failures = IntCounterVec::new(
            Opts::new(
                "sse_relay_upstream_failures_total",
                "Upstream attempts that failed or streams that broke, by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(failures.clone()))?;
        let child = |reason: &str| failures.with_label_values(&[reason]);
        let metrics = Self {
            subscribers: gauge(registry, "sse_relay_subscribers", "Subscribers attached.")?,
            topics: gauge(
                registry,
                "sse_relay_topics",
                "Open topics (one upstream each).",
            )?,
            upstream_connects: counter(
                registry,
                "sse_relay_upstream_connects_total",
                "Upstream connection attempts.",
            )?,
            upstream_failures: UpstreamFailures {
                connect: child("connect"),
                status: child("status"),
                content_type: child("content_type"),
                stream: child("stream"),
                idle_timeout: child("idle_timeout"),
            },
            events_received: counter(
                registry,
                "sse_relay_events_received_total",
                "Events received from origins.",
            )?,
            events_oversized: counter(
                registry,
                "sse_relay_events_oversized_total",
                "Events dropped for exceeding limits.max_event_bytes.",
            )?,
            subscribers_lagged: counter(
                registry,
                "sse_relay_subscribers_lagged_total",
                "Subscribers that fell out of the replay buffer.",
            )?,
            replay_hits: counter(
                registry,
                "sse_relay_replay_hits_total",
                "Resumes whose Last-Event-ID was in the replay buffer.",
            )?,
            replay_misses: counter(
                registry,
                "sse_relay_replay_misses_total",
                "Resumes whose Last-Event-ID was not in the replay buffer.",
            )?,
            heartbeats: counter(
                registry,
                "sse_relay_heartbeats_total",
                "Heartbeat comments sent to subscribers.",
            )?,
            connections_accepted: counter(
                registry,
                "sse_relay_connections_accepted_total",
                "Downstream connections accepted.",
            )?,
            connections_open: gauge(
                registry,
                "sse_relay_connections_open",
                "Downstream connections open.",
            )?,
            tls_handshake_failures: counter(
                registry,
                "sse_relay_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out.",
            )?,
            connections_refused: counter(
                registry,
                "sse_relay_connections_refused_total",
                "Connections refused at limits.max_connections.",
            )?,
        };
        Ok(metrics)
    }
}

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}
