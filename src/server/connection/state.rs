//! What one connection's service, watchdogs and tunnels share: the open and total stream
//! counts, the protocol of its first request, the live [`TunnelLease`]s, and the connection
//! metrics they keep (opened, by protocol, closed). It knows nothing of how the connection is
//! driven (`super`).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

use super::ConnectionLimits;
use crate::server::metrics::{CloseCause, ServerMetrics};

const PENDING: u8 = 0;
const HTTP1: u8 = 1;
const H2: u8 = 2;

/// What the service and the watchdogs share about one connection.
pub(super) struct ConnectionState {
    metrics: Arc<ServerMetrics>,
    /// `PENDING` until the first request, then its protocol.
    protocol: AtomicU8,
    open_streams: AtomicUsize,
    total_streams: AtomicU64,
    /// [`TunnelLease`]s alive, count.
    tunnels: AtomicUsize,
    changed: Notify,
}

impl ConnectionState {
    pub(super) fn new(metrics: Arc<ServerMetrics>) -> Self {
        metrics.connections_open.pending.inc();
        Self {
            metrics,
            protocol: AtomicU8::new(PENDING),
            open_streams: AtomicUsize::new(0),
            total_streams: AtomicU64::new(0),
            tunnels: AtomicUsize::new(0),
            changed: Notify::new(),
        }
    }

    /// A request arrived: counts the connection by its first request's protocol, and the
    /// stream until the returned guard (moved into the response body) drops.
    pub(super) fn stream_started(self: &Arc<Self>, version: http::Version) -> StreamGuard {
        let protocol = if version == http::Version::HTTP_2 {
            H2
        } else {
            HTTP1
        };
        let first = self
            .protocol
            .compare_exchange(PENDING, protocol, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            let m = &self.metrics;
            m.connections_open.pending.dec();
            if protocol == H2 {
                m.connections_open.h2.inc();
                m.connections_accepted.h2.inc();
            } else {
                m.connections_open.http1.inc();
                m.connections_accepted.http1.inc();
            }
        }
        self.open_streams.fetch_add(1, Ordering::AcqRel);
        self.total_streams.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        StreamGuard(self.clone())
    }

    /// Resolves once no [`TunnelLease`] of this connection is alive.
    pub(super) async fn tunnels_closed(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.tunnels.load(Ordering::Acquire) == 0 {
                return;
            }
            changed.await;
        }
    }

    /// Resolves when a watchdog condition holds.
    pub(super) async fn watchdog(&self, limits: ConnectionLimits) -> CloseCause {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.total_streams.load(Ordering::Acquire) >= limits.max_streams_lifetime {
                return CloseCause::StreamLifetime;
            }
            if self.open_streams.load(Ordering::Acquire) > 0 {
                changed.await;
                continue;
            }
            let (wait, cause) = if self.protocol.load(Ordering::Acquire) == PENDING {
                (
                    limits.first_request_timeout,
                    CloseCause::FirstRequestTimeout,
                )
            } else {
                (limits.idle_timeout, CloseCause::Idle)
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => return cause,
                _ = changed => {}
            }
        }
    }
}

impl Drop for ConnectionState {
    fn drop(&mut self) {
        let m = &self.metrics;
        match self.protocol.load(Ordering::Acquire) {
            PENDING => {
                m.connections_open.pending.dec();
                m.connections_accepted.none.inc();
            }
            H2 => m.connections_open.h2.dec(),
            _ => m.connections_open.http1.dec(),
        }
    }
}

/// Counts one open stream of a connection while it lives.
pub(super) struct StreamGuard(Arc<ConnectionState>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.0.open_streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

/// Held by whoever runs an HTTP/1.1 upgrade's tunnel (RFC 9110 §7.8) on this connection: in the
/// extensions of every HTTP/1.1 request with an `Upgrade` header, for the handler to take
/// (`request.extensions_mut().remove::<TunnelLease>()`). While it lives, the connection stays
/// open in the metrics, holds its connection-cap slots and keeps the drain waiting for it
/// (bounded by the drain timeout); dropping it (with the request, when not taken) releases
/// them.
pub struct TunnelLease(Arc<ConnectionState>);

impl TunnelLease {
    pub(super) fn new(state: Arc<ConnectionState>) -> Self {
        state.tunnels.fetch_add(1, Ordering::AcqRel);
        Self(state)
    }
}

impl Clone for TunnelLease {
    fn clone(&self) -> Self {
        Self::new(self.0.clone())
    }
}

impl Drop for TunnelLease {
    fn drop(&mut self) {
        if self.0.tunnels.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

/// A response body that keeps its stream counted until hyper drops it.
pub struct TrackedBody<B> {
    body: B,
    _guard: StreamGuard,
}

impl<B> TrackedBody<B> {
    /// `body`, counted as an open stream until it drops `guard`.
    pub(super) fn new(body: B, guard: StreamGuard) -> Self {
        Self {
            body,
            _guard: guard,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
