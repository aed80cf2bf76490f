//! The subscriber side's metrics: deliveries, bytes, hand-off latency, lag, stalls, heartbeats
//! and lagged subscribers.
//!
//! It owns their names and help texts and how a hand-off is counted; it never decides what a
//! subscriber is sent.

use prometheus::{Histogram, IntCounter, Registry};

use super::compressed::CompressedMetrics;
use crate::hub::Delivery;
use crate::ops::metrics::{counter, histogram};

/// The metrics of subscribers' streams.
pub struct DownstreamMetrics {
    /// Event frames written to subscribers' streams (counter; one per subscriber per event).
    pub events_delivered: IntCounter,
    /// Bytes of event frames written to subscribers' streams (counter).
    pub bytes_delivered: IntCounter,
    /// Subscribers whose cursor fell out of the replay buffer (lag policy applied) (counter).
    pub subscribers_lagged: IntCounter,
    /// Heartbeat comments sent to subscribers (counter).
    pub heartbeats: IntCounter,
    /// Gaps met by subscribers (a resume from an id no longer buffered, a lag skip), each
    /// signalled in-band when `downstream.gap_event` is set (counter).
    pub gaps: IntCounter,
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
    /// Compressed streams and their bytes, shared and own.
    pub compressed: CompressedMetrics,
}

impl DownstreamMetrics {
    /// Registers the subscriber-side metrics in `registry`.
    ///
    /// # Errors
    /// A `prometheus::Error` if a name is already registered there.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = registry;
        Ok(Self {
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
            subscribers_lagged: counter(
                r,
                "sse_relay_subscribers_lagged_total",
                "Subscribers that fell out of the replay buffer.",
            )?,
            heartbeats: counter(
                r,
                "sse_relay_heartbeats_total",
                "Heartbeat comments sent to subscribers.",
            )?,
            gaps: counter(
                r,
                "sse_relay_subscriber_gaps_total",
                "Gaps met by subscribers (resume from an id no longer buffered, lag skip).",
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
            compressed: CompressedMetrics::new(r)?,
        })
    }

    /// Counts one hand-off to a subscriber's stream: its events and bytes, the fan-out
    /// latency, the lag left behind it, and the stall before it, if any.
    #[inline]
    pub fn delivered(&self, delivery: &Delivery, bytes: usize) {
        self.events_delivered.inc_by(delivery.events);
        self.bytes_delivered.inc_by(bytes as u64);
        self.fanout_latency
            .observe((delivery.handed_at - delivery.received_at).as_secs_f64());
        self.subscriber_lag.observe(delivery.behind as f64);
        if let Some(stall) = delivery.stalled_for {
            self.subscriber_stall.observe(stall.as_secs_f64());
        }
    }
}
