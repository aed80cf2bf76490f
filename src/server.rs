//! The downstream server: accept loop (backing off on accept errors), global and per-IP
//! connection caps, TLS handshake under a deadline inside the connection task, hyper-util's
//! auto builder serving HTTP/1.1 and h2 on one listener with explicit h2 settings, and the
//! drain (GOAWAY on h2, close after the current request on HTTP/1.1, wait under a deadline).
//!
//! This module knows nothing of SSE: it hands every request to the [`Relay`] handler.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn, Instrument};

use crate::config::H2Config;
use crate::connection::{self, ConnectionLimits};
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
    /// Open connections from one client IP address, count.
    pub max_connections_per_ip: usize,
    /// Watchdogs of each connection.
    pub connection: ConnectionLimits,
    /// How long [`Server::serve`] waits for connections after GOAWAY before dropping them.
    pub drain_timeout: Duration,
}

/// Shared by every listener: the handler, the connection caps and the metrics.
#[derive(Clone)]
pub struct Server {
    relay: Relay,
    builder: Arc<auto::Builder<TokioExecutor>>,
    connections: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
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
            per_ip: Arc::new(PerIp::new(settings.max_connections_per_ip)),
            settings,
            metrics,
            accept_errors: Arc::default(),
        }
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
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => self.accepted(tcp, peer, tls.clone(), drain.subscribe()),
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
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        tls: Option<TlsAcceptor>,
        drain: watch::Receiver<bool>,
    ) {
        let Ok(permit) = self.connections.clone().try_acquire_owned() else {
            self.metrics.connections_refused.global.inc();
            debug!(%peer, "connection refused: limits.max_connections reached");
            return;
        };
        let Some(ip_slot) = self.per_ip.acquire(peer.ip()) else {
            self.metrics.connections_refused.per_ip.inc();
            debug!(%peer, "connection refused: limits.max_connections_per_ip reached");
            return;
        };
        let _ = tcp.set_nodelay(true);
        let server = self.clone();
        let span = tracing::debug_span!("connection", client.addr = %peer);
        tokio::spawn(
            async move {
                let peer = Peer {
                    addr: peer,
                    tls: tls.is_some(),
                };
                match tls {
                    Some(acceptor) => {
                        // Boxed, here and below: the task is then sized for neither the
                        // handshake nor the connection, and each lives only as long as needed.
                        let handshake = Box::pin(tokio::time::timeout(
                            server.settings.tls_handshake_timeout,
                            acceptor.accept(tcp),
                        ));
                        match handshake.await {
                            Ok(Ok(stream)) => {
                                Box::pin(server.serve_connection(stream, peer, drain)).await
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
                    None => Box::pin(server.serve_connection(tcp, peer, drain)).await,
                }
                drop((permit, ip_slot));
            }
            .instrument(span),
        );
    }

    async fn serve_connection<IO>(&self, io: IO, peer: Peer, drain: watch::Receiver<bool>)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        connection::serve(
            io,
            peer,
            self.relay.clone(),
            self.builder.clone(),
            self.settings.connection,
            drain,
            self.metrics.clone(),
        )
        .await;
    }
}

/// Open connections per client IP address.
struct PerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`PerIp`]; released on drop.
struct IpSlot {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn new(max: usize) -> Self {
        Self {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            per_ip: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.per_ip.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

fn builder(settings: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let h2 = &settings.h2;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.connection.first_request_timeout);
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
