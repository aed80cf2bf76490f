//! What a measurement counts, shared by every stream: deliveries, order errors, ended
//! streams, body frames, body (DATA) bytes, TLS records and bytes, the delivery latencies in a
//! sharded HDR histogram, and the decoded bytes of the few streams asked to keep them.

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
    /// Bytes read from the TCP connections (TLS records, all connections).
    pub tls_bytes: AtomicU64,
    /// Body bytes received as they came (h2 DATA payload / h1 chunk data, still encoded).
    pub body_bytes: AtomicU64,
    /// Body frames received (h2 DATA frames / h1 chunks), with or without an event.
    pub body_frames: AtomicU64,
    /// Streams whose body did not decode in the coding their response named.
    pub decode_errors: AtomicU64,
    /// The sequence number each stream opened from now on must start at (0 unless set).
    pub first_seq: AtomicU64,
    /// Streams that may still claim a capture slot ([`Tally::keep_first`]).
    pub(super) capture_slots: AtomicU64,
    /// The decoded bytes of the streams that claimed a slot, in slot order.
    pub(super) captures: Mutex<Vec<Vec<u8>>>,
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
            tls_bytes: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
            body_frames: AtomicU64::new(0),
            decode_errors: AtomicU64::new(0),
            first_seq: AtomicU64::new(0),
            capture_slots: AtomicU64::new(0),
            captures: Mutex::new(Vec::new()),
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

    /// The next `n` streams opened keep everything they decode (the whole event stream), for
    /// [`Tally::captured`].
    pub fn keep_first(&self, n: u64) {
        self.capture_slots.store(n, Ordering::Release);
    }

    /// A capture slot for a stream being opened, while any is left.
    pub(super) fn claim_capture(&self) -> Option<usize> {
        self.capture_slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .ok()?;
        let mut captures = self.captures.lock().ok()?;
        captures.push(Vec::new());
        Some(captures.len() - 1)
    }

    /// Appends decoded bytes to capture `slot`.
    pub(super) fn capture(&self, slot: usize, bytes: &[u8]) {
        if let Ok(mut captures) = self.captures.lock() {
            if let Some(c) = captures.get_mut(slot) {
                c.extend_from_slice(bytes);
            }
        }
    }

    /// What the capturing streams decoded so far, one buffer per stream.
    pub fn captured(&self) -> Vec<Vec<u8>> {
        self.captures.lock().map(|c| c.clone()).unwrap_or_default()
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
        let undecodable = self.decode_errors.load(Ordering::Acquire);
        if undecodable > 0 {
            bail!("{undecodable} subscriber streams did not decode in their Content-Encoding");
        }
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
        let tally = Tally::new();
        tally.decode_errors.fetch_add(1, Ordering::AcqRel);
        assert!(tally.check().is_err());
    }

    #[test]
    fn only_the_first_streams_keep_what_they_decode() {
        let tally = Tally::new();
        assert_eq!(tally.claim_capture(), None, "nothing asked");
        tally.keep_first(2);
        let (a, b) = (tally.claim_capture(), tally.claim_capture());
        assert_eq!((a, b, tally.claim_capture()), (Some(0), Some(1), None));
        tally.capture(1, b"data: x\n\n");
        tally.capture(1, b"data: y\n\n");
        assert_eq!(
            tally.captured(),
            vec![Vec::new(), b"data: x\n\ndata: y\n\n".to_vec()]
        );
    }
}
