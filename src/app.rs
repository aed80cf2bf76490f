//! The assembled relay: builds every component from a validated [`Config`], binds the
//! listeners, serves until a shutdown signal, and drains (stop accepting → GOAWAY → end SSE
//! streams with a `retry:` hint → wait for connections under the drain deadline).
//!
//! Tests drive this directly with their own shutdown future; `main` only adds CLI, logging and
//! signals.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::info;

use crate::config::{ms, Config};
use crate::cors::Cors;
use crate::downstream::DownstreamFrames;
use crate::hub::{Hub, HubSettings, RingLimits};
use crate::metrics::Metrics;
use crate::relay::{Relay, RelayParts};
use crate::routing::Router;
use crate::server::{Server, ServerSettings};
use crate::upstream::{Upstream, UpstreamSettings};
use crate::{demo_origin, tls};

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Certificates or keys could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Internal wiring failed (routes, metrics registration).
    #[error("{0}")]
    Internal(String),
}

/// A relay whose listeners are bound, ready to [`App::run`].
pub struct App {
    server: Server,
    hub: Hub,
    tls_listener: TcpListener,
    tls: TlsAcceptor,
    plaintext_listener: Option<TcpListener>,
    registry: Registry,
    metrics: Arc<Metrics>,
    dev_cert_path: Option<PathBuf>,
    demo_origin: Option<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Builds the relay and binds its listeners (and the demo origin, when enabled).
    ///
    /// # Errors
    /// [`StartError`] when TLS material cannot be loaded or an address cannot be bound.
    pub async fn bind(config: Config) -> Result<App, StartError> {
        let registry = Registry::new();
        let metrics =
            Arc::new(Metrics::new(&registry).map_err(|e| StartError::Internal(e.to_string()))?);
        let (server_tls, dev_cert_path) = server_tls(&config)?;
        let client_tls = tls::client_config(config.upstream.extra_ca_file.as_deref())?;

        let demo_origin = if config.demo_origin.enabled {
            let listener = bind(config.demo_origin.listen).await?;
            Some(tokio::spawn(demo_origin::serve(listener)))
        } else {
            None
        };
        let upstream = Arc::new(Upstream::new(
            upstream_settings(&config),
            client_tls,
            metrics.clone(),
        ));
        let hub = Hub::new(hub_settings(&config), metrics.clone(), upstream.opener());
        let router = Router::new(&config.routes).map_err(StartError::Internal)?;
        let relay = Relay::new(RelayParts {
            router,
            hub: hub.clone(),
            frames: Arc::new(DownstreamFrames::new(config.downstream.retry_hint_ms)),
            lag_policy: config.downstream.lag_policy,
            cors: Cors::new(&config.cors),
            metrics: metrics.clone(),
        });
        let settings = ServerSettings {
            h2: config.server.h2.clone(),
            max_streams_per_connection: config.limits.max_streams_per_connection,
            tls_handshake_timeout: ms(config.limits.tls_handshake_timeout_ms),
            drain_timeout: ms(config.server.drain_timeout_ms),
        };
        let server = Server::new(
            relay,
            settings,
            config.limits.max_connections,
            metrics.clone(),
        );
        let tls_listener = bind(config.server.listen).await?;
        let plaintext_listener = match config.server.plaintext_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(App {
            server,
            hub,
            tls_listener,
            tls: TlsAcceptor::from(Arc::new(server_tls)),
            plaintext_listener,
            registry,
            metrics,
            dev_cert_path,
            demo_origin,
        })
    }

    /// The bound TLS address (useful with port 0).
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls_listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The bound plaintext address, if configured.
    pub fn plaintext_addr(&self) -> Option<SocketAddr> {
        self.plaintext_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Where the generated dev certificate was written, if one was generated.
    pub fn dev_cert_path(&self) -> Option<&std::path::Path> {
        self.dev_cert_path.as_deref()
    }

    /// The Prometheus registry holding the relay's metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The relay's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Serves until `shutdown` resolves, then drains and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let mut listeners = Vec::new();
        let server = self.server.clone();
        let stopped_tls = until_stopped();
        let tls = self.tls.clone();
        let tls_listener = self.tls_listener;
        listeners.push(tokio::spawn(async move {
            server.serve(tls_listener, Some(tls), stopped_tls).await
        }));
        if let Some(listener) = self.plaintext_listener {
            let server = self.server.clone();
            let stopped_plain = until_stopped();
            listeners.push(tokio::spawn(async move {
                server.serve(listener, None, stopped_plain).await
            }));
        }
        shutdown.await;
        info!("draining: no new connections, GOAWAY, ending streams");
        let _ = stop.send(true);
        self.hub.drain();
        for listener in listeners {
            let _ = listener.await;
        }
        if let Some(demo) = self.demo_origin {
            demo.abort();
        }
        info!("drained");
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn server_tls(config: &Config) -> Result<(rustls::ServerConfig, Option<PathBuf>), StartError> {
    let s = &config.server;
    if let (Some(cert), Some(key)) = (&s.tls_cert, &s.tls_key) {
        return Ok((tls::server_config_from_files(cert, key)?, None));
    }
    let dir = s
        .dev_cert_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("sse-relay-dev"));
    let dev = tls::dev_certificate(&dir)?;
    Ok((dev.config, Some(dev.cert_path)))
}

fn upstream_settings(config: &Config) -> UpstreamSettings {
    let u = &config.upstream;
    UpstreamSettings {
        connect_timeout: ms(u.connect_timeout_ms),
        read_idle_timeout: (u.read_idle_timeout_ms > 0).then(|| ms(u.read_idle_timeout_ms)),
        backoff_min: ms(u.backoff_min_ms),
        backoff_max: ms(u.backoff_max_ms),
        max_event_bytes: config.limits.max_event_bytes,
    }
}

fn hub_settings(config: &Config) -> HubSettings {
    HubSettings {
        ring: RingLimits {
            max_events: config.replay.max_events,
            max_bytes: config.replay.max_bytes,
            max_age: ms(config.replay.max_age_ms),
        },
        idle_grace: ms(config.topics.idle_grace_ms),
        heartbeat_interval: ms(config.downstream.heartbeat_interval_ms),
    }
}
