//! The downstream server: accept loop, TLS handshake under a deadline, hyper-util's auto
//! builder serving HTTP/1.1 and h2 on one listener with explicit h2 settings, a connection cap,
//! and graceful shutdown (GOAWAY on h2, close after the current request on HTTP/1.1).
//!
//! This module knows nothing of SSE: it hands every request to the [`Relay`] handler.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn, Instrument};

use crate::config::H2Config;
use crate::metrics::Metrics;
use crate::proxy::Peer;
use crate::relay::Relay;
use crate::warn_limit::WarnLimit;

/// Connection handling settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// h2 settings.
    pub h2: H2Config,
    /// SETTINGS_MAX_CONCURRENT_STREAMS, count.
    pub max_streams_per_connection: u32,
    /// TLS handshake deadline.
    pub tls_handshake_timeout: Duration,
    /// How long [`Server::serve`] waits for connections after GOAWAY before dropping them.
    pub drain_timeout: Duration,
}

/// Shared by every listener: the handler, the connection cap and the metrics.
#[derive(Clone)]
pub struct Server {
    relay: Relay,
    builder: Arc<auto::Builder<TokioExecutor>>,
    connections: Arc<Semaphore>,
    settings: ServerSettings,
    metrics: Arc<Metrics>,
    accept_errors: Arc<WarnLimit>,
}

impl Server {
    /// Creates the server; `max_connections` caps open connections over all listeners.
    pub fn new(
        relay: Relay,
        settings: ServerSettings,
        max_connections: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            relay,
            builder: Arc::new(builder(&settings)),
            connections: Arc::new(Semaphore::new(max_connections)),
            settings,
            metrics,
            accept_errors: Arc::default(),
        }
    }

    /// Accepts connections on `listener` (TLS when `tls` is set, else plaintext HTTP/1.1 and
    /// h2c with prior knowledge) until `shutdown` resolves; then stops accepting, asks every
    /// connection to finish (GOAWAY), and waits for them up to the drain timeout.
    pub async fn serve(
        &self,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        shutdown: impl Future<Output = ()>,
    ) {
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => self.accepted(tcp, peer, tls.clone(), graceful.watcher()),
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
        if tokio::time::timeout(self.settings.drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            warn!("drain timeout: closing the remaining connections");
        }
    }

    fn accepted(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        tls: Option<TlsAcceptor>,
        watcher: Watcher,
    ) {
        let Ok(permit) = self.connections.clone().try_acquire_owned() else {
            self.metrics.connections_refused.inc();
            debug!(%peer, "connection refused: limits.max_connections reached");
            return;
        };
        let _ = tcp.set_nodelay(true);
        let protocol = ConnectionProtocol::new(self.metrics.clone());
        let server = self.clone();
        let span = tracing::debug_span!("connection", client.addr = %peer);
        tokio::spawn(
            async move {
                match tls {
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(
                            server.settings.tls_handshake_timeout,
                            acceptor.accept(tcp),
                        );
                        match handshake.await {
                            Ok(Ok(stream)) => {
                                let peer = Peer {
                                    addr: peer,
                                    tls: true,
                                };
                                server
                                    .serve_connection(stream, peer, watcher, protocol)
                                    .await
                            }
                            Ok(Err(e)) => {
                                server.metrics.tls_handshake_failures.inc();
                                debug!(error = %e, "TLS handshake failed");
                            }
                            Err(_) => {
                                server.metrics.tls_handshake_failures.inc();
                                debug!("TLS handshake timed out");
                            }
                        }
                    }
                    None => {
                        let peer = Peer {
                            addr: peer,
                            tls: false,
                        };
                        server.serve_connection(tcp, peer, watcher, protocol).await
                    }
                }
                drop(permit);
            }
            .instrument(span),
        );
    }

    async fn serve_connection<IO>(
        &self,
        io: IO,
        peer: Peer,
        watcher: Watcher,
        protocol: ConnectionProtocol,
    ) where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let relay = self.relay.clone();
        let protocol = Arc::new(protocol);
        let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
            protocol.first_request(request.version());
            let relay = relay.clone();
            async move { Ok::<_, Infallible>(relay.handle(request, peer).await) }
        });
        let connection = self.builder.serve_connection(TokioIo::new(io), service);
        if let Err(e) = watcher.watch(connection).await {
            debug!(error = %e, "connection ended with an error");
        }
    }
}

/// Counts a connection by the protocol of its first request (`h2` or `http/1.1`), or as
/// `none` when it closes without one. Dropped with the connection's service.
struct ConnectionProtocol {
    metrics: Arc<Metrics>,
    state: AtomicU8,
}

const PENDING: u8 = 0;
const HTTP1: u8 = 1;
const H2: u8 = 2;

impl ConnectionProtocol {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.connections_open.pending.inc();
        Self {
            metrics,
            state: AtomicU8::new(PENDING),
        }
    }

    fn first_request(&self, version: http::Version) {
        let protocol = if version == http::Version::HTTP_2 {
            H2
        } else {
            HTTP1
        };
        if self
            .state
            .compare_exchange(PENDING, protocol, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
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
    }
}

impl Drop for ConnectionProtocol {
    fn drop(&mut self) {
        let m = &self.metrics;
        match self.state.load(Ordering::Acquire) {
            PENDING => {
                m.connections_open.pending.dec();
                m.connections_accepted.none.inc();
            }
            H2 => m.connections_open.h2.dec(),
            _ => m.connections_open.http1.dec(),
        }
    }
}

fn builder(settings: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let h2 = &settings.h2;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let keep_alive =
        (h2.keep_alive_interval_ms > 0).then(|| Duration::from_millis(h2.keep_alive_interval_ms));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.max_streams_per_connection)
        .max_pending_accept_reset_streams(h2.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(h2.max_local_error_reset_streams)
        .max_header_list_size(h2.max_header_list_size)
        .keep_alive_interval(keep_alive)
        .keep_alive_timeout(Duration::from_millis(h2.keep_alive_timeout_ms))
        .max_send_buf_size(h2.max_send_buf_size);
    builder
}
