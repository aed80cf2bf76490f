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
    /// The codings offered, in the relay's order of preference: `"gzip"`, `"zstd"`. Default
    /// `["gzip", "zstd"]`: every client that asks for compression accepts gzip, so a topic
    /// whose clients differ (browsers, curl, SDKs) runs one compressor, not two (deflate's
    /// 256 KiB against zstd's 0.63 MB); and at the default levels gzip sends the smaller
    /// stream for small events (185-byte ticks 0.27× against 0.30×, LLM deltas 32.6 against
    /// 34.3 bytes each), zstd for large ones (30 KB snapshots 0.097× against 0.105×;
    /// `cargo bench --bench levels`). `br` is refused: a brotli stream cannot drop its history
    /// mid-stream, so a subscriber joining a topic could never share its bytes.
    pub encodings: Vec<String>,
    /// zlib level of each topic's shared gzip compressor, 1–9. Default 9: it runs once per
    /// event per topic, not per subscriber, and zlib-rs's levels 4–6 (its "medium" matcher)
    /// send 6 % more bytes on small events flushed one by one (185-byte ticks: 0.30× their
    /// bytes at 6, 0.28× at 9), for 1–3 µs more per small event and 0.15 ms more per 30 KB
    /// snapshot (docs/compression.md, "Levels").
    pub gzip_level: u32,
    /// zstd level of each topic's shared zstd compressor, 1–19. Default 12: with the relay's
    /// tables (0.63 MB) and matches from 4 bytes, small events in about level 6's time for
    /// 2 % fewer bytes, 30 KB snapshots 0.097× their bytes against 0.111× at level 6 in twice
    /// its time (0.38 ms); levels 16 and up cost a small event 25–85 µs, and a topic of one
    /// subscriber (a request stream) pays that per subscriber.
    pub zstd_level: i32,
    /// A segment (the span of events whose history compression refers back to) ends after
    /// this many events, count. Default 1024: every boundary costs the next events their
    /// history (on small events 1024 sends 3–4 % fewer bytes than 256). A subscriber's join
    /// ends the segment early, at a quarter of any bound and at most 64 events, so a joiner
    /// compresses at most that much on its own before it shares the topic's bytes.
    pub segment_events: u32,
    /// … or after this many uncompressed bytes. Default 262144 (256 KiB of history; deflate's
    /// window is 32 KiB, zstd's is sized to this, at most 64 KiB, which bounds a topic's zstd
    /// compressor to about 0.63 MB).
    pub segment_bytes: usize,
    /// … or this long after it started, ms (checked when the next event comes). Default 30000:
    /// on a slow topic the history still spans enough events to compress well, and a joiner
    /// compresses at most a quarter of that (7.5 s) on its own, one event at a time. Each
    /// heartbeat tick (`downstream.heartbeat_interval_ms`) also starts a segment, as the
    /// subscribers' heartbeats are bytes of their own.
    pub segment_ms: u64,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            encodings: vec!["gzip".into(), "zstd".into()],
            gzip_level: 9,
            zstd_level: 12,
            segment_events: 1024,
            segment_bytes: 256 * 1024,
            segment_ms: 30_000,
        }
    }
}
