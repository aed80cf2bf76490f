//! The edge's metrics: authorization denials, passthrough outcomes, malformed requests.

use prometheus::Registry;

use super::answer::RejectReason;
use super::auth::DenialKind;
use super::passthrough::Outcome;
use crate::ops::metrics::Family;

/// The metrics of the per-request decision.
pub struct EdgeMetrics {
    /// Subscriptions refused by authorization, by status (counter).
    pub auth_denied: Family<DenialKind>,
    /// Passthrough requests, by outcome (counter).
    pub passthrough: Family<Outcome>,
    /// Requests or request parts refused as malformed, by reason (counter).
    pub rejected: Family<RejectReason>,
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
        })
    }
}
