//! The composition root: builds every component from the validated [`Settings`], binds the
//! listeners, serves until a shutdown signal, and runs the drain sequence (readiness off →
//! drain delay → stop accepting and GOAWAY → end SSE streams spread over the window with a
//! `retry:` hint → wait for connections under the drain deadline).
//!
//! Tests drive this directly with their own shutdown future; `main` only adds CLI, logging and
//! signals. Nothing here decides how a request or an event is handled.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::admin::{Admin, Readiness};
use crate::cluster::{link, Cluster, ClusterMetrics, PeerToken};
use crate::config::{ClusterSetup, DrainSettings, Listeners, Settings, TlsSource};
use crate::demo_origin;
use crate::downstream::DownstreamMetrics;
use crate::edge::peer::PeerEdge;
use crate::edge::{Edge, EdgeHandles, EdgeMetrics};
use crate::http::http_client;
use crate::hub::{Hub, HubMetrics, Refused};
use crate::server::tls::{self, CertStore};
use crate::server::{Server, ServerMetrics};
use crate::upstream::{Upstream, UpstreamMetrics};

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
    /// The metrics could not be registered.
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A `topics.always_on` topic could not be opened.
    #[error("topics.always_on: {path}: {source}")]
    AlwaysOn {
        /// The topic's request path.
        path: String,
        /// Why the hub refused it.
        source: Refused,
    },
}

/// Every metric of the relay, by component (all registered in [`App::registry`]); cheap to
/// clone.
#[derive(Clone)]
pub struct Metrics {
    /// Subscribers, topics, replay buffers.
    pub hub: Arc<HubMetrics>,
    /// Origin subscriptions.
    pub upstream: Arc<UpstreamMetrics>,
    /// Subscribers' streams.
    pub downstream: Arc<DownstreamMetrics>,
    /// Authorization, passthrough, malformed requests.
    pub edge: Arc<EdgeMetrics>,
    /// Connections of the relay's listeners.
    pub server: Arc<ServerMetrics>,
    /// Cluster mode: peers, owned and peer-read topics (at 0 on a single relay).
    pub cluster: Arc<ClusterMetrics>,
}

impl Metrics {
    fn new(registry: &Registry, max_topic_labels: usize) -> prometheus::Result<Self> {
        Ok(Self {
            hub: Arc::new(HubMetrics::new(registry, max_topic_labels)?),
            upstream: Arc::new(UpstreamMetrics::new(registry)?),
            downstream: Arc::new(DownstreamMetrics::new(registry)?),
            edge: Arc::new(EdgeMetrics::new(registry)?),
            server: Arc::new(ServerMetrics::new(registry)?),
            cluster: Arc::new(ClusterMetrics::new(registry)?),
        })
    }
}

/// A relay whose listeners are bound, ready to [`App::run`].
pub struct App {
    server: Server<Edge>,
    /// The edge, for the drain's last step (closing WebSocket tunnels).
    edge: Edge,
    admin: Server<Admin>,
    admin_stop: watch::Sender<bool>,
    hub: Hub,
    tls_listener: TcpListener,
    tls: TlsAcceptor,
    cert_store: Arc<CertStore>,
    plaintext_listener: Option<TcpListener>,
    admin_listener: TcpListener,
    registry: Registry,
    readiness: Readiness,
    metrics: Metrics,
    dev_cert_path: Option<PathBuf>,
    demo_origin: Option<tokio::task::JoinHandle<()>>,
    drain: DrainSettings,
    tls_reload_interval: Option<std::time::Duration>,
    /// Cluster mode: the peer listener, its TLS and its server.
    peer_link: Option<PeerLink>,
}

/// The peer listener of cluster mode.
struct PeerLink {
    server: Server<PeerEdge>,
    listener: TcpListener,
    tls: TlsAcceptor,
}

impl App {
    /// Builds the relay and binds its listeners (and the demo origin, when enabled).
    ///
    /// # Errors
    /// [`StartError`] when TLS material cannot be loaded, an address cannot be bound, or an
    /// always-on topic cannot be opened.
    pub async fn bind(settings: Settings) -> Result<App, StartError> {
        let registry = Registry::new();
        let metrics = Metrics::new(&registry, settings.max_topic_labels)?;
        let (cert_store, dev_cert_path, tls_reload_interval) = cert_store(&settings.tls)?;
        let server_tls = cert_store.server_config()?;
        let extra_ca = settings.extra_ca_file.as_deref();
        let client_tls = tls::client_config(extra_ca, None)?;
        let upstream_tls = match &settings.upstream_identity {
            Some(identity) => tls::client_config(extra_ca, Some(identity))?,
            None => client_tls.clone(),
        };
        let demo_origin = match settings.listeners.demo_origin {
            Some(addr) => Some(start_demo_origin(addr, &settings).await?),
            None => None,
        };
        let hub = Hub::new(settings.hub, metrics.hub.clone());
        let cluster = match &settings.cluster {
            Some(setup) => Some(start_cluster(setup, &settings, &metrics).await?),
            None => None,
        };
        let mut upstream = Upstream::new(
            settings.upstream.clone(),
            upstream_tls,
            metrics.upstream.clone(),
        );
        if let Some((cluster, ..)) = &cluster {
            upstream = upstream.with_cluster(cluster.clone());
        }
        let upstream = Arc::new(upstream);
        let handles = EdgeHandles {
            hub: hub.clone(),
            upstream,
            client_tls,
            metrics: metrics.edge.clone(),
            downstream_metrics: metrics.downstream.clone(),
        };
        let edge = Edge::new(settings.edge, handles)
            .map_err(|(path, source)| StartError::AlwaysOn { path, source })?;
        for route in &settings.open_routes {
            warn!(%route, "auth = \"none\" on a non-loopback listener: anyone can subscribe");
        }
        let (tls_listener, plaintext_listener, admin_listener) =
            bind_all(&settings.listeners).await?;
        let readiness = Readiness::default();
        let (admin_stop, admin_stopped) = watch::channel(false);
        let admin = Admin {
            registry: registry.clone(),
            hub: hub.clone(),
            upstream: metrics.upstream.clone(),
            downstream: metrics.downstream.clone(),
            server: metrics.server.clone(),
            readiness: readiness.clone(),
            stop: admin_stopped,
            cluster: cluster.as_ref().map(|(cluster, ..)| cluster.clone()),
        };
        let admin_metrics = Arc::new(ServerMetrics::unexported());
        // One h2 connection from each peer carries every topic it reads from here: no
        // per-connection stream cap below the topic cap (hyper's client queues past it).
        let mut peer_server = settings.server.clone();
        peer_server.max_streams_per_connection = u32::try_from(settings.hub.max_topics)
            .unwrap_or(u32::MAX)
            .max(peer_server.max_streams_per_connection);
        let peer_link = cluster.map(|(cluster, listener, tls)| PeerLink {
            server: Server::new(
                PeerEdge::new(edge.clone(), cluster),
                peer_server,
                Arc::new(ServerMetrics::unexported()),
            ),
            listener,
            tls,
        });
        Ok(App {
            peer_link,
            edge: edge.clone(),
            server: Server::new(edge, settings.server.clone(), metrics.server.clone())
                .with_proxy_protocol(settings.proxy_protocol),
            admin: Server::new(admin, settings.server, admin_metrics),
            admin_stop,
            hub,
            tls_listener,
            tls: TlsAcceptor::from(Arc::new(server_tls)),
            cert_store,
            plaintext_listener,
            admin_listener,
            registry,
            readiness,
            metrics,
            dev_cert_path,
            demo_origin,
            drain: settings.drain,
            tls_reload_interval,
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

    /// The bound peer-listener address (cluster mode).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_link
            .as_ref()
            .and_then(|p| p.listener.local_addr().ok())
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
        &self.registry
    }

    /// The relay's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The readiness latch (`/readyz`).
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
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
        if let Some(peer) = self.peer_link {
            let stop_peers = until(&stopped);
            listeners.push(tokio::spawn(async move {
                peer.server
                    .serve(peer.listener, Some(peer.tls), stop_peers)
                    .await
            }));
        }
        let admin_server = self.admin.clone();
        let admin_stopped = until(&self.admin_stop.subscribe());
        let admin_listener = self.admin_listener;
        let admin = tokio::spawn(async move {
            admin_server
                .serve(admin_listener, None, admin_stopped)
                .await
        });
        let reload = self.tls_reload_interval.map(|every| {
            tokio::spawn(tls::watch_certificate(
                self.cert_store.clone(),
                every,
                self.metrics.server.clone(),
            ))
        });
        self.readiness.set(true);

        shutdown.await;
        info!(delay = ?self.drain.delay, window = ?self.drain.window, "draining: readiness off");
        self.readiness.set(false);
        self.metrics.hub.draining.set(1);
        tokio::time::sleep(self.drain.delay).await;
        info!("draining: no new connections, GOAWAY, ending streams");
        let _ = stop.send(true);
        self.hub.drain(self.drain.window).await;
        self.edge.close_tunnels();
        for listener in listeners {
            let _ = listener.await;
        }
        let _ = self.admin_stop.send(true);
        let _ = admin.await;
        for task in reload.into_iter().chain(self.demo_origin) {
            task.abort();
        }
        info!("drained");
    }
}

/// Cluster mode's parts: the peer link's TLS and token, the first view of the peers, and the
/// bound peer listener with its TLS.
async fn start_cluster(
    setup: &ClusterSetup,
    settings: &Settings,
    metrics: &Metrics,
) -> Result<(Cluster, TcpListener, TlsAcceptor), StartError> {
    let (server_tls, client_tls) = link::configs(
        &setup.ca_file,
        &setup.cert_file,
        &setup.key_file,
        &setup.peer_name,
    )?;
    let token = PeerToken::read(&setup.token_file)?;
    let listener = bind(setup.listen).await?;
    let timeout = settings.upstream.connect_timeout;
    // Probes on a connection of their own, so a busy subscription link never delays them.
    let (client, probes) = (
        http_client(client_tls.clone(), timeout),
        http_client(client_tls, timeout),
    );
    let cluster = Cluster::start(
        setup.settings.clone(),
        client,
        probes,
        token,
        metrics.cluster.clone(),
    )
    .await;
    Ok((cluster, listener, TlsAcceptor::from(Arc::new(server_tls))))
}

/// Binds the TLS, plaintext (if any) and admin listeners.
async fn bind_all(
    listeners: &Listeners,
) -> Result<(TcpListener, Option<TcpListener>, TcpListener), StartError> {
    let tls = bind(listeners.tls).await?;
    let plaintext = match listeners.plaintext {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    Ok((tls, plaintext, bind(listeners.admin).await?))
}

/// Starts the demo origin on `addr`, with the relay's own connection settings.
async fn start_demo_origin(
    addr: SocketAddr,
    settings: &Settings,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
    let listener = bind(addr).await?;
    Ok(tokio::spawn(demo_origin::serve(
        listener,
        settings.server.clone(),
    )))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// The certificate store for `source`, the dev certificate's path when one was generated, and
/// how often to check the files for changes.
type CertSetup = (Arc<CertStore>, Option<PathBuf>, Option<std::time::Duration>);

fn cert_store(source: &TlsSource) -> Result<CertSetup, StartError> {
    match source {
        TlsSource::Files {
            cert,
            key,
            reload_interval,
        } => Ok((
            Arc::new(CertStore::from_files(cert, key)?),
            None,
            *reload_interval,
        )),
        TlsSource::Dev { dir } => {
            let dev = tls::dev_certificate(dir)?;
            Ok((dev.store, Some(dev.cert_path), None))
        }
    }
}
