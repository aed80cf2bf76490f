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
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::admin::{Admin, Readiness};
use crate::tls::CertStore;

use crate::auth::Authorizer;
use crate::config::{ms, AuthMode, Config};
use crate::connection::ConnectionLimits;
use crate::cors::Cors;
use crate::downstream::DownstreamFrames;
use crate::hub::{Hub, HubSettings, RingLimits};
use crate::metrics::Metrics;
use crate::proxy::Passthrough;
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
    #[error("cannot listen on {addr}")]
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
    cert_store: Arc<CertStore>,
    plaintext_listener: Option<TcpListener>,
    admin_listener: TcpListener,
    admin: Admin,
    metrics: Arc<Metrics>,
    dev_cert_path: Option<PathBuf>,
    demo_origin: Option<tokio::task::JoinHandle<()>>,
    drain: DrainSettings,
    tls_reload_interval: Option<Duration>,
}

/// The phases of a drain (see `[server]` in the config).
#[derive(Debug, Clone, Copy)]
struct DrainSettings {
    delay: Duration,
    window: Duration,
}

impl App {
    /// Builds the relay and binds its listeners (and the demo origin, when enabled).
    ///
    /// # Errors
    /// [`StartError`] when TLS material cannot be loaded or an address cannot be bound.
    pub async fn bind(config: Config) -> Result<App, StartError> {
        let registry = Registry::new();
        let metrics = Metrics::new(&registry, config.admin.max_topic_labels)
            .map_err(|e| StartError::Internal(e.to_string()))?;
        let metrics = Arc::new(metrics);
        let (cert_store, dev_cert_path) = cert_store(&config)?;
        let server_tls = cert_store.server_config()?;
        let client_tls = tls::client_config(config.upstream.extra_ca_file.as_deref())?;

        let demo_origin = if config.demo_origin.enabled {
            let listener = bind(config.demo_origin.listen).await?;
            Some(tokio::spawn(demo_origin::serve(listener)))
        } else {
            None
        };
        let upstream = Arc::new(Upstream::new(
            upstream_settings(&config),
            client_tls.clone(),
            metrics.clone(),
        ));
        let hub = Hub::new(hub_settings(&config), metrics.clone(), upstream.opener());
        let router = Router::new(&config.routes).map_err(StartError::Internal)?;
        open_always_on(&config, &router, &hub)?;
        let relay = Relay::new(RelayParts {
            router,
            hub: hub.clone(),
            frames: Arc::new(DownstreamFrames::new(config.downstream.retry_hint_ms)),
            lag_policy: config.downstream.lag_policy,
            cors: Cors::new(&config.cors),
            metrics: metrics.clone(),
            passthrough: passthrough(&config, client_tls.clone(), metrics.clone())?,
            auth: Authorizer::new(&config.auth, client_tls, metrics.clone())
                .map_err(StartError::Internal)?,
            hsts: (config.server.hsts_max_age_s > 0).then(|| {
                http::HeaderValue::from_str(&format!("max-age={}", config.server.hsts_max_age_s))
                    .expect("digits are a valid header value")
            }),
        });
        warn_if_open(&config);
        let s = &config.server;
        let settings = ServerSettings {
            h2: s.h2.clone(),
            max_streams_per_connection: config.limits.max_streams_per_connection,
            tls_handshake_timeout: ms(config.limits.tls_handshake_timeout_ms),
            max_connections_per_ip: config.limits.max_connections_per_ip,
            connection: ConnectionLimits {
                first_request_timeout: ms(config.limits.first_request_timeout_ms),
                idle_timeout: ms(config.limits.idle_connection_timeout_ms),
                max_streams_lifetime: config.limits.max_streams_per_connection_lifetime,
                close_grace: Duration::from_secs(5),
            },
            drain_timeout: ms(s.drain_timeout_ms - s.drain_delay_ms),
        };
        let server = Server::new(
            relay,
            settings,
            config.limits.max_connections,
            metrics.clone(),
        );
        let tls_listener = bind(s.listen).await?;
        let plaintext_listener = match s.plaintext_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let admin_listener = bind(config.admin.listen).await?;
        let admin = Admin {
            registry,
            metrics: metrics.clone(),
            hub: hub.clone(),
            readiness: Readiness::default(),
        };
        Ok(App {
            server,
            hub,
            tls_listener,
            tls: TlsAcceptor::from(Arc::new(server_tls)),
            cert_store,
            plaintext_listener,
            admin_listener,
            admin,
            metrics,
            dev_cert_path,
            demo_origin,
            drain: DrainSettings {
                delay: ms(s.drain_delay_ms),
                window: ms(s.drain_window_ms),
            },
            tls_reload_interval: (s.tls_reload_interval_ms > 0)
                .then(|| ms(s.tls_reload_interval_ms)),
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

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Where the generated dev certificate was written, if one was generated.
    pub fn dev_cert_path(&self) -> Option<&std::path::Path> {
        self.dev_cert_path.as_deref()
    }

    /// The Prometheus registry holding the relay's metrics.
    pub fn registry(&self) -> &Registry {
        &self.admin.registry
    }

    /// The relay's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The readiness latch (`/readyz`).
    pub fn readiness(&self) -> &Readiness {
        &self.admin.readiness
    }

    /// Serves until `shutdown` resolves, then drains: `/readyz` fails at once; serving goes on
    /// for the drain delay; then listeners stop accepting and h2 connections get GOAWAY; SSE
    /// streams end spread over the drain window, each after a `retry:` hint; connections get
    /// until the drain timeout to close. Returns when done.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop, stopped) = watch::channel(false);
        let until = |rx: &watch::Receiver<bool>| {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut listeners = Vec::new();
        let server = self.server.clone();
        let (tls, tls_listener, stop_tls) = (self.tls.clone(), self.tls_listener, until(&stopped));
        listeners.push(tokio::spawn(async move {
            server.serve(tls_listener, Some(tls), stop_tls).await
        }));
        if let Some(listener) = self.plaintext_listener {
            let server = self.server.clone();
            let stop_plain = until(&stopped);
            listeners.push(tokio::spawn(async move {
                server.serve(listener, None, stop_plain).await
            }));
        }
        let (admin_stop, admin_stopped) = watch::channel(false);
        let admin = tokio::spawn(self.admin.clone().serve(self.admin_listener, admin_stopped));
        let reload = self.tls_reload_interval.map(|every| {
            tokio::spawn(watch_certificate(
                self.cert_store.clone(),
                every,
                self.metrics.clone(),
            ))
        });
        self.admin.readiness.set(true);

        shutdown.await;
        info!(delay = ?self.drain.delay, window = ?self.drain.window, "draining: readiness off");
        self.admin.readiness.set(false);
        self.metrics.draining.set(1);
        tokio::time::sleep(self.drain.delay).await;
        info!("draining: no new connections, GOAWAY, ending streams");
        let _ = stop.send(true);
        self.hub.drain(self.drain.window).await;
        for listener in listeners {
            let _ = listener.await;
        }
        let _ = admin_stop.send(true);
        let _ = admin.await;
        for task in reload.into_iter().chain(self.demo_origin) {
            task.abort();
        }
        info!("drained");
    }
}

/// Polls the certificate files and swaps in a changed, valid pair (see
/// [`CertStore::reload_if_changed`]); an invalid pair is logged and counted, the old one stays.
async fn watch_certificate(store: Arc<CertStore>, every: Duration, metrics: Arc<Metrics>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.reload_if_changed() {
            Ok(true) => {
                metrics.cert_reloads.ok.inc();
                info!("TLS certificate reloaded");
            }
            Ok(false) => {}
            Err(e) => {
                metrics.cert_reloads.rejected.inc();
                warn!(error = %e, "new TLS certificate rejected; keeping the current one");
            }
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn cert_store(config: &Config) -> Result<(Arc<CertStore>, Option<PathBuf>), StartError> {
    let s = &config.server;
    if let (Some(cert), Some(key)) = (&s.tls_cert, &s.tls_key) {
        return Ok((Arc::new(CertStore::from_files(cert, key)?), None));
    }
    let dir = s
        .dev_cert_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("sse-relay-dev"));
    let dev = tls::dev_certificate(&dir)?;
    Ok((dev.store, Some(dev.cert_path)))
}

/// Warns when a route lets anyone subscribe on a listener that is not loopback.
fn warn_if_open(config: &Config) {
    let s = &config.server;
    let exposed = std::iter::once(s.listen)
        .chain(s.plaintext_listen)
        .any(|addr| !addr.ip().is_loopback());
    for route in config.routes.iter().filter(|r| r.auth == AuthMode::None) {
        if exposed {
            warn!(
                route = %route.path,
                "auth = \"none\" on a non-loopback listener: anyone can subscribe"
            );
        }
    }
}

fn passthrough(
    config: &Config,
    tls: rustls::ClientConfig,
    metrics: Arc<Metrics>,
) -> Result<Option<Passthrough>, StartError> {
    let p = &config.passthrough;
    let Some(origin) = &p.upstream else {
        return Ok(None);
    };
    let connect = ms(p.connect_timeout_ms);
    let response = ms(p.response_timeout_ms);
    Passthrough::new(origin, connect, response, tls, metrics)
        .map(Some)
        .map_err(StartError::Internal)
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

/// Opens the `topics.always_on` topics (paths already checked against the routes).
fn open_always_on(config: &Config, router: &Router, hub: &Hub) -> Result<(), StartError> {
    for entry in &config.topics.always_on {
        let (path, query) = crate::routing::split_target(entry);
        let target = router.resolve(path, query).map_err(|_| {
            StartError::Internal(format!("topics.always_on: {entry:?} has no route"))
        })?;
        hub.open_always_on(&target.key, &target.path, &target.upstream.to_string())
            .map_err(|e| StartError::Internal(format!("topics.always_on: {entry:?}: {e}")))?;
    }
    Ok(())
}

fn hub_settings(config: &Config) -> HubSettings {
    HubSettings {
        ring: RingLimits {
            max_events: config.replay.max_events,
            max_bytes: config.replay.max_bytes,
            max_age: ms(config.replay.max_age_ms),
        },
        idle_grace: ms(config.topics.idle_grace_ms),
        origin_closed_ttl: ms(config.topics.origin_closed_ttl_ms),
        heartbeat_interval: ms(config.downstream.heartbeat_interval_ms),
        max_buffered_bytes: config.limits.max_buffered_bytes,
        max_topics: config.limits.max_topics,
    }
}
