//! The response body a subscriber reads: the preamble at once (so intermediaries release the
//! headers), then the topic's shared frames from the subscriber's cursor, heartbeat comments
//! while idle, the lag policy, and a farewell `retry:` hint when the relay ends the stream.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame};

use super::metrics::DownstreamMetrics;
use super::{DownstreamFrames, LagPolicy};
use crate::hub::{CloseReason, Next, Subscription};

enum State {
    Live(Subscription),
    /// Send the farewell frame, then end.
    Ending,
    Done,
}

/// The `text/event-stream` body of one subscriber. 96 bytes, inline in each stream's future,
/// so the frames it sends besides the subscription's (preamble, farewell) are the shared
/// [`DownstreamFrames`], not copies.
pub struct EventStreamBody {
    /// The preamble is still to be sent.
    preamble: bool,
    /// Set for streams authorized by an expiring credential: end (after a `retry:` hint) then.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    state: State,
    frames: Arc<DownstreamFrames>,
    lag_policy: LagPolicy,
    metrics: Arc<DownstreamMetrics>,
}

impl EventStreamBody {
    /// A live stream over `subscription`.
    pub fn live(
        subscription: Subscription,
        frames: Arc<DownstreamFrames>,
        lag_policy: LagPolicy,
        metrics: Arc<DownstreamMetrics>,
    ) -> Self {
        Self {
            preamble: true,
            deadline: None,
            state: State::Live(subscription),
            frames,
            lag_policy,
            metrics,
        }
    }

    /// A stream that only says "retry later" and ends (used while draining): still a 200
    /// `text/event-stream`, because a browser's EventSource gives up for good on any other
    /// answer (WHATWG HTML §9.2.3).
    pub fn retry_later(frames: Arc<DownstreamFrames>, metrics: Arc<DownstreamMetrics>) -> Self {
        Self {
            preamble: true,
            deadline: None,
            state: State::Ending,
            frames,
            lag_policy: LagPolicy::Disconnect,
            metrics,
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

impl Body for EventStreamBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.preamble) {
            return Poll::Ready(Some(Ok(Frame::data(this.frames.preamble.clone()))));
        }
        let expired = this
            .deadline
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
        if expired && matches!(this.state, State::Live(_)) {
            this.deadline = None;
            this.state = State::Ending;
        }
        loop {
            let subscription = match &mut this.state {
                State::Live(subscription) => subscription,
                State::Ending => {
                    this.state = State::Done;
                    return Poll::Ready(Some(Ok(Frame::data(this.frames.farewell.clone()))));
                }
                State::Done => return Poll::Ready(None),
            };
            let data = match subscription.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Next::Frame(delivery)) => {
                    let metrics = &this.metrics;
                    metrics.events_delivered.inc_by(delivery.events);
                    metrics.bytes_delivered.inc_by(delivery.frame.len() as u64);
                    metrics
                        .fanout_latency
                        .observe((delivery.handed_at - delivery.received_at).as_secs_f64());
                    metrics.subscriber_lag.observe(delivery.behind as f64);
                    if let Some(stall) = delivery.stalled_for {
                        metrics.subscriber_stall.observe(stall.as_secs_f64());
                    }
                    delivery.frame
                }
                Poll::Ready(Next::Gap(gap)) => {
                    this.metrics.gaps.inc();
                    match this.frames.gap(&gap) {
                        Some(frame) => frame,
                        None => continue,
                    }
                }
                Poll::Ready(Next::Heartbeat) => {
                    this.metrics.heartbeats.inc();
                    this.frames.heartbeat.clone()
                }
                Poll::Ready(Next::Lagged) => {
                    this.metrics.subscribers_lagged.inc();
                    match this.lag_policy {
                        LagPolicy::Skip => {
                            subscription.skip_to_oldest();
                            continue;
                        }
                        LagPolicy::Disconnect => {
                            tracing::debug!(topic = %subscription.topic().key(), "subscriber lagged: ending its stream");
                            this.state = State::Ending;
                            continue;
                        }
                    }
                }
                Poll::Ready(Next::Closed(
                    CloseReason::OriginClosed | CloseReason::OriginRefused,
                )) => {
                    this.state = State::Done;
                    continue;
                }
                Poll::Ready(Next::Closed(CloseReason::Draining | CloseReason::Retired)) => {
                    this.state = State::Ending;
                    continue;
                }
            };
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.preamble && matches!(self.state, State::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every live stream's future holds its body and subscription inline (hyper's `H2Stream`):
    /// sizes guarded, the preamble and farewell taken from the shared frames, the rare
    /// subscription state boxed (100k streams: 7 MB per 72 bytes).
    #[test]
    fn a_live_streams_body_stays_small() {
        assert!(std::mem::size_of::<Subscription>() <= 64);
        assert!(std::mem::size_of::<EventStreamBody>() <= 96);
    }
}
