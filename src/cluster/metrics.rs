//! The cluster's metrics: the peer set, which topics this relay reads from the origin or from
//! a peer, ownership moves, and refused peer requests.
//!
//! This module registers and names the metrics only; it never decides when one counts.

use prometheus::{IntCounter, IntGauge, Registry};

use crate::ops::metrics::{counter, gauge};

/// The metrics of cluster mode (registered, at 0, on every relay).
pub struct ClusterMetrics {
    /// Peers resolved from `cluster.peers` and `cluster.dns_name`, this relay included (gauge).
    pub peers_known: IntGauge,
    /// Peers that answered their last probe, this relay included (gauge).
    pub peers_up: IntGauge,
    /// Topics whose upstream reads the origin while in a cluster (gauge).
    pub owned_topics: IntGauge,
    /// Topics whose upstream reads another relay, the topic's owner (gauge).
    pub peer_subscriptions: IntGauge,
    /// Times a topic's upstream moved between the origin and a peer, or between peers (counter).
    pub ownership_moves: IntCounter,
    /// Refreshes that resolved no peer but this relay (it serves as a single node) (counter).
    pub resolve_failures: IntCounter,
    /// Requests on the peer listener refused for a missing or wrong token (counter).
    pub peer_refused: IntCounter,
}

impl ClusterMetrics {
    /// Registers the metrics in `registry`.
    ///
    /// # Errors
    /// A `prometheus::Error` if a name is already registered there.
    pub fn new(r: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            peers_known: gauge(
                r,
                "sse_relay_cluster_peers_known",
                "Peers resolved, this relay included.",
            )?,
            peers_up: gauge(
                r,
                "sse_relay_cluster_peers_up",
                "Peers that answered their last probe, this relay included when it is a member.",
            )?,
            owned_topics: gauge(
                r,
                "sse_relay_cluster_owned_topics",
                "Topics this relay reads from the origin while in a cluster.",
            )?,
            peer_subscriptions: gauge(
                r,
                "sse_relay_cluster_peer_subscriptions",
                "Topics this relay reads from their owner, another relay.",
            )?,
            ownership_moves: counter(
                r,
                "sse_relay_cluster_ownership_moves_total",
                "Times a topic's upstream moved to another source (origin or peer).",
            )?,
            resolve_failures: counter(
                r,
                "sse_relay_cluster_resolve_failures_total",
                "Peer refreshes that found no peer but this relay.",
            )?,
            peer_refused: counter(
                r,
                "sse_relay_cluster_peer_refused_total",
                "Peer-listener requests refused for a missing or wrong token.",
            )?,
        })
    }
}
