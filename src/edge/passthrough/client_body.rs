//! The client's request body on its way to the passthrough origin, watched: when reading it
//! fails (a malformed chunked encoding, RFC 9112 §7.1; a reset h2 stream), the failure is noted,
//! so the proxy answers 400 for the client's fault rather than 502 for the origin's.
//!
//! This module owns only that note; it never buffers or changes the body's bytes.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::server::RequestBody;

/// A request body that notes whether reading it failed (see [`ClientBody::failed`]).
pub struct ClientBody {
    inner: RequestBody,
    failed: Arc<AtomicBool>,
}

/// Says, once the upstream request is over, whether the client's body failed.
#[derive(Clone)]
pub(super) struct BodyFailed(Arc<AtomicBool>);

impl BodyFailed {
    /// True when the client's body could not be read to its end.
    pub(super) fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl ClientBody {
    /// Watches `inner`; the flag it returns turns true on its first error.
    pub(super) fn watch(inner: RequestBody) -> (Self, BodyFailed) {
        let failed = Arc::new(AtomicBool::new(false));
        let flag = BodyFailed(failed.clone());
        (Self { inner, failed }, flag)
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = <RequestBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.failed.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
