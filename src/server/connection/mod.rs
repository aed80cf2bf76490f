//! One downstream connection after TLS: hyper's HTTP/1.1 connection or our h2 one ([`http2`],
//! on the `h2` crate; ALPN `h2` means h2, otherwise the first bytes tell, RFC 9113 §3.4),
//! driven together with its watchdogs, since neither hyper nor h2 bounds the wait for the h2
//! preface and the first request: a deadline for the first request (h2 preface included), an
//! idle timeout while no stream is open, a lifetime cap on streams followed by GOAWAY, and
//! the drain signal (GOAWAY, then wait). HTTP/1.1 upgrades (RFC 9110 §7.8) are served: the
//! handler may take a request's [`TunnelLease`], which keeps the connection counted (and the
//! drain waiting) while the upgraded tunnel runs.
//!
//! This module owns a connection's lifecycle and its protocol metrics; it knows nothing of SSE:
//! requests go to the [`Handler`].

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
use super::metrics::ServerMetrics;
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

/// The h2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one connection until it ends, the drain signal turns true (then GOAWAY and wait), or a
/// watchdog fires (then GOAWAY and close within the close grace).
///
/// Not an `async fn`: the stream (`io`, the TLS state included) is moved into a box before the
/// returned future (the connection's; without ALPN, first the one that tells the protocol),
/// so it is stored once. An `async fn` keeps its arguments beside the futures it moves them into, and
/// pinning the connection inside the future would keep another copy (with the handshake's box
/// freed first, `server::handshake`, 3.7 KB less heap per connection: RESULTS.md, issue 13
/// item 3).
pub(crate) fn serve<'b, IO, H>(
    io: IO,
    alpn: Alpn,
    peer: Peer,
    handler: H,
    builder: &'b ConnectionBuilder,
    mut drain: watch::Receiver<bool>,
    metrics: Arc<ServerMetrics>,
) -> impl Future<Output = ()> + Send + 'b
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let state = Arc::new(ConnectionState::new(metrics.clone()));
    let service_state = state.clone();
    let connection_state = state.clone();
    let h2_handler = handler.clone();
    let service = service_fn(move |mut request: http::Request<Incoming>| {
        let guard = service_state.stream_started(request.version());
        if request.version() == http::Version::HTTP_11
            && request.headers().contains_key(http::header::UPGRADE)
        {
            let lease = TunnelLease::new(service_state.clone());
            request.extensions_mut().insert(lease);
        }
        // Boxed: each h2 stream's future (hyper's `H2Stream`) is sized for its largest
        // state, and the handler's future (auth, the wait for the origin's first answer) is
        // larger than the streaming body that outlives it, so an inline future would cost
        // every long-lived SSE stream that much. Made first and mapped, not awaited in an
        // async block, which would hold it twice (captured and awaited).
        let handling = handler.clone().handle(request.map(RequestBody::from), peer);
        Box::pin(handling.map(move |response| {
            Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, guard)))
        }))
    });
    let limits = builder.limits;
    // The connection for `io`: ours on h2 when `h2` is set, else hyper's HTTP/1.1 (with
    // upgrades).
    let connect = move |io: Rewind<IO>, h2: bool, service| {
        if h2 {
            Connection::H2(Box::pin(Http2Connection::new(
                io,
                &builder.http2,
                h2_handler,
                peer,
                connection_state,
            )))
        } else {
            Connection::Http1(Box::pin(
                builder
                    .http1
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades(),
            ))
        }
    };
    let opening = match alpn {
        Alpn::H2 => Opening::Open(connect(Rewind::new(Bytes::new(), io), true, service)),
        // Tells the protocol from the first bytes; `None` when the client closed or failed
        // before saying.
        Alpn::Undecided => Opening::Telling(Box::pin(async move {
            let mut io = io;
            match first_bytes(&mut io).await {
                Ok((h2, read)) => Some(connect(Rewind::new(read, io), h2, service)),
                Err(e) => {
                    debug!(error = %e, "connection closed before its first request");
                    None
                }
            }
        })),
    };
    async move {
        // One watchdog for the whole life: the first-request deadline runs from the accept,
        // across telling the protocol and the h2 preface.
        let watchdog = state.watchdog(limits);
        tokio::pin!(watchdog);
        let mut connection = match opening {
            Opening::Open(connection) => connection,
            Opening::Telling(telling) => {
                let told = tokio::select! {
                    told = telling => told,
                    () = async { let _ = drain.wait_for(|d| *d).await; } => return,
                    cause = &mut watchdog => {
                        debug!(?cause, "closing the connection");
                        metrics.connections_closed.inc(cause);
                        return;
                    }
                };
                let Some(connection) = told else {
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
                debug!(?cause, "closing the connection");
                metrics.connections_closed.inc(cause);
                let _ = tokio::time::timeout(limits.close_grace, &mut connection).await;
            }
        }
    }
}

/// A connection, or, while its protocol is not known yet, the future telling it (boxed: it
/// holds the stream until then).
enum Opening<C, F> {
    Open(C),
    Telling(Pin<Box<F>>),
}

/// Reads until the bytes read either are the h2 connection preface (RFC 9113 §3.4) or cannot
/// be (then HTTP/1.1): whether it is h2, and the bytes read, to be read again by hyper.
///
/// # Errors
/// The stream's read error, or `UnexpectedEof` when it ends before telling.
async fn first_bytes<IO: AsyncRead + Unpin>(io: &mut IO) -> io::Result<(bool, Bytes)> {
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

impl<IO, S, B, H> Connection<IO, S, H>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// GOAWAY on h2; on HTTP/1.1, close after the current request.
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
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    H: Handler,
{
    type Output = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Http1(connection) => connection.as_mut().poll(cx).map_err(Into::into),
            Self::H2(connection) => connection.as_mut().poll(cx).map_err(Into::into),
        }
    }
}

#[cfg(test)]
mod tests;
