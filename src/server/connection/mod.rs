//! One downstream connection after TLS: hyper's HTTP/1.1 connection or our h2 one ([`http2`],
//! on the `h2` crate). ALPN `h2` means h2; otherwise the protocol is sniffed from the first
//! bytes (the h2 preface, RFC 9113 §3.4, or HTTP/1.1). The connection is driven together with
//! its watchdogs, since neither hyper nor h2 bounds the wait for the h2 preface and the first
//! request: a deadline for the first request (h2 preface included), an idle timeout while no
//! stream is open, a lifetime cap on streams followed by GOAWAY, and the drain signal (GOAWAY,
//! then wait). HTTP/1.1 upgrades (RFC 9110 §7.8) are served: the handler may take a request's
//! [`TunnelLease`], which keeps the connection counted (and the drain waiting) while the
//! upgraded tunnel runs.
//!
//! This module owns a connection's lifecycle and its protocol metrics. It must never know of
//! SSE: requests go to the [`Handler`].

mod http2;
mod state;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{service_fn, HttpService};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::watch;
use tracing::debug;

use super::handler::{Handler, Peer};
use super::metrics::{CloseCause, ServerMetrics};
use super::request_body::RequestBody;
use super::rewind::Rewind;
pub(crate) use http2::Http2Builder;
use http2::Http2Connection;
use state::ConnectionState;
pub use state::{TrackedBody, TunnelLease};

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// The first request (after TLS, h2 preface included) must arrive within this.
    pub first_request_timeout: Duration,
    /// Close a connection that has had no open stream for this long.
    pub idle_timeout: Duration,
    /// Streams a connection may open over its life before it gets GOAWAY, count.
    pub max_streams_lifetime: u64,
    /// After GOAWAY for a watchdog reason, close the connection at the latest after this.
    pub close_grace: Duration,
}

/// What every connection of a server is made with: hyper's HTTP/1.1 builder, ours for h2 and
/// the watchdogs' limits, configured once per server.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionBuilder {
    /// HTTP/1.1 connections.
    pub http1: http1::Builder,
    /// h2 connections; their streams run in the connection's task.
    pub http2: Http2Builder,
    /// The watchdogs' limits.
    pub limits: ConnectionLimits,
}

/// What TLS said about the protocol (RFC 7301, ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alpn {
    /// `h2` was negotiated: the connection is h2.
    H2,
    /// Anything else (`http/1.1`, no ALPN, or no TLS): the first bytes decide (the h2
    /// connection preface, RFC 9113 §3.4, or HTTP/1.1).
    Undecided,
}

/// The error a connection ends with, whichever its protocol.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The h2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one connection until it ends, the drain signal turns true (then GOAWAY and wait), or a
/// watchdog fires (then GOAWAY and close within the close grace).
///
/// Not an `async fn`: the stream (`io`, the TLS state included) is moved into a box before the
/// returned future (the connection's; without ALPN, first the one sniffing the protocol), so it
/// is stored once. An `async fn` keeps its arguments beside the futures it moves them into, and
/// pinning the connection inside the future would keep another copy (the handshake's box is
/// freed before this is called, `server::handshake`, so a TLS stream is never held twice).
pub(crate) fn serve<'b, IO, H>(
    io: IO,
    alpn: Alpn,
    peer: Peer,
    handler: H,
    builder: &'b ConnectionBuilder,
    drain: watch::Receiver<bool>,
    metrics: Arc<ServerMetrics>,
) -> impl Future<Output = ()> + Send + 'b
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let state = Arc::new(ConnectionState::new(metrics.clone()));
    let service_state = state.clone();
    let service_handler = handler.clone();
    let service =
        service_fn(move |request| http1_request(request, &service_state, &service_handler, peer));
    let parts = ConnectionParts {
        builder,
        service,
        handler,
        peer,
        state: state.clone(),
    };
    let opening = match alpn {
        Alpn::H2 => Opening::Open(parts.connect(Rewind::new(Bytes::new(), io), true)),
        Alpn::Undecided => Opening::Sniffing(Box::pin(parts.sniff_and_connect(io))),
    };
    drive(opening, state, builder.limits, drain, metrics)
}

/// One HTTP/1.1 request handed to the handler: counted as a stream until its response body
/// drops, and given a [`TunnelLease`] when it asks for an upgrade (RFC 9110 §7.8).
///
/// Boxed: each request's future is sized for its largest state, and the handler's future
/// (auth, the wait for the origin's first answer) is larger than the streaming body that
/// outlives it, so an inline future would cost every long-lived SSE stream that much. Made
/// first and mapped, not awaited in an async block, which would hold it twice (captured and
/// awaited).
#[allow(clippy::type_complexity)]
fn http1_request<H: Handler>(
    mut request: http::Request<Incoming>,
    state: &Arc<ConnectionState>,
    handler: &H,
    peer: Peer,
) -> Pin<Box<impl Future<Output = Result<http::Response<TrackedBody<H::Body>>, Infallible>> + Send>>
{
    let guard = state.stream_started(request.version());
    if request.version() == http::Version::HTTP_11
        && request.headers().contains_key(http::header::UPGRADE)
    {
        let lease = TunnelLease::new(state.clone());
        request.extensions_mut().insert(lease);
    }
    let handling = handler.clone().handle(request.map(RequestBody::from), peer);
    Box::pin(handling.map(move |response| {
        Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, guard)))
    }))
}

/// What a connection is made of once its protocol is known: the server's builders, the
/// HTTP/1.1 service, the handler for h2 streams, the peer and the shared state.
struct ConnectionParts<'b, S, H> {
    builder: &'b ConnectionBuilder,
    service: S,
    handler: H,
    peer: Peer,
    state: Arc<ConnectionState>,
}

impl<'b, S, B, H> ConnectionParts<'b, S, H>
where
    S: HttpService<Incoming, ResBody = B> + 'b,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
    H: Handler,
{
    /// The connection for `io`: ours on h2 when `h2` is set, else hyper's HTTP/1.1 (with
    /// upgrades).
    fn connect<IO>(self, io: Rewind<IO>, h2: bool) -> Connection<IO, S, H>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if h2 {
            Connection::H2(Box::pin(Http2Connection::new(
                io,
                &self.builder.http2,
                self.handler,
                self.peer,
                self.state,
            )))
        } else {
            Connection::Http1(Box::pin(
                self.builder
                    .http1
                    .serve_connection(TokioIo::new(io), self.service)
                    .with_upgrades(),
            ))
        }
    }

    /// Sniffs the protocol from the first bytes of `io`, then makes its connection; `None`
    /// when the client closed or failed before they said.
    ///
    /// Not an `async fn`, for the reason given at [`serve`]: the returned future (boxed, while
    /// the protocol is not known) holds each argument once.
    #[allow(clippy::manual_async_fn)]
    fn sniff_and_connect<IO>(
        self,
        io: IO,
    ) -> impl Future<Output = Option<Connection<IO, S, H>>> + 'b
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        async move {
            let mut io = io;
            match sniff_protocol(&mut io).await {
                Ok((h2, read)) => Some(self.connect(Rewind::new(read, io), h2)),
                Err(e) => {
                    debug!(error = %e, "connection closed before its first request");
                    None
                }
            }
        }
    }
}

/// Drives `opening` to its end under the watchdogs and the drain signal.
///
/// Not an `async fn`, for the reason given at [`serve`]: the returned future holds each
/// argument once.
#[allow(clippy::manual_async_fn)]
fn drive<'b, C, F>(
    opening: Opening<C, F>,
    state: Arc<ConnectionState>,
    limits: ConnectionLimits,
    mut drain: watch::Receiver<bool>,
    metrics: Arc<ServerMetrics>,
) -> impl Future<Output = ()> + Send + 'b
where
    C: Served + Send + 'b,
    F: Future<Output = Option<C>> + Send + 'b,
{
    async move {
        // One watchdog for the whole life: the first-request deadline runs from the accept,
        // across sniffing the protocol and the h2 preface.
        let watchdog = state.watchdog(limits);
        tokio::pin!(watchdog);
        let mut connection = match opening {
            Opening::Open(connection) => connection,
            Opening::Sniffing(sniffing) => {
                let sniffed = tokio::select! {
                    sniffed = sniffing => sniffed,
                    () = async { let _ = drain.wait_for(|d| *d).await; } => return,
                    cause = &mut watchdog => {
                        closed_by(cause, &metrics);
                        return;
                    }
                };
                let Some(connection) = sniffed else {
                    return;
                };
                connection
            }
        };
        let cause = tokio::select! {
            result = &mut connection => {
                if let Err(e) = result {
                    debug!(error = %e, "connection ended with an error");
                }
                // An upgraded connection lives on in its tunnel; whoever runs it ends it.
                state.tunnels_closed().await;
                return;
            }
            // (Its `Ref` dropped at once: held across the await above, it would not be `Send`.)
            () = async { let _ = drain.wait_for(|d| *d).await; } => None,
            cause = &mut watchdog => Some(cause),
        };
        connection.graceful_shutdown();
        match cause {
            None => {
                // Draining: the server waits for us (under its own deadline).
                let _ = (&mut connection).await;
                state.tunnels_closed().await;
            }
            Some(cause) => {
                closed_by(cause, &metrics);
                let _ = tokio::time::timeout(limits.close_grace, &mut connection).await;
            }
        }
    }
}

/// A watchdog closes the connection: logged and counted by `cause`.
fn closed_by(cause: CloseCause, metrics: &ServerMetrics) {
    debug!(?cause, "closing the connection");
    metrics.connections_closed.inc(cause);
}

/// A connection the driver serves and shuts down, whatever its protocol.
trait Served: Future<Output = Result<(), BoxError>> + Unpin {
    /// GOAWAY on h2; on HTTP/1.1, close after the current request.
    fn graceful_shutdown(&mut self);
}

/// A connection, or, while its protocol is not known yet, the future sniffing it from the
/// first bytes (boxed: it holds the stream until then).
enum Opening<C, F> {
    /// The protocol is known (ALPN said `h2`): the connection, ready to serve.
    Open(C),
    /// Reading the first bytes to tell the h2 preface from HTTP/1.1; `None` when the client
    /// closed first.
    Sniffing(Pin<Box<F>>),
}

/// Reads until the bytes read either are the h2 connection preface (RFC 9113 §3.4) or cannot
/// be (then HTTP/1.1): whether it is h2, and the bytes read, to be read again by hyper.
///
/// # Errors
/// The stream's read error, or `UnexpectedEof` when it ends before the protocol is known.
async fn sniff_protocol<IO: AsyncRead + Unpin>(io: &mut IO) -> io::Result<(bool, Bytes)> {
    let mut read = BytesMut::with_capacity(H2_PREFACE.len());
    loop {
        if io.read_buf(&mut read).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let n = read.len().min(H2_PREFACE.len());
        if read[..n] != H2_PREFACE[..n] {
            return Ok((false, read.freeze()));
        }
        if n == H2_PREFACE.len() {
            return Ok((true, read.freeze()));
        }
    }
}

/// The connection, by protocol, boxed (the future driving it stays small).
enum Connection<IO, S, H>
where
    S: HttpService<Incoming>,
{
    Http1(Pin<Box<http1::UpgradeableConnection<TokioIo<Rewind<IO>>, S>>>),
    H2(Pin<Box<Http2Connection<Rewind<IO>, H>>>),
}

impl<IO, S, B, H> Served for Connection<IO, S, H>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
    H: Handler,
{
    fn graceful_shutdown(&mut self) {
        match self {
            Self::Http1(connection) => connection.as_mut().graceful_shutdown(),
            Self::H2(connection) => connection.as_mut().graceful_shutdown(),
        }
    }
}

impl<IO, S, B, H> Future for Connection<IO, S, H>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
    H: Handler,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Http1(connection) => connection.as_mut().poll(cx).map_err(Into::into),
            Self::H2(connection) => connection.as_mut().poll(cx).map_err(Into::into),
        }
    }
}

#[cfg(test)]
mod tests;
