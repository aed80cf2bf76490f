//! One h2 stream, from its request to the end of its response: the handler's answer, the
//! response head's h2 rules, then the body written as the client's flow-control window
//! allows.
//!
//! Flow control (RFC 9113 §6.9): the body is polled for its next frame only once h2 has granted
//! the stream window capacity, so a stream whose client stopped reading holds at most one frame
//! here and its body (for SSE, its subscription) is simply not polled: the hub's lag policy
//! meets it, no queue grows. A client's RST_STREAM ends the stream, and with it the handler's
//! work, as soon as it arrives, also while the body has nothing to send.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, SendStream};
use http::header::{self, HeaderValue};
use http::Response;
use http_body::Body;
use tracing::debug;

use crate::http::strip_hop_by_hop;

/// One stream's future: the handler's answer (boxed, so that a long-lived stream does not keep
/// its size), then the body. Written out rather than as an `async fn`, whose arguments would
/// stay in the future beside what they were moved into.
pub(super) struct Exchange<F, B> {
    state: State<F, B>,
    /// Set whenever this stream hands h2 a frame (shared by the connection's streams).
    handed: Arc<AtomicBool>,
}

enum State<F, B> {
    /// Waiting for the handler; the stream ends early when the client resets it meanwhile.
    Answering {
        handling: Pin<Box<F>>,
        respond: SendResponse<Bytes>,
    },
    Sending(Pump<B>),
    Done,
}

impl<F, B> Exchange<F, B> {
    /// Answers a request with what `handling` (the handler's future) resolves to, setting
    /// `handed` whenever it hands h2 a frame.
    pub(super) fn new(handling: F, respond: SendResponse<Bytes>, handed: Arc<AtomicBool>) -> Self {
        Self {
            state: State::Answering {
                handling: Box::pin(handling),
                respond,
            },
            handed,
        }
    }
}

impl<F, B> Future for Exchange<F, B>
where
    F: Future<Output = Response<B>>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Answering { handling, respond } => {
                    let response = match handling.as_mut().poll(cx) {
                        Poll::Ready(response) => response,
                        Poll::Pending => {
                            let Poll::Ready(reason) = respond.poll_reset(cx) else {
                                return Poll::Pending;
                            };
                            debug!(?reason, "h2 stream reset before its answer");
                            this.state = State::Done;
                            continue;
                        }
                    };
                    this.state = match answer(respond, response) {
                        Some(pump) => State::Sending(pump),
                        None => State::Done,
                    };
                }
                State::Sending(pump) => return pump.poll(cx, &this.handed),
                State::Done => return Poll::Ready(()),
            }
        }
    }
}

/// Sends the head of `response` on `respond` (with h2's rules for it applied): the pump for its
/// body, or `None` when the head ended the stream (no body) or could not be sent.
fn answer<B: Body>(respond: &mut SendResponse<Bytes>, response: Response<B>) -> Option<Pump<B>> {
    let (mut head, body) = response.into_parts();
    // Connection-specific fields are malformed in h2 (RFC 9113 §8.2.2), `te` too in a response.
    strip_hop_by_hop(&mut head.headers, &[]);
    head.headers
        .entry(header::DATE)
        .or_insert_with(date_header_value);
    let end = body.is_end_stream();
    if !end {
        if let Some(length) = body.size_hint().exact() {
            head.headers
                .entry(header::CONTENT_LENGTH)
                .or_insert_with(|| HeaderValue::from(length));
        }
    }
    match respond.send_response(Response::from_parts(head, ()), end) {
        Ok(send) if !end => Some(Pump {
            body,
            send,
            waiting: None,
        }),
        Ok(_) => None,
        Err(e) => {
            debug!(error = %e, "h2 response head not sent");
            respond.send_reset(Reason::INTERNAL_ERROR);
            None
        }
    }
}

/// Writes a body to its stream, a frame at a time, each once the stream has window capacity (as
/// hyper's `PipeToSendStream` does: capacity for one byte is enough to hand h2 the next frame,
/// so a stalled stream holds at most one frame); ends the stream with the body, resets it with
/// INTERNAL_ERROR when the body fails, and stops when the client resets it.
struct Pump<B> {
    body: B,
    send: SendStream<Bytes>,
    /// The body's frame waiting for window capacity.
    waiting: Option<Bytes>,
}

impl<B> Pump<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Hands h2 what the body has, as far as the window allows (setting `handed` when it
    /// hands a frame); `Ready` once the stream is over.
    fn poll(&mut self, cx: &mut Context<'_>, handed: &AtomicBool) -> Poll<()> {
        loop {
            if let Some(data) = self.waiting.take() {
                while self.send.capacity() == 0 {
                    match self.send.poll_capacity(cx) {
                        Poll::Pending => {
                            self.waiting = Some(data);
                            return reset_or_pending(&mut self.send, cx);
                        }
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
                    }
                }
                let end = self.body.is_end_stream();
                handed.store(true, Ordering::Relaxed);
                if self.send.send_data(data, end).is_err() || end {
                    return Poll::Ready(());
                }
            }
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return reset_or_pending(&mut self.send, cx),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => {
                        if forget_waker(&mut self.send).is_ready() {
                            return Poll::Ready(());
                        }
                        self.send.reserve_capacity(1);
                        self.waiting = Some(data);
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.send.reserve_capacity(0);
                            let _ = self.send.send_trailers(trailers);
                            return Poll::Ready(());
                        }
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    debug!(error = %e.into(), "response body failed: resetting its h2 stream");
                    self.send.send_reset(Reason::INTERNAL_ERROR);
                    return Poll::Ready(());
                }
                Poll::Ready(None) => {
                    let _ = self.send.send_data(Bytes::new(), true);
                    return Poll::Ready(());
                }
            }
        }
    }
}

/// `Pending`, with the stream's reset watched too; `Ready` when the client reset it.
fn reset_or_pending(send: &mut SendStream<Bytes>, cx: &mut Context<'_>) -> Poll<()> {
    match send.poll_reset(cx) {
        Poll::Ready(reason) => {
            debug!(?reason, "h2 stream reset by the client");
            Poll::Ready(())
        }
        Poll::Pending => Poll::Pending,
    }
}

/// Replaces the waker h2 keeps for this stream's send side (stored by the last
/// [`reset_or_pending`] or `poll_capacity`) with one that does nothing; `Ready` when the client
/// reset the stream meanwhile.
///
/// h2 wakes that waker whenever it assigns the stream capacity, also from inside this stream's
/// own `reserve_capacity` call, while the stream is being polled: every frame would then poll
/// the stream a second time for nothing (its body is Pending again), a trip through the
/// connection's ready queue, the body, the topic's lock and h2's. Nothing else can touch the
/// stream meanwhile (h2's streams and connection are all polled in this one task), and every
/// `Pending` this pump returns registers the real waker again first, so no wake-up is lost.
fn forget_waker(send: &mut SendStream<Bytes>) -> Poll<()> {
    reset_or_pending(send, &mut Context::from_waker(std::task::Waker::noop()))
}

/// The `date` field every origin server with a clock sends (RFC 9110 §6.6.1), as hyper sends
/// it on HTTP/1.1.
fn date_header_value() -> HeaderValue {
    let now = httpdate::fmt_http_date(std::time::SystemTime::now());
    HeaderValue::try_from(now).expect("an HTTP date is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderMap, HeaderName};

    #[test]
    fn connection_specific_fields_are_removed_with_those_connection_names() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("x-hop, close"));
        headers.append(header::CONNECTION, HeaderValue::from_static("x-second"));
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("x-second", HeaderValue::from_static("2"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        strip_hop_by_hop(&mut headers, &[]);
        let left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["cache-control"]);
    }
}
