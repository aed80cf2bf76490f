//! Downstream: what a subscriber receives. [`EventStreamBody`] is one subscriber's
//! `text/event-stream` body; [`DownstreamFrames`] are the frames every subscriber shares besides
//! events (preamble, heartbeat, farewell).
//!
//! This module owns one subscriber's byte stream; it never touches the upstream and never
//! copies an event: every frame is the topic's shared [`Bytes`].

mod body;
mod metrics;

use bytes::Bytes;

pub use body::EventStreamBody;
pub use metrics::DownstreamMetrics;

use crate::sse;

/// What happens to a subscriber whose cursor fell out of the replay buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LagPolicy {
    /// End its stream; the client reconnects with `Last-Event-ID` (default).
    Disconnect,
    /// Skip to the oldest buffered event and go on (the client misses events).
    Skip,
}

/// Frames shared by every subscriber, built once from the config.
#[derive(Clone)]
pub struct DownstreamFrames {
    /// Sent first: a comment and the `retry:` hint.
    pub preamble: Bytes,
    /// Sent while idle, once per heartbeat interval: the empty comment `:` (3 bytes).
    pub heartbeat: Bytes,
    /// Sent before the relay itself ends a stream (drain, lag): the `retry:` hint.
    pub farewell: Bytes,
}

impl DownstreamFrames {
    /// Builds the frames for a `retry:` hint of `retry_ms` milliseconds.
    pub fn new(retry_ms: u64) -> Self {
        let retry = sse::encode_retry(retry_ms);
        let mut preamble = sse::encode_comment("sse-relay").to_vec();
        preamble.extend_from_slice(&retry);
        Self {
            preamble: Bytes::from(preamble),
            heartbeat: Bytes::from_static(b":\n\n"),
            farewell: retry,
        }
    }
}
