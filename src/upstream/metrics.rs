//! The upstream side's metrics: connects, reconnects, open streams, failures by reason, events
//! received, oversized and malformed.

use prometheus::{IntCounter, IntGauge, Registry};

use crate::ops::metrics::{counter, gauge, Family, Label};
use crate::sse::Malformed;

/// Why an upstream attempt failed or its stream ended (`sse_relay_upstream_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Could not connect or send the request, or the response headers did not come in time.
    Connect,
    /// The origin answered a non-2xx status (other than 204).
    Status,
    /// The origin answered without `text/event-stream`.
    ContentType,
    /// The stream broke or ended.
    Stream,
    /// Nothing arrived for `upstream.read_idle_timeout_ms`.
    IdleTimeout,
    /// The `Last-Event-ID` to resume from cannot be sent as a header; resumed without it.
    LastEventId,
}

impl Label for Failure {
    const ALL: &'static [Self] = &[
        Self::Connect,
        Self::Status,
        Self::ContentType,
        Self::Stream,
        Self::IdleTimeout,
        Self::LastEventId,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Status => "status",
            Self::ContentType => "content_type",
            Self::Stream => "stream",
            Self::IdleTimeout => "idle_timeout",
            Self::LastEventId => "last_event_id",
        }
    }
}

/// A defect in an upstream event stream (`sse_relay_upstream_malformed_total{kind}`): what the
/// parsing rules tolerate (WHATWG HTML §9.2.6) but an operator should hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// A malformed field line, as the parser reports it.
    Field(Malformed),
    /// The stream ended in the middle of an event (discarded; resumed with `Last-Event-ID`).
    Truncated,
}

impl Label for Defect {
    const ALL: &'static [Self] = &[
        Self::Field(Malformed::InvalidUtf8),
        Self::Field(Malformed::BadRetry),
        Self::Field(Malformed::NulInId),
        Self::Truncated,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Field(kind) => kind.label(),
            Self::Truncated => "truncated",
        }
    }
}

/// The metrics of origin subscriptions.
pub struct UpstreamMetrics {
    /// Upstream connection attempts (counter).
    pub connects: IntCounter,
    /// Upstream connection attempts after the first one of a topic (counter).
    pub reconnects: IntCounter,
    /// Upstream event streams established right now (gauge).
    pub open: IntGauge,
    /// Upstream attempts that failed or streams that broke, by reason (counter).
    pub failures: Family<Failure>,
    /// Events received from origins and put into a replay buffer (counter).
    pub events_received: IntCounter,
    /// Events dropped because they exceeded `limits.max_event_bytes` (counter).
    pub events_oversized: IntCounter,
    /// Defects in upstream event streams, by kind (counter).
    pub malformed: Family<Defect>,
}

impl UpstreamMetrics {
    /// Registers the upstream metrics in `registry`.
    ///
    /// # Errors
    /// A `prometheus::Error` if a name is already registered there.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = registry;
        Ok(Self {
            connects: counter(
                r,
                "sse_relay_upstream_connects_total",
                "Upstream connection attempts.",
            )?,
            reconnects: counter(
                r,
                "sse_relay_upstream_reconnects_total",
                "Upstream connection attempts after a topic's first.",
            )?,
            open: gauge(
                r,
                "sse_relay_upstream_subscriptions_open",
                "Upstream event streams established.",
            )?,
            failures: Family::new(
                r,
                "sse_relay_upstream_failures_total",
                "Upstream attempts that failed or streams that broke, by reason.",
                "reason",
            )?,
            events_received: counter(
                r,
                "sse_relay_events_received_total",
                "Events received from origins.",
            )?,
            events_oversized: counter(
                r,
                "sse_relay_events_oversized_total",
                "Events dropped for exceeding limits.max_event_bytes.",
            )?,
            malformed: Family::new(
                r,
                "sse_relay_upstream_malformed_total",
                "Defects in upstream event streams (tolerated by the parsing rules), by kind.",
                "kind",
            )?,
        })
    }
}
