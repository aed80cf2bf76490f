//! The admin listener's own metrics: the tails open on topics, the events they were shown and
//! the tails that fell behind, counted apart from the relay's subscribers (a tail is never in
//! `sse_relay_subscribers` nor in the delivery counters).
//!
//! It registers and names these metrics only; it never decides when one counts.

use prometheus::{IntCounter, IntGauge, Registry};

use crate::ops::metrics::{counter, gauge};

/// The metrics of the admin listener's tails.
pub struct AdminMetrics {
    /// Tails of a topic open on the status page (gauge).
    pub tails: IntGauge,
    /// Events shown to tails (counter; one per tail per event).
    pub tail_events: IntCounter,
    /// Tails whose cursor fell out of their topic's ring, the lag policy applied (counter).
    pub tails_lagged: IntCounter,
}

impl AdminMetrics {
    /// Registers the admin listener's metrics in `registry`.
    ///
    /// # Errors
    /// A `prometheus::Error` if a name is already registered there.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = registry;
        Ok(Self {
            tails: gauge(
                r,
                "sse_relay_admin_tails",
                "Tails of a topic open on the admin status page (not subscribers).",
            )?,
            tail_events: counter(
                r,
                "sse_relay_admin_tail_events_total",
                "Events shown to admin tails (not counted as deliveries).",
            )?,
            tails_lagged: counter(
                r,
                "sse_relay_admin_tails_lagged_total",
                "Admin tails that fell out of their topic's replay buffer.",
            )?,
        })
    }
}
