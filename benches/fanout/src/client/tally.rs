//! What a measurement counts, shared by every stream: deliveries, order errors, ended
//! streams, body frames and TLS records, and the delivery latencies in a sharded HDR
//! histogram.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;

/// Latency histogram shards (a stream records into one, chosen by its connection and index).
pub(super) const SHARDS: usize = 64;

/// Counters and latencies of one measurement, shared by every stream.
pub struct Tally {
    /// Events received (all streams).
    pub delivered: AtomicU64,
    /// Events out of sequence (lost, duplicated or reordered), count.
    pub order_errors: AtomicU64,
    /// Streams that ended or failed while subscribed.
    pub ended: AtomicU64,
    /// Body frames (h2 DATA frames / h1 chunks) that carried at least one event.
    pub event_frames: AtomicU64,
    /// TLS application-data records received (all connections).
    pub records: AtomicU64,
    /// Receive time of the latest delivery, [`super::now_ns`].
    pub last_delivery_ns: AtomicU64,
    /// Record latencies only while set.
    pub recording: AtomicBool,
    /// The negotiated protocol and cipher suite (first connection).
    pub tls_params: OnceLock<String>,
    /// A sequence number to watch for (`u64::MAX`: none); see [`Tally::watch_for`].
    pub(super) mark: AtomicU64,
    /// Streams that have received the event numbered [`Tally::watch_for`] (or a later one).
    pub reached_mark: AtomicU64,
    /// When the latest of those streams got there, [`super::now_ns`].
    pub reached_mark_last_ns: AtomicU64,
    pub(super) latency: Vec<Mutex<Histogram<u64>>>,
}

/// Latency quantiles of a histogram, µs.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Quantiles {
    /// Samples, count.
    pub count: u64,
    /// Median, µs.
    pub p50: u64,
    /// 99th percentile, µs.
    pub p99: u64,
    /// Largest, µs.
    pub max: u64,
}

/// A latency histogram in µs from 1 µs to 10 min, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// The quantiles of `h`.
pub fn quantiles(h: &Histogram<u64>) -> Quantiles {
    Quantiles {
        count: h.len(),
        p50: h.value_at_quantile(0.5),
        p99: h.value_at_quantile(0.99),
        max: h.max(),
    }
}

impl Tally {
    /// A fresh tally.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            delivered: AtomicU64::new(0),
            order_errors: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            event_frames: AtomicU64::new(0),
            records: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            recording: AtomicBool::new(false),
            tls_params: OnceLock::new(),
            mark: AtomicU64::new(u64::MAX),
            reached_mark: AtomicU64::new(0),
            reached_mark_last_ns: AtomicU64::new(0),
            latency: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
        })
    }

    /// From now on, counts in `reached_mark` each stream as it receives event `seq` or a later
    /// one (once per stream), and keeps the time of the latest in `reached_mark_last_ns`. Set it
    /// before `seq` is published.
    pub fn watch_for(&self, seq: u64) {
        self.reached_mark.store(0, Ordering::Release);
        self.reached_mark_last_ns.store(0, Ordering::Release);
        self.mark.store(seq, Ordering::Release);
    }

    /// Clears the latency histograms.
    pub fn reset_latency(&self) {
        for shard in &self.latency {
            if let Ok(mut h) = shard.lock() {
                h.reset();
            }
        }
    }

    /// The merged latency histogram.
    pub fn latency(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.latency {
            if let Ok(h) = shard.lock() {
                let _ = all.add(&*h);
            }
        }
        all
    }

    /// Waits until `target` events were delivered in total; fails after `timeout` or as soon
    /// as a stream ended or an event came out of order.
    pub async fn wait_delivered(&self, target: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check()?;
            let got = self.delivered.load(Ordering::Acquire);
            if got >= target {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("missing deliveries: {got} of {target} arrived within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Fails if a stream ended or an event was lost, duplicated or reordered.
    pub fn check(&self) -> Result<()> {
        let errors = self.order_errors.load(Ordering::Acquire);
        if errors > 0 {
            bail!("{errors} events arrived out of sequence (lost, duplicated or reordered)");
        }
        let ended = self.ended.load(Ordering::Acquire);
        if ended > 0 {
            bail!("{ended} subscriber streams ended while subscribed");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_check_fails_on_order_errors_and_ended_streams() {
        let tally = Tally::new();
        assert!(tally.check().is_ok());
        tally.order_errors.fetch_add(1, Ordering::AcqRel);
        assert!(tally.check().is_err());
        let tally = Tally::new();
        tally.ended.fetch_add(1, Ordering::AcqRel);
        assert!(tally.check().is_err());
    }
}
