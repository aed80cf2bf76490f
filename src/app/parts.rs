//! The parts a bound relay is made of, each with its one owner and built from the settings:
//! the client-facing side ([`Relay`]), the bound listeners, the server certificate, the
//! operator's side ([`Ops`]: admin server, registry, readiness, metrics) and the cluster's peer
//! link; and why one could not start ([`StartError`]).
//!
//! It builds and spawns; it never decides the order of the drain (the [`super::App`] does) nor
//! how a request or an event is handled.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use rustls::ClientConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::admin::history::{History, Sources};
use crate::admin::metrics::AdminMetrics;
use crate::admin::tail::TailSettings;
use crate::admin::{Admin, AdminToken, Readiness};
use crate::cluster::{link, Cluster, ClusterMetrics, PeerToken};
use crate::config::{ClusterSetup, Listeners, Settings, TlsSource};
use crate::demo_origin;
use crate::downstream::DownstreamMetrics;
use crate::edge::peer::PeerEdge;
use crate::edge::streams::StreamMetrics;
use crate::edge::{Edge, EdgeMetrics};
use crate::http::http_client;
use crate::hub::{Hub, HubMetrics, Refused};
use crate::server::tls::{self, CertStore};
use crate::server::{Server, ServerMetrics, ServerSettings};
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

/// Every metric of the relay, by component (all registered in [`super::App::registry`]); cheap to
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
    /// The request streams' hub: streams held, viewers, bytes (`sse_relay_request_stream_…`).
    pub stream_hub: Arc<HubMetrics>,
    /// Request streams started, resumed, cancelled; their answers' pace.
    pub streams: Arc<StreamMetrics>,
    /// The admin listener's tails.
    pub admin: Arc<AdminMetrics>,
}

impl Metrics {
    pub(super) fn new(registry: &Registry, max_topic_labels: usize) -> prometheus::Result<Self> {
        Ok(Self {
            hub: Arc::new(HubMetrics::new(registry, max_topic_labels)?),
            upstream: Arc::new(UpstreamMetrics::new(registry)?),
            downstream: Arc::new(DownstreamMetrics::new(registry)?),
            edge: Arc::new(EdgeMetrics::new(registry)?),
            server: Arc::new(ServerMetrics::new(registry)?),
            cluster: Arc::new(ClusterMetrics::new(registry)?),
            stream_hub: Arc::new(HubMetrics::named(
                registry,
                "sse_relay_request_stream_",
                max_topic_labels,
            )?),
            streams: Arc::new(StreamMetrics::new(registry)?),
            admin: Arc::new(AdminMetrics::new(registry)?),
        })
    }
}

/// The client-facing side: what serves subscribers and what they subscribe to.
pub(super) struct Relay {
    /// The server of the TLS and plaintext listeners.
    pub(super) server: Server<Edge>,
    /// The edge, for the drain's last step (closing WebSocket tunnels).
    pub(super) edge: Edge,
    /// The topics, ended by the drain.
    pub(super) hub: Hub,
}

/// The listeners bound at start (the peer listener is the [`PeerLink`]'s).
pub(super) struct BoundListeners {
    /// Clients over TLS (h2 and HTTP/1.1 by ALPN).
    pub(super) tls: TcpListener,
    /// Clients in plaintext (HTTP/1.1 and h2c), if configured.
    pub(super) plaintext: Option<TcpListener>,
    /// The admin endpoints.
    pub(super) admin: TcpListener,
}

/// The server certificate and what serves it.
pub(super) struct Certificates {
    /// The TLS acceptor of the client listener, resolving through `store`.
    pub(super) acceptor: TlsAcceptor,
    /// The certificate store (reloaded from its files when `reload_interval` is set).
    pub(super) store: Arc<CertStore>,
    /// Where the generated dev certificate was written, if one was generated.
    pub(super) dev_cert_path: Option<PathBuf>,
    /// How often to check the certificate files for changes.
    pub(super) reload_interval: Option<Duration>,
}

/// The operator's side: the admin listener's server and what it reads.
pub(super) struct Ops {
    /// The admin server (`/metrics`, `/readyz`, …).
    pub(super) admin: Server<Admin>,
    /// Ends the admin server (and its `/stats` streams), last in the drain.
    pub(super) admin_stop: watch::Sender<bool>,
    /// Every metric of the relay, served at `/metrics`.
    pub(super) registry: Registry,
    /// The `/readyz` latch: set once serving, cleared first in the drain.
    pub(super) readiness: Readiness,
    /// The relay's metrics, by component.
    pub(super) metrics: Metrics,
}

/// The peer listener of cluster mode.
pub(super) struct PeerLink {
    /// The edge as peers see it, on its own server.
    pub(super) server: Server<PeerEdge>,
    /// The bound peer listener.
    pub(super) listener: TcpListener,
    /// The peer link's TLS: mutual, against the cluster's own CA.
    pub(super) tls: TlsAcceptor,
}

impl Ops {
    /// The admin server over `registry`, `metrics` and `hub` (and the cluster's view, in
    /// cluster mode), with its own unexported connection metrics; `token` guards the pages
    /// that show data, `tail` is how tails behave. Starts the history's sampler, which stops
    /// with the admin server.
    pub(super) fn new(
        registry: Registry,
        metrics: Metrics,
        (hub, stream_hub): (&Hub, Option<&Hub>),
        cluster: Option<Cluster>,
        server: &ServerSettings,
        token: Option<AdminToken>,
        tail: TailSettings,
    ) -> Self {
        let readiness = Readiness::default();
        let (admin_stop, admin_stopped) = watch::channel(false);
        let sources = Sources {
            hub: metrics.hub.clone(),
            upstream: metrics.upstream.clone(),
            downstream: metrics.downstream.clone(),
            server: metrics.server.clone(),
            admin: metrics.admin.clone(),
            request_streams: stream_hub.cloned(),
        };
        let history = History::start(sources, admin_stopped.clone());
        let admin = Admin {
            registry: registry.clone(),
            hub: hub.clone(),
            upstream: metrics.upstream.clone(),
            downstream: metrics.downstream.clone(),
            server: metrics.server.clone(),
            readiness: readiness.clone(),
            stop: admin_stopped,
            cluster,
            token,
            history,
            metrics: metrics.admin.clone(),
            tail,
            request_streams: stream_hub.cloned(),
        };
        let admin_metrics = Arc::new(ServerMetrics::unexported());
        Ops {
            admin: Server::new(admin, server.clone(), admin_metrics),
            admin_stop,
            registry,
            readiness,
            metrics,
        }
    }

    /// Spawns the admin server on `listener`, until `admin_stop` is sent.
    pub(super) fn serve(&self, listener: TcpListener) -> JoinHandle<()> {
        let admin = self.admin.clone();
        let stopped = when_true(&self.admin_stop.subscribe());
        tokio::spawn(async move { admin.serve(listener, None, stopped).await })
    }
}

impl PeerLink {
    /// The peer listener's server: the edge as peers see it, on the relay's connection
    /// settings but with room for every topic on one connection.
    pub(super) fn new(
        (cluster, listener, tls): (Cluster, TcpListener, TlsAcceptor),
        edge: &Edge,
        server: &ServerSettings,
        max_topics: usize,
    ) -> Self {
        // One h2 connection from each peer carries every topic it reads from here: no
        // per-connection stream cap below the topic cap (hyper's client queues past it).
        let mut peer_server = server.clone();
        peer_server.max_streams_per_connection = u32::try_from(max_topics)
            .unwrap_or(u32::MAX)
            .max(peer_server.max_streams_per_connection);
        PeerLink {
            server: Server::new(
                PeerEdge::new(edge.clone(), cluster),
                peer_server,
                Arc::new(ServerMetrics::unexported()),
            ),
            listener,
            tls,
        }
    }
}

/// The TLS client configs: for authorization servers and passthrough (trusting the extra CA),
/// and for origins of SSE routes (the same, presenting the upstream identity when one is set).
pub(super) fn client_configs(
    settings: &Settings,
) -> Result<(ClientConfig, ClientConfig), StartError> {
    let extra_ca = settings.extra_ca_file.as_deref();
    let client_tls = tls::client_config(extra_ca, None)?;
    let upstream_tls = match &settings.upstream_identity {
        Some(identity) => tls::client_config(extra_ca, Some(identity))?,
        None => client_tls.clone(),
    };
    Ok((client_tls, upstream_tls))
}

/// The origin subscriptions' side, following the cluster's owners in cluster mode.
pub(super) fn upstream(
    settings: &Settings,
    tls: ClientConfig,
    cluster: Option<&(Cluster, TcpListener, TlsAcceptor)>,
    metrics: &Metrics,
) -> Arc<Upstream> {
    let mut upstream = Upstream::new(settings.upstream.clone(), tls, metrics.upstream.clone());
    if let Some((cluster, ..)) = cluster {
        upstream = upstream.with_cluster(cluster.clone());
    }
    Arc::new(upstream)
}

/// Cluster mode's parts: the peer link's TLS and token, the first view of the peers, and the
/// bound peer listener with its TLS.
pub(super) async fn start_cluster(
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

/// Binds the TLS, plaintext (if any) and admin listeners, in that order.
pub(super) async fn bind_all(listeners: &Listeners) -> Result<BoundListeners, StartError> {
    let tls = bind(listeners.tls).await?;
    let plaintext = match listeners.plaintext {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let admin = bind(listeners.admin).await?;
    Ok(BoundListeners {
        tls,
        plaintext,
        admin,
    })
}

/// Starts the demo origin on `addr`, with the relay's own connection settings.
pub(super) async fn start_demo_origin(
    addr: SocketAddr,
    settings: &Settings,
) -> Result<JoinHandle<()>, StartError> {
    let listener = bind(addr).await?;
    Ok(tokio::spawn(demo_origin::serve(
        listener,
        settings.server.clone(),
    )))
}

/// A listener bound to `addr`.
async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

impl Certificates {
    /// The certificate store for `source` (its files, or a dev certificate generated and
    /// written now) and the acceptor serving it.
    pub(super) fn load(source: &TlsSource) -> Result<Self, StartError> {
        let (store, dev_cert_path, reload_interval) = match source {
            TlsSource::Files {
                cert,
                key,
                reload_interval,
            } => (
                Arc::new(CertStore::from_files(cert, key)?),
                None,
                *reload_interval,
            ),
            TlsSource::Dev { dir } => {
                let dev = tls::dev_certificate(dir)?;
                (dev.store, Some(dev.cert_path), None)
            }
        };
        let acceptor = TlsAcceptor::from(Arc::new(store.server_config()?));
        Ok(Self {
            acceptor,
            store,
            dev_cert_path,
            reload_interval,
        })
    }

    /// Spawns the task reloading the certificate files when they change, if configured.
    pub(super) fn watch(&self, metrics: &Metrics) -> Option<JoinHandle<()>> {
        self.reload_interval.map(|every| {
            tokio::spawn(tls::watch_certificate(
                self.store.clone(),
                every,
                metrics.server.clone(),
            ))
        })
    }
}

/// Resolves once `flag` is (or turns) true, or its sender is gone.
pub(super) fn when_true(flag: &watch::Receiver<bool>) -> impl Future<Output = ()> {
    let mut flag = flag.clone();
    async move {
        let _ = flag.wait_for(|set| *set).await;
    }
}
