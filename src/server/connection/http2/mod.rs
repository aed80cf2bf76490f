//! h2 connections served on the `h2` crate directly (RFC 9113): one future per connection
//! accepts its requests, hands each to the [`Handler`] (the same code as HTTP/1.1's, the body
//! through [`RequestBody`]) and runs every stream in the connection's own task ([`Streams`]),
//! so a topic event wakes that one task however many of its streams watch the topic, and the
//! frames of the streams it wakes go out in one write or a few (the connection yields while its
//! streams keep handing h2 frames). hyper's h2 server would run each stream as a future
//! of hyper's own (`H2Stream` → `PipeToSendStream`); this module replaces just that layer and
//! keeps h2's protocol guards as they are: flow control, the reset-flood limits (CVE-2023-44487,
//! CVE-2025-8671), header-list and HPACK limits, CONTINUATION limits, and GOAWAY. What hyper
//! added on top is here: keep-alive PINGs ([`keep_alive`]), the response head's h2 rules and
//! the body pump ([`stream`]).
//!
//! This module owns an h2 connection's streams, its write batching and its keep-alive. It never
//! decides when a connection should end for a watchdog or the drain: those are the caller's
//! ([`super::serve`]).

mod keep_alive;
mod stream;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::CONTENT_LENGTH;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::state::ConnectionState;
use crate::server::handler::{Handler, Peer};
use crate::server::request_body::RequestBody;
use crate::server::streams::Streams;
use crate::server::H2Settings;
use keep_alive::KeepAlive;
use keep_alive::KeepAliveConfig;
use stream::Exchange;

/// Most yields in a row before the frames handed to h2 are written, while each round of the
/// connection's streams hands h2 more, count. Bounds the delay a frame can get from the
/// batching (each yield is one trip through the runtime's queue) under a steady trickle of
/// wake-ups; how writes per event fall with the bound is measured in benches/RESULTS.md.
const MAX_WRITE_DEFERRALS: u8 = 16;

/// How every h2 connection of a server is made: h2's builder with the server's settings, and
/// the keep-alive.
#[derive(Debug, Clone)]
pub(crate) struct Http2Builder {
    h2: ::h2::server::Builder,
    keep_alive: Option<KeepAliveConfig>,
}

impl Http2Builder {
    /// The builder for `settings`, with at most `max_concurrent_streams` streams open at once
    /// per connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub(crate) fn new(settings: &H2Settings, max_concurrent_streams: u32) -> Self {
        let mut h2 = ::h2::server::Builder::new();
        h2.max_concurrent_streams(max_concurrent_streams)
            .max_pending_accept_reset_streams(settings.max_pending_accept_reset_streams)
            .max_local_error_reset_streams(Some(settings.max_local_error_reset_streams))
            .max_header_list_size(settings.max_header_list_size)
            .header_table_size(settings.header_table_size)
            .max_send_buffer_size(settings.max_send_buf_size)
            .initial_window_size(settings.initial_stream_window_size)
            .initial_connection_window_size(settings.initial_connection_window_size)
            .max_frame_size(settings.max_frame_size);
        let keep_alive = settings
            .keep_alive_interval
            .map(|interval| KeepAliveConfig {
                interval,
                timeout: settings.keep_alive_timeout,
            });
        Self { h2, keep_alive }
    }
}

/// One h2 connection: the handshake (the client's preface and SETTINGS, ours), then its
/// streams until the connection ends. Resolves with h2's error when the connection failed (a
/// protocol error, an I/O error); a keep-alive PING left unanswered closes it (GOAWAY).
pub(super) struct Http2Connection<IO, H> {
    phase: Phase<IO>,
    /// GOAWAY was asked for during the handshake: sent as soon as it completes.
    goaway_pending: bool,
    keep_alive: Option<KeepAlive>,
    keep_alive_config: Option<KeepAliveConfig>,
    streams: Streams,
    /// Batches the frames the streams hand h2 into few writes.
    batch: WriteBatch,
    handler: H,
    peer: Peer,
    state: Arc<ConnectionState>,
}

// Nothing in it is pinned (the handler is only cloned; the streams are boxed).
impl<IO, H> Unpin for Http2Connection<IO, H> {}

enum Phase<IO> {
    Handshaking(::h2::server::Handshake<IO, Bytes>),
    Serving(::h2::server::Connection<IO, Bytes>),
}

impl<IO, H> Http2Connection<IO, H>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    /// Serves `io` (the client's preface not read yet) for `peer`, counting its streams in
    /// `state`.
    pub(super) fn new(
        io: IO,
        builder: &Http2Builder,
        handler: H,
        peer: Peer,
        state: Arc<ConnectionState>,
    ) -> Self {
        Self {
            phase: Phase::Handshaking(builder.h2.handshake(io)),
            goaway_pending: false,
            keep_alive: None,
            keep_alive_config: builder.keep_alive,
            streams: Streams::default(),
            batch: WriteBatch::new(),
            handler,
            peer,
            state,
        }
    }

    /// GOAWAY (RFC 9113 §6.8: h2 sends the two-step graceful one): no new streams, the open
    /// ones run to their end, then the connection closes.
    pub(super) fn graceful_shutdown(&mut self) {
        match &mut self.phase {
            Phase::Handshaking(_) => self.goaway_pending = true,
            Phase::Serving(connection) => connection.graceful_shutdown(),
        }
    }
}

impl<IO, H> Future for Http2Connection<IO, H>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    type Output = Result<(), ::h2::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let connection = match &mut this.phase {
                Phase::Handshaking(handshake) => {
                    let connection = ready!(Pin::new(handshake).poll(cx))?;
                    this.start_serving(connection);
                    continue;
                }
                Phase::Serving(connection) => connection,
            };
            // Streams first: each ready one hands h2 its frames ...
            this.streams.poll(cx);
            if this.batch.yield_before_writing(this.streams.len(), cx) {
                return Poll::Pending;
            }
            close_if_unanswered(&mut this.keep_alive, connection, cx);
            // ... then the connection: reads, writes every frame handed over, flushes, and
            // hands over the next request.
            let (request, respond) = match ready!(connection.poll_accept(cx)) {
                Some(Ok(accepted)) => accepted,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            };
            this.start_stream(request, respond);
        }
    }
}

impl<IO, H> Http2Connection<IO, H>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    /// The handshake is done: sends the GOAWAY asked for meanwhile, starts the keep-alive,
    /// and serves `connection`.
    fn start_serving(&mut self, mut connection: ::h2::server::Connection<IO, Bytes>) {
        if self.goaway_pending {
            connection.graceful_shutdown();
        }
        if let (Some(config), Some(ping_pong)) = (self.keep_alive_config, connection.ping_pong()) {
            self.keep_alive = Some(KeepAlive::new(ping_pong, config));
        }
        self.phase = Phase::Serving(connection);
    }

    /// Hands `request` to the handler and runs its stream among the connection's streams.
    #[inline]
    fn start_stream(
        &mut self,
        request: http::Request<::h2::RecvStream>,
        respond: ::h2::server::SendResponse<Bytes>,
    ) {
        let guard = self.state.stream_started(http::Version::HTTP_2);
        let content_length = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse().ok());
        let request = request.map(|recv| RequestBody::h2(recv, content_length));
        let handling = self.handler.clone().handle(request, self.peer);
        // The guard counts the stream open until its future ends. The new stream runs its
        // first poll (the handler) in the next round of the connection's loop.
        self.streams.start(
            Exchange::new(handling, respond, self.batch.handed.clone()).map(move |()| drop(guard)),
        );
    }
}

/// When a keep-alive PING went unanswered, closes `connection` at once (the peer is gone).
#[inline]
fn close_if_unanswered<IO: AsyncRead + AsyncWrite + Unpin>(
    keep_alive: &mut Option<KeepAlive>,
    connection: &mut ::h2::server::Connection<IO, Bytes>,
    cx: &mut Context<'_>,
) {
    if let Some(alive) = keep_alive {
        if alive.poll_timed_out(cx).is_ready() {
            debug!("keep-alive PING unanswered: closing the connection");
            *keep_alive = None;
            connection.abrupt_shutdown(::h2::Reason::NO_ERROR);
        }
    }
}

/// How a connection batches the frames its streams hand h2 into few writes.
///
/// While a round of the connection's streams hands h2 frames on a connection with several
/// streams, the task yields before writing them (up to [`MAX_WRITE_DEFERRALS`] rounds): a
/// topic event wakes a connection's streams one by one from the publishing task while this one
/// runs on the other core, so writing at once would send a few streams' frames per write and
/// TLS record (measured in benches/RESULTS.md); after the yield, the streams woken meanwhile
/// join the same write. A round that hands nothing writes what is waiting. One stream alone
/// has nothing to wait for.
struct WriteBatch {
    /// Set by a stream that handed h2 a frame since the connection last looked.
    handed: Arc<AtomicBool>,
    /// Yields in a row since the last write, each after a round that handed h2 frames.
    deferrals: u8,
}

impl WriteBatch {
    fn new() -> Self {
        Self {
            handed: Arc::new(AtomicBool::new(false)),
            deferrals: 0,
        }
    }

    /// Whether the connection yields (its waker woken) before writing, after a round of its
    /// `streams` streams.
    #[inline]
    fn yield_before_writing(&mut self, streams: usize, cx: &mut Context<'_>) -> bool {
        let handed = self.handed.swap(false, Ordering::Relaxed);
        if handed && streams > 1 && self.deferrals < MAX_WRITE_DEFERRALS {
            self.deferrals += 1;
            cx.waker().wake_by_ref();
            return true;
        }
        self.deferrals = 0;
        false
    }
}

#[cfg(test)]
mod tests;
