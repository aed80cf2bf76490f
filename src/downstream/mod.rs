//! Downstream: what a subscriber receives. [`EventStreamBody`] is one subscriber's
//! `text/event-stream` body; [`DownstreamFrames`] are the frames every subscriber shares besides
//! events and the origin's `retry:` (the opening comment, the relay's `retry:` hint, the
//! heartbeat).
//!
//! This module owns one subscriber's byte stream; it never touches the upstream and never
//! copies an event: every frame is the topic's shared [`Bytes`].

mod body;
mod compressed;
mod metrics;

use bytes::Bytes;

pub use body::EventStreamBody;
pub use compressed::CompressedMetrics;
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
    /// Sent first, at once (some intermediaries hold the response headers until body bytes
    /// come): the comment `: sse-relay`.
    pub opening: Bytes,
    /// The relay's own `retry:` hint (`downstream.retry_hint_ms`; WHATWG HTML §9.2.6: the
    /// `retry` field sets the client's reconnection time). Sent right after the opening
    /// comment when the topic's origin set no `retry:` (else the origin's goes there), and
    /// right before the relay itself ends a stream (drain, lag policy, an expiring
    /// credential), so the client reconnects promptly, to another replica if this one goes;
    /// the next stream tells it the origin's value again. `None`: never sent (the peer link,
    /// where every `retry:` is the origin's).
    pub hint: Option<Bytes>,
    /// Sent while idle, once per heartbeat interval: the empty comment `:` (3 bytes).
    pub heartbeat: Bytes,
    /// The event type of the in-band gap signal (`downstream.gap_event`; `None`: not sent).
    pub gap_event: Option<String>,
}

impl DownstreamFrames {
    /// Builds the frames for a `retry:` hint of `retry_ms` milliseconds, without a gap
    /// signal (see [`DownstreamFrames::with_gap_event`]).
    pub fn new(retry_ms: u64) -> Self {
        Self {
            opening: sse::encode_comment("sse-relay"),
            hint: Some(sse::encode_retry(retry_ms)),
            heartbeat: Bytes::from_static(b":\n\n"),
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
