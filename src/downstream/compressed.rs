//! A compressed subscriber's bytes (docs/compression.md): everything the body sends goes
//! through the subscriber's [`Coder`], the topic's shared parts as they are where the segment
//! rule allows, the rest compressed on its own; the stream's end (gzip's trailer) when the
//! relay ends it; and the metrics of what was shared and what was the subscriber's own.
//!
//! It owns the coder's few bytes per subscriber; it never compresses a frame the topic has a
//! usable shared part for, and never holds a compressor.

use bytes::Bytes;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::compress::{Coder, Coding, Sent};
use crate::hub::Delivery;

/// The metrics of compressed streams, by coding.
pub struct CompressedMetrics {
    /// Streams sent compressed, by coding (counter; indexed by [`Coding::index`]).
    pub streams: [IntCounter; 2],
    /// Compressed bytes sent that were the topic's shared parts, by coding (counter).
    pub shared_bytes: [IntCounter; 2],
    /// Compressed bytes sent that were a subscriber's own (its opening, heartbeats, gap
    /// signals, events before it reached a segment boundary, headers and trailers), by coding
    /// (counter).
    pub own_bytes: [IntCounter; 2],
}

impl CompressedMetrics {
    /// Registers `sse_relay_compressed_streams_total{coding}` and
    /// `sse_relay_compressed_bytes_total{coding,part}` (`part`: `shared` or `own`).
    ///
    /// # Errors
    /// A `prometheus::Error` if a name is already registered in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let streams = IntCounterVec::new(
            Opts::new(
                "sse_relay_compressed_streams_total",
                "Subscriber streams sent compressed, by content coding.",
            ),
            &["coding"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "sse_relay_compressed_bytes_total",
                "Compressed bytes sent to subscribers, by coding and part: shared (the topic's, compressed once) or own (compressed for one subscriber).",
            ),
            &["coding", "part"],
        )?;
        registry.register(Box::new(streams.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        let by = |part: &str| Coding::ALL.map(|c| bytes.with_label_values(&[c.token(), part]));
        Ok(Self {
            streams: Coding::ALL.map(|c| streams.with_label_values(&[c.token()])),
            shared_bytes: by("shared"),
            own_bytes: by("own"),
        })
    }

    /// Counts one poll's bytes; a part with none is not touched (a live delivery in step has
    /// no bytes of its own, and every counter update is an atomic write shared by all threads).
    fn count(&self, coding: Coding, sent: Sent) {
        if sent.shared > 0 {
            self.shared_bytes[coding.index()].inc_by(sent.shared);
        }
        if sent.own > 0 {
            self.own_bytes[coding.index()].inc_by(sent.own);
        }
    }
}

/// One subscriber's compressed stream.
pub(super) struct Compressed {
    coder: Coder,
}

impl Compressed {
    /// A stream in `coding`, counted.
    pub fn new(coding: Coding, metrics: &CompressedMetrics) -> Self {
        metrics.streams[coding.index()].inc();
        Self {
            coder: Coder::new(coding),
        }
    }

    /// The stream's coding.
    pub fn coding(&self) -> Coding {
        self.coder.coding()
    }

    /// Bytes of the subscriber's own, compressed on their own. `None`: compression failed
    /// (logged; the stream must end).
    pub fn own(&mut self, plain: &[u8], metrics: &CompressedMetrics) -> Option<Bytes> {
        let mut sent = Sent::default();
        let out = self.coder.own(plain, &mut sent);
        self.counted(out, sent, metrics)
    }

    /// A delivery's frames: the ring's, with their shared parts, or a catch-up's replay (which
    /// has none: it is the subscriber's own).
    pub fn delivery(&mut self, delivery: &Delivery, metrics: &CompressedMetrics) -> Option<Bytes> {
        if delivery.packed.is_empty() {
            return self.own(&delivery.frame, metrics);
        }
        let mut sent = Sent::default();
        let frames = delivery
            .packed
            .as_slice()
            .iter()
            .map(|p| (p.frame.as_ref(), p.parts.as_deref()));
        let out = self.coder.frames(frames, &mut sent);
        self.counted(out, sent, metrics)
    }

    /// The subscriber skipped ahead in the ring: it may not send the next shared part as it
    /// is, whatever bytes of its own come first.
    pub fn skipped(&mut self) {
        self.coder.leave_shared();
    }

    /// The stream's end (gzip's final block and trailer, a zstd frame's end), once; `None` when
    /// it was sent or there is nothing to send.
    pub fn finish(&mut self, metrics: &CompressedMetrics) -> Option<Bytes> {
        if self.coder.is_finished() {
            return None;
        }
        let mut sent = Sent::default();
        let end = self.coder.finish(&mut sent);
        metrics.count(self.coder.coding(), sent);
        (!end.is_empty()).then_some(end)
    }

    fn counted(
        &mut self,
        out: std::io::Result<Bytes>,
        sent: Sent,
        metrics: &CompressedMetrics,
    ) -> Option<Bytes> {
        metrics.count(self.coder.coding(), sent);
        match out {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                tracing::warn!(%error, coding = self.coder.coding().token(), "compressing a stream failed: ending it");
                None
            }
        }
    }
}
