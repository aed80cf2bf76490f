//! The serving layer: accept loop (backing off on accept errors such as EMFILE), global and
//! per-IP connection caps ([`per_ip`]), the PROXY protocol header on listeners that expect one
//! ([`proxy_protocol`]), TLS handshake under a deadline inside the connection task ([`tls`]
//! holds the rustls side), HTTP/1.1 (hyper's) and h2 (ours, on the `h2` crate) connections on
//! one listener (ALPN, else the first bytes, tell which) with explicit h2 settings, each h2
//! connection's streams run in the connection's own task ([`streams`]), the connection driver
//! and its watchdogs ([`connection`]), and the drain (GOAWAY on h2, close after the current
//! request on HTTP/1.1, wait under a deadline).
//!
//! This module must never know of SSE: it is generic over a [`Handler`]. The relay, the admin
//! listener and the demo origin all run on it.

pub mod connection;
mod handler;
mod metrics;
mod per_ip;
pub mod proxy_protocol;
mod request_body;
mod rewind;
mod streams;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, field, warn, Instrument};

pub(crate) use connection::{Alpn, ConnectionBuilder};
pub use connection::{ConnectionLimits, TunnelLease};
pub use handler::{plain_text, Handler, Peer};
pub use metrics::{Cap, CloseCause, ProtocolCounters, ProtocolGauges, Reload, ServerMetrics};

use crate::ops::descriptors::Descriptors;
use crate::ops::WarnLimit;
use per_ip::PerIp;
use proxy_protocol::ProxyProtocol;
pub use request_body::RequestBody;
pub use rewind::Rewind;

/// HTTP/2 server settings (RFC 9113 §6.5.2), all set explicitly.
#[derive(Debug, Clone, Copy)]
pub struct H2Settings {
    /// Streams a client may have reset before we accept them (Rapid Reset guard), count.
    pub max_pending_accept_reset_streams: usize,
    /// Streams we may reset for protocol errors before the connection is closed
    /// (CVE-2025-8671 guard), count.
    pub max_local_error_reset_streams: usize,
    /// SETTINGS_MAX_HEADER_LIST_SIZE, bytes.
    pub max_header_list_size: u32,
    /// SETTINGS_HEADER_TABLE_SIZE (RFC 9113 §6.5.2, RFC 7541 §4.2): the HPACK dynamic table
    /// a client may fill in our decoder for the connection's life, bytes.
    pub header_table_size: u32,
    /// Interval between keep-alive PINGs (`None`: no PINGs).
    pub keep_alive_interval: Option<Duration>,
    /// Time to wait for a PING ack before closing the connection.
    pub keep_alive_timeout: Duration,
    /// Bytes buffered per stream for sending before the body stops being polled.
    pub max_send_buf_size: usize,
    /// SETTINGS_INITIAL_WINDOW_SIZE we advertise: request-body bytes a client may send on one
    /// stream before we read them, bytes.
    pub initial_stream_window_size: u32,
    /// The connection-level flow-control window we grant (RFC 9113 §6.9.2), bytes.
    pub initial_connection_window_size: u32,
    /// SETTINGS_MAX_FRAME_SIZE we advertise: the largest frame payload we accept, bytes.
    pub max_frame_size: u32,
}

/// Connection handling settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// h2 settings.
    pub h2: H2Settings,
    /// SETTINGS_MAX_CONCURRENT_STREAMS, count.
    pub max_streams_per_connection: u32,
    /// TLS handshake deadline.
    pub tls_handshake_timeout: Duration,
    /// Open connections over all listeners of this server, count.
    pub max_connections: usize,
    /// Open connections from one client IP address, count (`None`: no per-IP cap).
    pub max_connections_per_ip: Option<usize>,
    /// Watchdogs of each connection.
    pub connection: ConnectionLimits,
    /// How long [`Server::serve`] waits for connections after GOAWAY before dropping them.
    pub drain_timeout: Duration,
}

/// Shared by every listener: the handler, the connection caps and the metrics.
pub struct Server<H> {
    handler: H,
    builder: Arc<ConnectionBuilder>,
    connections: Arc<Semaphore>,
    /// The per-IP cap, if one is configured.
    per_ip: Option<Arc<PerIp>>,
    settings: ServerSettings,
    metrics: Arc<ServerMetrics>,
    accept_errors: Arc<WarnLimit>,
    /// PROXY protocol expected on every connection, if configured.
    proxy_protocol: Option<Arc<ProxyProtocol>>,
    /// Counts one descriptor per open connection (the hub's topics count in the same).
    descriptors: Arc<Descriptors>,
}

impl<H: Clone> Clone for Server<H> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            builder: self.builder.clone(),
            connections: self.connections.clone(),
            per_ip: self.per_ip.clone(),
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            accept_errors: self.accept_errors.clone(),
            proxy_protocol: self.proxy_protocol.clone(),
            descriptors: self.descriptors.clone(),
        }
    }
}

impl<H: Handler> Server<H> {
    /// Creates a server answering with `handler`.
    pub fn new(handler: H, settings: ServerSettings, metrics: Arc<ServerMetrics>) -> Self {
        Self {
            handler,
            builder: Arc::new(builder(&settings)),
            connections: Arc::new(Semaphore::new(settings.max_connections)),
            per_ip: settings
                .max_connections_per_ip
                .map(|max| Arc::new(PerIp::new(max))),
            settings,
            metrics,
            accept_errors: Arc::default(),
            proxy_protocol: None,
            descriptors: Descriptors::unlimited(),
        }
    }

    /// Counts each open connection in `descriptors`, which the hub's new topics stay short of
    /// by a reserve, so that clients of the open topics are still accepted when descriptors run
    /// short ([`crate::ops::descriptors`]).
    pub fn with_descriptors(mut self, descriptors: Arc<Descriptors>) -> Self {
        self.descriptors = descriptors;
        self
    }

    /// Expects a PROXY protocol header (v1 or v2) first on every connection of every listener
    /// this server serves, when `proxy_protocol` is set: its declared client address is then
    /// the [`Peer`] address (and the per-IP cap's key); a connection without a valid header is
    /// closed and counted.
    pub fn with_proxy_protocol(mut self, proxy_protocol: Option<ProxyProtocol>) -> Self {
        self.proxy_protocol = proxy_protocol.map(Arc::new);
        self
    }

    /// Accepts connections on `listener` (TLS when `tls` is set, else plaintext HTTP/1.1 and
    /// h2c with prior knowledge) until `shutdown` resolves; then stops accepting, asks every
    /// connection to finish (GOAWAY on h2), and waits for them up to the drain timeout.
    pub async fn serve(
        &self,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        shutdown: impl Future<Output = ()>,
    ) {
        // Each connection task holds a receiver: the signal to drain, and (when all are
        // dropped) the sign that every connection has ended.
        let (drain, _) = watch::channel(false);
        // Each connection's task holds this, one pointer, rather than a clone of the server
        // (its settings, metrics and caps, kept for the connection's life).
        let server = Arc::new(self.clone());
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => server.accepted(tcp, peer, tls.clone(), drain.subscribe()),
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        if let Some(suppressed) = self.accept_errors.check() {
                            warn!(error = %e, suppressed, "accept failed; backing off");
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = &mut shutdown => break,
            }
        }
        drop(listener);
        let _ = drain.send(true);
        if tokio::time::timeout(self.settings.drain_timeout, drain.closed())
            .await
            .is_err()
        {
            warn!("drain timeout: closing the remaining connections");
        }
    }

    fn accepted(
        self: &Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        tls: Option<TlsAcceptor>,
        drain: watch::Receiver<bool>,
    ) {
        let Ok(permit) = self.connections.clone().try_acquire_owned() else {
            self.metrics.connections_refused.inc(Cap::Global);
            debug!(%peer, "connection refused: limits.max_connections reached");
            return;
        };
        let descriptor = self.descriptors.hold();
        let _ = tcp.set_nodelay(true);
        let server = self.clone();
        let span = tracing::debug_span!(
            "connection",
            client.addr = field::Empty,
            proxy.addr = field::Empty
        );
        tokio::spawn(
            async move {
                // The PROXY header is read here, in the connection's own task, so a slow one
                // holds up no other connection; the per-IP cap counts the address it declares.
                let Some((io, client)) = server.proxy_header(tcp, peer).await else {
                    return;
                };
                tracing::Span::current().record("client.addr", field::display(client));
                let ip_slot = match &server.per_ip {
                    Some(per_ip) => match per_ip.acquire(client.ip()) {
                        Some(slot) => Some(slot),
                        None => {
                            server.metrics.connections_refused.inc(Cap::PerIp);
                            debug!("connection refused: limits.max_connections_per_ip reached");
                            return;
                        }
                    },
                    None => None,
                };
                let peer = Peer {
                    addr: client,
                    tls: tls.is_some(),
                };
                server.handshake(io, peer, tls, drain).await;
                drop((permit, ip_slot, descriptor));
            }
            .instrument(span),
        );
    }

    /// The stream to serve and the client's address: the socket and its peer, or, where a
    /// PROXY header is expected, the stream after it and the address it declares (`None`: the
    /// header was refused, counted, and the connection is to be closed).
    async fn proxy_header(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Option<(Rewind<TcpStream>, SocketAddr)> {
        let Some(proxy_protocol) = &self.proxy_protocol else {
            return Some((Rewind::new(bytes::Bytes::new(), tcp), peer));
        };
        tracing::Span::current().record("proxy.addr", field::display(peer));
        // Boxed: only connections that send a PROXY header pay for its reader and deadline,
        // and only while it is read (inline, every connection's task would be sized for it).
        match Box::pin(proxy_protocol.accept(tcp, peer)).await {
            Ok(accepted) => Some(accepted),
            Err(rejection) => {
                self.metrics.proxy_protocol_rejected.inc(rejection);
                debug!(%peer, reason = %rejection, "connection refused: PROXY protocol");
                None
            }
        }
    }

    /// The TLS handshake under its deadline (when `tls` is set), then the connection.
    async fn handshake(
        &self,
        io: Rewind<TcpStream>,
        peer: Peer,
        tls: Option<TlsAcceptor>,
        drain: watch::Receiver<bool>,
    ) {
        match tls {
            Some(acceptor) => {
                // Boxed, here and below: the task is then sized for neither the handshake nor
                // the connection, and each lives only as long as needed (the handshake's box
                // is a temporary of this statement, freed before the connection is served).
                let handshake =
                    tokio::time::timeout(self.settings.tls_handshake_timeout, acceptor.accept(io));
                let (stream, alpn) = match Box::pin(handshake).await {
                    // ALPN read here, in the arm: a local that is ever borrowed stays stored
                    // in this future across the await below (the whole TLS stream, rustls's
                    // connection state), even once moved out.
                    Ok(Ok(stream)) => {
                        let alpn = if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                            Alpn::H2
                        } else {
                            Alpn::Undecided
                        };
                        (stream, alpn)
                    }
                    Ok(Err(e)) => {
                        self.metrics.tls_handshake_failures.inc();
                        debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        self.metrics.tls_handshake_failures.inc();
                        debug!("TLS handshake timed out");
                        return;
                    }
                };
                Box::pin(self.serve_connection(stream, alpn, peer, drain)).await;
            }
            None => Box::pin(self.serve_connection(io, Alpn::Undecided, peer, drain)).await,
        }
    }

    /// The connection's future (see [`connection::serve`]: made by a plain function, so
    /// the stream is stored once).
    fn serve_connection<IO>(
        &self,
        io: IO,
        alpn: Alpn,
        peer: Peer,
        drain: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + '_
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        connection::serve(
            io,
            alpn,
            peer,
            self.handler.clone(),
            &self.builder,
            drain,
            self.metrics.clone(),
        )
    }
}

fn builder(settings: &ServerSettings) -> ConnectionBuilder {
    let h2 = &settings.h2;
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(settings.connection.first_request_timeout);
    ConnectionBuilder {
        http1,
        http2: connection::Http2Builder::new(h2, settings.max_streams_per_connection),
        limits: settings.connection,
    }
}

#[cfg(test)]
mod tests {
    use super::handler::EmptyAnswer;
    use super::*;
    use bytes::Bytes;

    /// Every connection's task holds the handshake's future for the connection's life; the
    /// TLS stream (rustls's whole connection state, ~1 KB) is in the connection's box, never
    /// in it too (a borrowed local, e.g. to read its ALPN, would stay in it across the await
    /// that serves the connection).
    #[tokio::test]
    async fn the_handshake_future_does_not_hold_the_tls_stream() {
        let route = "[[route]]\npath = \"/e/{t}\"\nupstream = \"http://127.0.0.1:1/{t}\"\n";
        let settings = crate::config::Settings::parse(route, std::path::Path::new("t.toml"))
            .unwrap()
            .server;
        let server = Server::new(EmptyAnswer, settings, Arc::new(ServerMetrics::unexported()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let tls_stream = std::mem::size_of::<tokio_rustls::server::TlsStream<Rewind<TcpStream>>>();
        let (_drain, drain) = watch::channel(false);
        let peer = Peer {
            addr: ([127, 0, 0, 1], 1).into(),
            tls: true,
        };
        let future = server.handshake(Rewind::new(Bytes::new(), tcp), peer, None, drain);
        let size = std::mem::size_of_val(&future);
        assert!(
            size < tls_stream / 2,
            "the handshake's future is {size} bytes, the TLS stream {tls_stream}"
        );
    }
}
