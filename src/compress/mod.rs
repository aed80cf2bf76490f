//! Content coding of event streams toward clients (RFC 9110 §8.4): which coding a client gets
//! ([`negotiate`]), the one compressor per topic and coding whose bytes every subscriber of
//! that coding shares ([`shared`]: each event compressed once and flushed at once, history
//! reset at segment boundaries), the pieces a subscriber gets on its own ([`own`]: standalone,
//! never referring to anything before them), and the framing that joins both into one valid
//! gzip or zstd stream per subscriber ([`coder`]: header, the rule of what may go between
//! shared bytes, frame ends, gzip's trailer).
//!
//! Compression itself is flate2's (zlib-rs) and zstd's, called the same way by both kinds of
//! compressor ([`flush`]); this module owns only the framing of
//! shared compressed bytes (docs/compression.md). It knows nothing of topics, subscribers or
//! HTTP, and it never holds a compressor per subscriber: a subscriber's state is a few bytes
//! ([`Coder`]).

mod coder;
mod flush;
pub mod negotiate;
mod own;
mod shared;
#[cfg(test)]
mod tests;

pub use coder::{Coder, Sent};
pub use negotiate::negotiate;
pub use shared::{Compressors, Part, Parts};

use std::time::Duration;

/// A content coding the relay compresses event streams with (RFC 9110 §8.4.1).
///
/// br is not one: a brotli stream cannot drop its history in mid-stream (RFC 7932 has no
/// counterpart of deflate's full flush), so a subscriber joining mid-stream could never be
/// given the shared bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// zstd (RFC 8878 §7.2): one zstd frame per segment.
    Zstd,
    /// gzip (RFC 1952; RFC 9110 §8.4.1.3): one gzip member per stream, its deflate blocks
    /// (RFC 1951) shared between full-flush points.
    Gzip,
}

impl Coding {
    /// Every coding, in the order of their indices (the relay's order of preference is
    /// `compression.encodings`).
    pub const ALL: [Coding; 2] = [Coding::Zstd, Coding::Gzip];

    /// The coding's token in `Accept-Encoding` and `Content-Encoding` (RFC 9110 §8.4.1).
    pub fn token(self) -> &'static str {
        match self {
            Self::Zstd => "zstd",
            Self::Gzip => "gzip",
        }
    }

    /// The coding named by `token` (case-insensitive, RFC 9110 §8.4.1), if the relay has it.
    pub fn from_token(token: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.token().eq_ignore_ascii_case(token))
    }

    /// Its index in [`Coding::ALL`] (and in [`Parts`]).
    pub fn index(self) -> usize {
        match self {
            Self::Zstd => 0,
            Self::Gzip => 1,
        }
    }
}

/// When a topic's shared compressor starts a new segment (drops its history): whichever bound
/// is reached first. A subscriber that joins, resumes or had bytes of its own inserted waits
/// for the next boundary to share the topic's bytes, getting its events compressed on its own
/// meanwhile; so shorter segments cost ratio, longer ones cost joiners' CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRule {
    /// Events in a segment, at most, count.
    pub events: u32,
    /// Uncompressed bytes in a segment, at most (a single larger event makes a segment of its
    /// own).
    pub bytes: usize,
    /// How long a segment lasts, at most (checked when the next event comes).
    pub duration: Duration,
}

/// How the relay compresses event streams toward clients (`[compression]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionSettings {
    /// The codings offered, in the relay's order of preference (empty: compression is off).
    pub codings: [Option<Coding>; 2],
    /// Where segments end.
    pub segment: SegmentRule,
    /// zlib level of a topic's shared gzip compressor (1–9).
    pub gzip_level: u32,
    /// zstd level of a topic's shared zstd compressor (1–19).
    pub zstd_level: i32,
}

impl CompressionSettings {
    /// Compression off: every stream is sent as it is.
    pub const OFF: Self = Self {
        codings: [None, None],
        segment: SegmentRule {
            events: 1024,
            bytes: 256 * 1024,
            duration: Duration::from_secs(30),
        },
        gzip_level: 9,
        zstd_level: 12,
    };

    /// The codings offered, in order of preference.
    pub fn offered(&self) -> impl Iterator<Item = Coding> + '_ {
        self.codings.iter().flatten().copied()
    }

    /// True when any coding is offered.
    pub fn enabled(&self) -> bool {
        self.offered().next().is_some()
    }
}
