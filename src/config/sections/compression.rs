//! The `[compression]` table: how event streams are compressed toward clients, once per topic
//! and coding (docs/compression.md), every field documented with its unit, default and why.
//! The raw model only: validated into [`crate::compress::CompressionSettings`].

use serde::Deserialize;

/// `[compression]`: content coding of event streams toward clients (RFC 9110 §8.4).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Compress streams for clients whose `Accept-Encoding` names a coding of `encodings`.
    /// Default true: every browser asks for it on EventSource requests, each event is still
    /// sent the moment it comes (flushed, decodable at once), and the compressor is the
    /// topic's, not the subscriber's (no memory per subscriber).
    pub enabled: bool,
    /// The codings offered, in the relay's order of preference: `"zstd"`, `"gzip"`. Default
    /// `["zstd", "gzip"]` (zstd compresses event streams better and faster; gzip for clients
    /// without zstd). `br` is refused: a brotli stream cannot drop its history mid-stream, so
    /// a subscriber joining a topic could never share its bytes.
    pub encodings: Vec<String>,
    /// zlib level of each topic's shared gzip compressor, 1–9. Default 6 (zlib's own default):
    /// it runs once per event per topic, not per subscriber.
    pub gzip_level: u32,
    /// zstd level of each topic's shared zstd compressor, 1–19. Default 3 (zstd's own
    /// default), once per event per topic.
    pub zstd_level: i32,
    /// A segment (the span of events whose history compression refers back to) ends after
    /// this many events, count. Default 256: a ratio close to an unbounded history for small
    /// events, while a subscriber that joins mid-segment compresses at most this many events
    /// on its own before it shares the topic's bytes.
    pub segment_events: u32,
    /// … or after this many uncompressed bytes. Default 262144 (256 KiB; the zstd window is
    /// sized to it, 8 MiB at most, what browsers decode).
    pub segment_bytes: usize,
    /// … or this long after it started, ms (checked when the next event comes). Default 30000:
    /// on a slow topic the history still spans enough events to compress well, and a joiner
    /// compresses at most that long on its own (one event at a time, as they come). Each
    /// heartbeat tick (`downstream.heartbeat_interval_ms`) also starts a segment, as the
    /// subscribers' heartbeats are bytes of their own.
    pub segment_ms: u64,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            encodings: vec!["zstd".into(), "gzip".into()],
            gzip_level: 6,
            zstd_level: 3,
            segment_events: 256,
            segment_bytes: 256 * 1024,
            segment_ms: 30_000,
        }
    }
}
