//! The upstream side's metrics: connects, reconnects, open streams, failures by reason, events
//! received, oversized and malformed.
//!
//! This module registers and names the metrics only; it never decides when one counts.

use prometheus::{IntCounter, IntGauge, Registry};

use crate::ops::metrics::{counter, gauge, Family, Label};
use crate::sse::Malformed;

/// Why an upstream attempt failed or its stream ended (`sse_relay_upstream_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Could not connect or send the request, or the response headers did not come in time.
    Connect,
    /// The origin answered a status the relay retries (5xx but 508, 408, 429).
    Status,
    /// The origin refused the topic for good (any status but 200, 204 and those retried):
    /// passed on.
    Refused,
    /// A redirect the relay does not follow (past 5 hops, to another origin, no `Location`).
    Redirect,
    /// The origin answered 200 without `text/event-stream`.
    ContentType,
    /// The origin's `Content-Encoding` is one the relay does not decode (`compress`, an unknown
    /// coding), or its compressed bytes do not decode (RFC 9110 §8.4): retried as an outage.
    ContentEncoding,
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
        Self::Refused,
        Self::Redirect,
        Self::ContentType,
        Self::ContentEncoding,
        Self::Stream,
        Self::IdleTimeout,
        Self::LastEventId,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Status => "status",
            Self::Refused => "refused",
            Self::Redirect => "redirect",
            Self::ContentType => "content_type",
            Self::ContentEncoding => "content_encoding",
            Self::Stream => "stream",
            Self::IdleTimeout => "idle_timeout",
            Self::LastEventId => "last_event_id",
        }
    }
}

/// The origin's final answer that closed a topic (`sse_relay_upstream_refusals_total{status}`),
/// as its subscribers were told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400 Bad Request.
    BadRequest,
    /// 401 Unauthorized.
    Unauthorized,
    /// 403 Forbidden.
    Forbidden,
    /// 404 Not Found.
    NotFound,
    /// 410 Gone.
    Gone,
    /// Any other 4xx passed on (but 408 and 429, which are retried).
    OtherClientError,
    /// A final answer that is not a 4xx: a 1xx, a 2xx other than 200 and 204, a 3xx the relay
    /// does not follow (EventSource fails on any status but 200, WHATWG HTML §9.2.3).
    Other,
    /// 502 from the relay: answers that were not an event stream, or a redirect not followed.
    BadGateway,
    /// 508 Loop Detected: the origin is a relay that found this subscription in a loop.
    LoopDetected,
}

impl Refusal {
    /// The label of a status passed on.
    pub fn of(status: http::StatusCode) -> Self {
        match status.as_u16() {
            400 => Self::BadRequest,
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            410 => Self::Gone,
            502 => Self::BadGateway,
            508 => Self::LoopDetected,
            _ if status.is_client_error() => Self::OtherClientError,
            _ => Self::Other,
        }
    }
}

impl Label for Refusal {
    const ALL: &'static [Self] = &[
        Self::BadRequest,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::Gone,
        Self::OtherClientError,
        Self::Other,
        Self::BadGateway,
        Self::LoopDetected,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::BadRequest => "400",
            Self::Unauthorized => "401",
            Self::Forbidden => "403",
            Self::NotFound => "404",
            Self::Gone => "410",
            Self::OtherClientError => "4xx",
            Self::Other => "other",
            Self::BadGateway => "502",
            Self::LoopDetected => "508",
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
    /// Topics closed by the origin's final answer, by the status passed on (counter).
    pub refusals: Family<Refusal>,
    /// Upstream requests that sent a header's previous value because its file could not be
    /// re-read (counter).
    pub credential_errors: IntCounter,
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
            refusals: Family::new(
                r,
                "sse_relay_upstream_refusals_total",
                "Topics closed by the origin's final answer (passed on to subscribers), by status.",
                "status",
            )?,
            credential_errors: counter(
                r,
                "sse_relay_upstream_credential_errors_total",
                "Upstream requests that sent a header's previous value (its file unreadable or invalid).",
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
