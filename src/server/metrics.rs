//! The serving layer's metrics: connections accepted and open by protocol, refused at a cap,
//! closed by a watchdog, TLS handshake failures, PROXY headers refused and certificate reloads.
//!
//! It owns their names, help texts and labels; it never decides when they change (the
//! connection layer does).

use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

use super::proxy_protocol::Rejection;
use crate::ops::metrics::{counter, Family, Label};

/// Why a watchdog ended a connection (a label of `sse_relay_connections_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// No request within the first-request deadline.
    FirstRequestTimeout,
    /// No open stream for the idle timeout.
    Idle,
    /// The stream lifetime cap was reached.
    StreamLifetime,
}

impl Label for CloseCause {
    const ALL: &'static [Self] = &[Self::FirstRequestTimeout, Self::Idle, Self::StreamLifetime];

    fn label(self) -> &'static str {
        match self {
            Self::FirstRequestTimeout => "first_request_timeout",
            Self::Idle => "idle",
            Self::StreamLifetime => "stream_lifetime",
        }
    }
}

/// A connection cap (`sse_relay_connections_refused_total{cap}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// `limits.max_connections`.
    Global,
    /// `limits.max_connections_per_ip`.
    PerIp,
}

impl Label for Cap {
    const ALL: &'static [Self] = &[Self::Global, Self::PerIp];

    fn label(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::PerIp => "per_ip",
        }
    }
}

/// The outcome of a certificate reload (`sse_relay_cert_reloads_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// A new certificate was loaded.
    Ok,
    /// A changed certificate/key pair was invalid; the old one stays.
    Rejected,
}

impl Label for Reload {
    const ALL: &'static [Self] = &[Self::Ok, Self::Rejected];

    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Rejected => "rejected",
        }
    }
}

/// Counters by downstream protocol.
pub struct ProtocolCounters {
    /// HTTP/2 (TLS with ALPN h2, or h2c).
    pub h2: IntCounter,
    /// HTTP/1.1.
    pub http1: IntCounter,
    /// No request was ever made on the connection.
    pub none: IntCounter,
}

/// Gauges by downstream protocol.
pub struct ProtocolGauges {
    /// HTTP/2.
    pub h2: IntGauge,
    /// HTTP/1.1.
    pub http1: IntGauge,
    /// Not yet known (TLS handshake or first request pending).
    pub pending: IntGauge,
}

impl ProtocolGauges {
    /// Connections open in all, count.
    pub fn total(&self) -> i64 {
        self.h2.get() + self.http1.get() + self.pending.get()
    }
}

/// The metrics of one [`super::Server`] (the relay's is registered for export; the admin
/// listener's and the demo origin's are not).
pub struct ServerMetrics {
    /// Connections accepted, by protocol of their first request (counter).
    pub connections_accepted: ProtocolCounters,
    /// Connections open, by protocol (gauge).
    pub connections_open: ProtocolGauges,
    /// TLS handshakes that failed or timed out (counter).
    pub tls_handshake_failures: IntCounter,
    /// Connections refused at a cap, by cap (counter).
    pub connections_refused: Family<Cap>,
    /// Connections closed by a watchdog, by cause (counter).
    pub connections_closed: Family<CloseCause>,
    /// Certificate reloads, by result (counter).
    pub cert_reloads: Family<Reload>,
    /// Connections closed for want of a valid PROXY header, by reason (counter).
    pub proxy_protocol_rejected: Family<Rejection>,
}

impl ServerMetrics {
    /// Registers the serving metrics in `registry`.
    ///
    /// # Errors
    /// A `prometheus::Error` if a name is already registered there.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = registry;
        let accepted = prometheus::IntCounterVec::new(
            Opts::new(
                "sse_relay_connections_accepted_total",
                "Downstream connections accepted, by protocol of their first request.",
            ),
            &["protocol"],
        )?;
        r.register(Box::new(accepted.clone()))?;
        let open = IntGaugeVec::new(
            Opts::new(
                "sse_relay_connections_open",
                "Downstream connections open, by protocol.",
            ),
            &["protocol"],
        )?;
        r.register(Box::new(open.clone()))?;
        Ok(Self {
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
            connections_refused: Family::new(
                r,
                "sse_relay_connections_refused_total",
                "Connections refused at a cap.",
                "cap",
            )?,
            connections_closed: Family::new(
                r,
                "sse_relay_connections_closed_total",
                "Connections closed by a watchdog, by cause.",
                "cause",
            )?,
            cert_reloads: Family::new(
                r,
                "sse_relay_cert_reloads_total",
                "Certificate reloads, by result.",
                "result",
            )?,
            proxy_protocol_rejected: Family::new(
                r,
                "sse_relay_proxy_protocol_rejected_total",
                "Connections closed for want of a valid PROXY protocol header, by reason.",
                "reason",
            )?,
        })
    }

    /// Metrics registered nowhere: for listeners whose connections are not the relay's
    /// (admin, demo origin).
    pub fn unexported() -> Self {
        Self::new(&Registry::new()).expect("a fresh registry has no names yet")
    }
}
