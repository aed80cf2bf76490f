//! The body of a request as every [`super::Handler`] reads it, whatever connection carried it.
//! Today that is always hyper's `Incoming` (HTTP/1.1 and h2 alike); the type is the server's
//! own so that a second h2 engine (SSE streams served on the `h2` crate directly, RESULTS.md,
//! issue 13 item 2) can hand the bodies of the requests it passes on (passthrough, rejections)
//! to the same handlers through another variant, without their code changing.
//!
//! This module owns only that adapter: it reads no body itself and buffers nothing.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// A request's body, streamed as the client sends it (flow control as the connection's: h2
/// window capacity is released as frames are read).
pub struct RequestBody {
    inner: Incoming,
}

impl From<Incoming> for RequestBody {
    fn from(inner: Incoming) -> Self {
        Self { inner }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    /// The connection's error (a reset stream, a closed connection, a malformed frame), boxed:
    /// each engine has its own error type.
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
