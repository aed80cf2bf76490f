//! The response body a subscriber reads: the opening comment at once (so intermediaries release
//! the headers) and the `retry:` the stream starts with (the origin's current one, shared by the
//! topic, else the relay's hint), then the topic's shared frames from the subscriber's cursor
//! (events and the origin's `retry:` changes), heartbeat comments while idle, the lag policy,
//! and the relay's `retry:` hint when the relay ends the stream. A stream in a content coding
//! sends all of it through its [`Compressed`] coder (the topic's shared parts where it may) and
//! ends with the coding's end (gzip's trailer).
//!
//! It owns one subscriber's position (a cursor and a waker, through its [`Subscription`]); it
//! must never keep a queue of its own or copy an event: every frame it sends is shared.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame};

use super::compressed::Compressed;
use super::metrics::DownstreamMetrics;
use super::{DownstreamFrames, LagPolicy};
use crate::compress::Coding;
use crate::hub::{CloseReason, Next, Subscription};

enum State {
    Live(Subscription),
    /// Send the relay's `retry:` hint, then end.
    Ending,
    Done,
}

/// What of the stream's start is still to be sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// The opening comment, then the `retry:`.
    Comment,
    /// The `retry:`: the origin's current one, else the relay's hint.
    Retry,
    /// Nothing.
    Sent,
}

/// The `text/event-stream` body of one subscriber. 104 bytes, inline in each stream's future,
/// so the frames it sends besides the subscription's (the opening comment, the `retry:`) are
/// shared ones ([`DownstreamFrames`], the topic's `retry:` frame), not copies.
pub struct EventStreamBody {
    /// What of the stream's start is still to be sent.
    opening: Opening,
    /// Set for streams authorized by an expiring credential: end (after a `retry:` hint) then.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    state: State,
    frames: Arc<DownstreamFrames>,
    lag_policy: LagPolicy,
    metrics: Arc<DownstreamMetrics>,
    /// The stream's coding and its state (`None`: identity).
    compressed: Option<Box<Compressed>>,
}

impl EventStreamBody {
    /// A live stream over `subscription`, compressed in the subscription's coding if it has
    /// one ([`Subscription::compress_in`]).
    pub fn live(
        subscription: Subscription,
        frames: Arc<DownstreamFrames>,
        lag_policy: LagPolicy,
        metrics: Arc<DownstreamMetrics>,
    ) -> Self {
        let compressed = subscription
            .coding()
            .map(|coding| Box::new(Compressed::new(coding, &metrics.compressed)));
        Self {
            opening: Opening::Comment,
            deadline: None,
            state: State::Live(subscription),
            frames,
            lag_policy,
            metrics,
            compressed,
        }
    }

    /// The stream's content coding (`None`: identity), for its `Content-Encoding`.
    pub fn coding(&self) -> Option<Coding> {
        self.compressed.as_deref().map(Compressed::coding)
    }

    /// A stream that only says "retry later" and ends (used while draining): still a 200
    /// `text/event-stream`, because a browser's EventSource gives up for good on any other
    /// answer (WHATWG HTML §9.2.3).
    pub fn retry_later(frames: Arc<DownstreamFrames>, metrics: Arc<DownstreamMetrics>) -> Self {
        Self {
            opening: Opening::Comment,
            deadline: None,
            state: State::Ending,
            frames,
            lag_policy: LagPolicy::Disconnect,
            metrics,
            compressed: None,
        }
    }
}

impl EventStreamBody {
    /// Ends the stream (after a `retry:` hint) before `expires`, the credential's expiry, so
    /// a revoked or expired credential stops receiving: at a random moment in the last tenth
    /// of its remaining life (at most 30 s before it), which spreads the reconnects.
    pub fn ending_by(mut self, expires: Option<SystemTime>) -> Self {
        let Some(expires) = expires else {
            return self;
        };
        let left = expires
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let spread = (left / 10).min(Duration::from_secs(30));
        let early = spread.mul_f64(rand::random::<f64>());
        let at = tokio::time::Instant::now() + (left - early);
        self.deadline = Some(Box::pin(tokio::time::sleep_until(at)));
        self
    }
}

impl EventStreamBody {
    /// The next frame of the stream's start, if one is still to be sent: the opening comment,
    /// then the `retry:` (none when neither the origin nor this listener has one).
    #[inline]
    fn opening_frame(&mut self) -> Option<Bytes> {
        match self.opening {
            Opening::Comment => {
                self.opening = Opening::Retry;
                Some(self.frames.opening.clone())
            }
            Opening::Retry => {
                self.opening = Opening::Sent;
                self.retry()
            }
            Opening::Sent => None,
        }
    }

    /// The `retry:` a stream starts with: the topic's origin's current one (WHATWG HTML §9.2.6:
    /// the reconnection time is the origin's to set), else the relay's hint. Read after the
    /// subscriber attached, so a later change reaches it through the ring.
    fn retry(&self) -> Option<Bytes> {
        let origin = match &self.state {
            State::Live(subscription) => subscription.topic().retry(),
            State::Ending | State::Done => None,
        };
        origin.or_else(|| self.frames.hint.clone())
    }

    /// Once the credential's deadline has passed, a live stream turns to ending (the farewell
    /// `retry:` hint, then the end).
    #[inline]
    fn end_if_expired(&mut self, cx: &mut Context<'_>) {
        let expired = self
            .deadline
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
        if expired && matches!(self.state, State::Live(_)) {
            self.deadline = None;
            self.state = State::Ending;
        }
    }

    /// The bytes to send for `next`, counted; `None` when there are none for it (the state
    /// may have changed: poll again).
    #[inline]
    fn bytes_for(&mut self, next: Next) -> Option<Bytes> {
        match next {
            Next::Frame(delivery) => {
                let bytes = match self.compressed.as_deref_mut() {
                    None => Some(delivery.frame.clone()),
                    Some(compressed) => {
                        let out = compressed.delivery(&delivery, &self.metrics.compressed);
                        out.or_else(|| self.broken())
                    }
                };
                self.metrics
                    .delivered(&delivery, bytes.as_ref().map_or(0, Bytes::len));
                bytes
            }
            Next::Gap(gap) => {
                self.metrics.gaps.inc();
                let signal = self.frames.gap(&gap)?;
                self.wire(signal)
            }
            Next::Heartbeat => {
                self.metrics.heartbeats.inc();
                self.wire(self.frames.heartbeat.clone())
            }
            Next::Lagged => {
                self.metrics.subscribers_lagged.inc();
                self.apply_lag_policy();
                None
            }
            Next::Closed(
                CloseReason::OriginClosed
                | CloseReason::OriginRefused
                | CloseReason::Finished
                | CloseReason::Cancelled,
            ) => {
                self.state = State::Done;
                None
            }
            Next::Closed(CloseReason::Draining | CloseReason::Retired) => {
                self.state = State::Ending;
                None
            }
        }
    }

    /// `plain`, bytes of this stream's own, as they go on the wire: as they are, or compressed
    /// on their own. `None`: compression failed and the stream ends.
    fn wire(&mut self, plain: Bytes) -> Option<Bytes> {
        match self.compressed.as_deref_mut() {
            None => Some(plain),
            Some(compressed) => compressed
                .own(&plain, &self.metrics.compressed)
                .or_else(|| self.broken()),
        }
    }

    /// Compression failed (logged): the stream ends at once, without the coding's end.
    fn broken(&mut self) -> Option<Bytes> {
        self.compressed = None;
        self.opening = Opening::Sent;
        self.state = State::Done;
        None
    }

    /// The coding's end (gzip's trailer, a zstd frame's end), once, when the stream ends.
    fn coding_end(&mut self) -> Option<Bytes> {
        self.compressed
            .as_deref_mut()?
            .finish(&self.metrics.compressed)
    }

    /// The subscriber's cursor fell out of the ring: skip to the oldest event still held, or
    /// end the stream (so the client reconnects with `Last-Event-ID`).
    fn apply_lag_policy(&mut self) {
        let State::Live(subscription) = &mut self.state else {
            return;
        };
        match self.lag_policy {
            LagPolicy::Skip => {
                subscription.skip_to_oldest();
                if let Some(compressed) = self.compressed.as_deref_mut() {
                    compressed.skipped();
                }
                // A change of the origin's `retry:` may have been among the skipped frames.
                self.opening = Opening::Retry;
            }
            LagPolicy::Disconnect => {
                tracing::debug!(topic = %subscription.topic().shown(), "subscriber lagged: ending its stream");
                self.state = State::Ending;
            }
        }
    }
}

impl Body for EventStreamBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        this.end_if_expired(cx);
        loop {
            if let Some(mut frame) = this.opening_frame() {
                if this.compressed.is_some() {
                    // One piece of its own for the whole opening, not one per frame.
                    while let Some(more) = this.opening_frame() {
                        frame = [frame, more].concat().into();
                    }
                }
                match this.wire(frame) {
                    Some(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    None => continue,
                }
            }
            let subscription = match &mut this.state {
                State::Live(subscription) => subscription,
                State::Ending => {
                    this.state = State::Done;
                    match this.frames.hint.clone().and_then(|hint| this.wire(hint)) {
                        Some(hint) => return Poll::Ready(Some(Ok(Frame::data(hint)))),
                        None => continue,
                    }
                }
                State::Done => {
                    return Poll::Ready(this.coding_end().map(|end| Ok(Frame::data(end))));
                }
            };
            let next = match subscription.poll_next(cx) {
                Poll::Ready(next) => next,
                Poll::Pending => return Poll::Pending,
            };
            if let Some(data) = this.bytes_for(next) {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.opening == Opening::Sent
            && matches!(self.state, State::Done)
            && self.compressed.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every live stream's future holds its body and subscription inline (hyper's `H2Stream`):
    /// sizes guarded, the opening and the `retry:` taken from shared frames, the rare
    /// subscription state boxed, a compressed stream's coder one pointer (every byte here is
    /// paid once per live stream).
    #[test]
    fn a_live_streams_body_stays_small() {
        assert!(std::mem::size_of::<Subscription>() <= 64);
        assert!(std::mem::size_of::<EventStreamBody>() <= 104);
    }
}
