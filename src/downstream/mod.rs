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

use crate::hub::Gap;
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
    /// The event type of the in-band gap signal (`downstream.gap_event`; `None`: not sent).
    pub gap_event: Option<String>,
}

impl DownstreamFrames {
    /// Builds the frames for a `retry:` hint of `retry_ms` milliseconds, without a gap
    /// signal (see [`DownstreamFrames::with_gap_event`]).
    pub fn new(retry_ms: u64) -> Self {
        let retry = sse::encode_retry(retry_ms);
        let mut preamble = sse::encode_comment("sse-relay").to_vec();
        preamble.extend_from_slice(&retry);
        Self {
            preamble: Bytes::from(preamble),
            heartbeat: Bytes::from_static(b":\n\n"),
            farewell: retry,
            gap_event: None,
        }
    }

    /// Signals gaps with events of type `event_type` (empty: not at all).
    pub fn with_gap_event(mut self, event_type: &str) -> Self {
        self.gap_event = (!event_type.is_empty()).then(|| event_type.to_string());
        self
    }

    /// The in-band gap signal: an event of the gap type whose data is
    /// `{"last_event_id":…,"next_event_id":…}` (JSON; `null` where unknown) and which has no
    /// `id:` field, so the client's last event id does not move (WHATWG HTML §9.2.6). Browsers
    /// dispatch it only to listeners of that type; `onmessage` never sees it.
    pub fn gap(&self, gap: &Gap) -> Option<Bytes> {
        let event_type = self.gap_event.as_ref()?;
        let data = serde_json::json!({
            "last_event_id": gap.last_event_id.as_deref(),
            "next_event_id": gap.next_event_id.as_deref(),
        });
        Some(sse::encode(&sse::Event {
            id: None,
            event_type: Some(event_type.clone()),
            data: Some(data.to_string()),
        }))
    }
}
