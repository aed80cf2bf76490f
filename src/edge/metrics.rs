//! The edge's metrics: authorization denials, passthrough outcomes, WebSocket tunnels,
//! malformed requests.

use prometheus::{IntGauge, Registry};

use crate::ops::metrics::{gauge, Family, Label};

/// The kinds of [`Denial`], as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialKind {
    /// 401.
    Unauthorized,
    /// 403.
    Forbidden,
    /// The authorization server could not answer.
    Unavailable,
}

impl Label for DenialKind {
    const ALL: &'static [Self] = &[Self::Unauthorized, Self::Forbidden, Self::Unavailable];

    fn label(self) -> &'static str {
        match self {
            Self::Unauthorized => "401",
            Self::Forbidden => "403",
            Self::Unavailable => "unavailable",
        }
    }
}

/// How a passthrough request went (`sse_relay_passthrough_requests_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered by the origin.
    Ok,
    /// The origin could not be reached (502).
    ConnectError,
    /// The origin's response headers did not come in time (504).
    Timeout,
}

impl Label for Outcome {
    const ALL: &'static [Self] = &[Self::Ok, Self::ConnectError, Self::Timeout];

    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ConnectError => "connect_error",
            Self::Timeout => "timeout",
        }
    }
}

/// How a passthrough WebSocket opening handshake went
/// (`sse_relay_websocket_tunnels_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelOutcome {
    /// The origin switched protocols (101) and both sides were joined.
    Opened,
    /// The origin answered anything but 101; the client got that answer.
    Refused,
    /// The origin could not be reached or answered late (502, 504), or an upgrade did not
    /// complete after the 101.
    Failed,
}

impl Label for TunnelOutcome {
    const ALL: &'static [Self] = &[Self::Opened, Self::Refused, Self::Failed];

    fn label(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }
}

/// Why a request or request part was refused as malformed
/// (`sse_relay_requests_rejected_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// A path that is an SSE route's only in non-canonical spelling (`//`, trailing `/`, case,
    /// `;params`, dot segments): answered 404, never passed through.
    NoncanonicalPath,
    /// A `Last-Event-ID` (header or `lastEventId` query) that no origin can have sent: ignored.
    LastEventId,
    /// A subscription that has passed through `limits.max_hops` relays already: 508.
    HopLimit,
    /// A missing, repeated or malformed `Host`, or an h2 `host` that names another authority
    /// than `:authority` (RFC 9112 §3.2, RFC 9113 §8.3.1): 400.
    Host,
    /// An h2 request target or scheme the edge does not serve (`:path = *` but for OPTIONS,
    /// a `:scheme` other than http or https; RFC 9113 §8.3.1): 400.
    RequestTarget,
    /// CONNECT or TRACE (RFC 9110 §9.3.6, §9.3.8): 405.
    Method,
    /// A `{jwt.*}` claim that is empty, `.` or `..` (a dot-segment, RFC 3986 §3.3): 403.
    Claim,
    /// A passthrough request body the client framed wrongly (RFC 9112 §7.1): 400.
    RequestBody,
    /// A route variable longer than `limits.max_topic_variable_bytes` (RFC 9110 §15.5.15):
    /// 414.
    VariableTooLong,
}

impl Label for RejectReason {
    const ALL: &'static [Self] = &[
        Self::NoncanonicalPath,
        Self::LastEventId,
        Self::HopLimit,
        Self::Host,
        Self::RequestTarget,
        Self::Method,
        Self::Claim,
        Self::RequestBody,
        Self::VariableTooLong,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::NoncanonicalPath => "noncanonical_path",
            Self::LastEventId => "last_event_id",
            Self::HopLimit => "hop_limit",
            Self::Host => "host",
            Self::RequestTarget => "request_target",
            Self::Method => "method",
            Self::Claim => "claim",
            Self::RequestBody => "request_body",
            Self::VariableTooLong => "variable_too_long",
        }
    }
}

/// The metrics of the per-request decision.
pub struct EdgeMetrics {
    /// Subscriptions refused by authorization, by status (counter).
    pub auth_denied: Family<DenialKind>,
    /// Passthrough requests, by outcome (counter).
    pub passthrough: Family<Outcome>,
    /// Requests or request parts refused as malformed, by reason (counter).
    pub rejected: Family<RejectReason>,
    /// Passthrough WebSocket opening handshakes, by outcome (counter).
    pub websocket_tunnels: Family<TunnelOutcome>,
    /// WebSocket tunnels open (gauge).
    pub websocket_tunnels_open: IntGauge,
}

impl EdgeMetrics {
    /// Registers the edge's metrics in `registry`.
    ///
    /// # Errors
    /// A `prometheus::Error` if a name is already registered there.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            auth_denied: Family::new(
                registry,
                "sse_relay_auth_denied_total",
                "Subscriptions refused by authorization, by status.",
                "status",
            )?,
            passthrough: Family::new(
                registry,
                "sse_relay_passthrough_requests_total",
                "Passthrough requests, by outcome.",
                "outcome",
            )?,
            rejected: Family::new(
                registry,
                "sse_relay_requests_rejected_total",
                "Malformed requests or request parts refused, by reason.",
                "reason",
            )?,
            websocket_tunnels: Family::new(
                registry,
                "sse_relay_websocket_tunnels_total",
                "Passthrough WebSocket opening handshakes, by outcome.",
                "outcome",
            )?,
            websocket_tunnels_open: gauge(
                registry,
                "sse_relay_websocket_tunnels_open",
                "WebSocket tunnels open.",
            )?,
        })
    }
}
