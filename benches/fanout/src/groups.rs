//! The shapes of a cluster run: its sizes, the subscriber groups (one topic's subscribers on one
//! relay) that [`crate::cluster`] makes and [`crate::steady`] and [`crate::takeover`] measure,
//! and their merged latency. It starts nothing and measures nothing itself.

use std::sync::Arc;

use hdrhistogram::Histogram;

use crate::client::{self, quantiles, Fleet, Tally};
use crate::scenarios::Values;

/// Sizes of a cluster run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterSizes {
    /// Topics.
    pub topics: usize,
    /// Subscribers per topic, all relays together (split evenly between the three).
    pub per_topic: usize,
    /// h2 streams per connection (each connection carries one topic).
    pub streams: usize,
    /// Latency rounds (after one warm-up): one event on every topic, waited for everywhere.
    pub rounds: u64,
    /// Events per second per topic, published steadily (latency at a steady rate, and
    /// around the kill).
    pub rate: u64,
    /// Seconds of steady publishing whose latency is measured (before the takeover).
    pub steady_s: u64,
    /// Seconds of steady publishing before the kill.
    pub warm_s: u64,
    /// Seconds of steady publishing after the takeover completed.
    pub tail_s: u64,
    /// `cluster.refresh_ms` values: a fresh cluster (and takeover) each.
    pub refresh_ms: Vec<u64>,
}

impl ClusterSizes {
    /// The full size: 10 topics × 3000 subscribers (30,000), 100 streams per connection.
    pub fn full() -> Self {
        Self {
            topics: 10,
            per_topic: 3000,
            streams: 100,
            rounds: 20,
            // 60,000 deliveries/s, as --quick: at 5/s (150,000/s) the client and the relays
            // kept both cores busy and the steady-rate latency measured queueing.
            rate: 2,
            steady_s: 10,
            warm_s: 5,
            tail_s: 3,
            refresh_ms: vec![5000, 1000],
        }
    }

    /// A smoke run: 10 topics × 300 subscribers.
    pub fn quick() -> Self {
        Self {
            topics: 10,
            per_topic: 300,
            streams: 100,
            rounds: 10,
            rate: 20,
            steady_s: 3,
            warm_s: 3,
            tail_s: 2,
            refresh_ms: vec![5000, 1000],
        }
    }
}

/// The subscribers of one topic on one relay.
pub struct Group {
    /// Index of the relay they are connected to.
    pub relay: usize,
    /// Index of the topic.
    pub topic: usize,
    /// Subscribers, count.
    pub subscribers: u64,
    /// Their deliveries.
    pub tally: Arc<Tally>,
    /// Their connections (closed on drop).
    pub(crate) _fleet: Fleet,
}

/// The latency histograms of `groups`, merged.
pub fn merged<'a>(groups: impl Iterator<Item = &'a Group>) -> Histogram<u64> {
    let mut all = client::histogram();
    for g in groups {
        let _ = all.add(g.tally.latency());
    }
    all
}

/// Records `h`'s sample count, p50, p99 and max (µs) under `prefix`.
pub fn put_quantiles(v: &mut Values, prefix: &str, h: &Histogram<u64>) {
    let q = quantiles(h);
    v.insert(format!("{prefix}samples"), q.count as f64);
    v.insert(format!("{prefix}p50_us"), q.p50 as f64);
    v.insert(format!("{prefix}p99_us"), q.p99 as f64);
    v.insert(format!("{prefix}max_us"), q.max as f64);
}
