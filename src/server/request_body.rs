//! The body of a request as every [`super::Handler`] reads it, whatever connection carried it:
//! hyper's `Incoming` on HTTP/1.1, h2's `RecvStream` on h2 (served on the `h2` crate directly,
//! [`super::connection`]), so the handlers' code is the same for both.
//!
//! This module owns only that adapter: it reads no body itself and buffers nothing.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// A request's body, streamed as the client sends it. On h2 the window capacity of each DATA
/// frame is released as the frame is read (RFC 9113 §6.9), so a client sends as fast as the
/// handler reads, no faster.
pub struct RequestBody {
    inner: Inner,
}

enum Inner {
    Http1(Incoming),
    H2 {
        recv: h2::RecvStream,
        /// What the request's `content-length` declared, less the DATA read so far, bytes
        /// (h2 checks the DATA against the declared length, RFC 9113 §8.1.1).
        content_length: Option<u64>,
        /// Every DATA frame was read; trailers (or the end) are next.
        data_done: bool,
    },
}

impl From<Incoming> for RequestBody {
    fn from(inner: Incoming) -> Self {
        Self {
            inner: Inner::Http1(inner),
        }
    }
}

impl RequestBody {
    /// The body of an h2 request that declared `content_length` bytes (if it did).
    pub(super) fn h2(recv: h2::RecvStream, content_length: Option<u64>) -> Self {
        Self {
            inner: Inner::H2 {
                recv,
                content_length,
                data_done: false,
            },
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    /// The connection's error (a reset stream, a closed connection, a malformed frame), boxed:
    /// each protocol's library has its own error type.
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.inner {
            Inner::Http1(incoming) => Pin::new(incoming).poll_frame(cx).map_err(Into::into),
            Inner::H2 {
                recv,
                content_length,
                data_done,
            } => {
                if !*data_done {
                    match recv.poll_data(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(data))) => {
                            if let Some(left) = content_length {
                                *left = left.saturating_sub(data.len() as u64);
                            }
                            // Only fails once the stream is gone; the next read reports that.
                            let _ = recv.flow_control().release_capacity(data.len());
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                        Poll::Ready(None) => *data_done = true,
                    }
                }
                match recv.poll_trailers(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Ok(Some(trailers))) => {
                        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                    }
                    Poll::Ready(Ok(None)) => Poll::Ready(None),
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Http1(incoming) => incoming.is_end_stream(),
            Inner::H2 { recv, .. } => recv.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Http1(incoming) => incoming.size_hint(),
            Inner::H2 {
                recv,
                content_length,
                ..
            } => match content_length {
                Some(length) => SizeHint::with_exact(*length),
                None if recv.is_end_stream() => SizeHint::with_exact(0),
                None => SizeHint::default(),
            },
        }
    }
}
