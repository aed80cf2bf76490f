//! The composition root: builds every component from the validated [`Settings`], binds the
//! listeners, serves until a shutdown signal, and runs the drain sequence (readiness off →
//! drain delay → stop accepting and GOAWAY → end SSE streams spread over the window with a
//! `retry:` hint → wait for connections under the drain deadline).
//!
//! Tests drive this directly with their own shutdown future; `main` only adds CLI, logging and
//! signals. Nothing here decides how a request or an event is handled.

pub mod fds;
pub mod memory;
mod parts;

use std::future::Future;
use std::net::SocketAddr;

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admin::tail::TailSettings;
use crate::admin::Readiness;
use crate::config::{DrainSettings, Settings};
use crate::edge::{Edge, EdgeHandles};
use crate::hub::Hub;
use crate::server::Server;
use parts::{
    bind_all, client_configs, start_cluster, start_demo_origin, upstream, when_true,
    BoundListeners, Certificates, Ops, PeerLink, Relay,
};
pub use parts::{Metrics, StartError};

/// A relay whose listeners are bound, ready to [`App::run`].
pub struct App {
    /// The client-facing side: the edge, its server and the hub behind it.
    relay: Relay,
    /// The bound TLS, plaintext and admin listeners.
    listeners: BoundListeners,
    /// The server certificate: its store, the TLS acceptor built on it, and its reload.
    certificates: Certificates,
    /// The operator's side: the admin server, the registry, readiness and metrics.
    ops: Ops,
    /// Cluster mode: the peer listener, its TLS and its server.
    peer_link: Option<PeerLink>,
    /// The demo origin's task, when enabled.
    demo_origin: Option<JoinHandle<()>>,
    /// The drain phases.
    drain: DrainSettings,
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
        let certificates = Certificates::load(&settings.tls)?;
        let (client_tls, upstream_tls) = client_configs(&settings)?;
        let demo_origin = match settings.listeners.demo_origin {
            Some(addr) => Some(start_demo_origin(addr, &settings).await?),
            None => None,
        };
        let descriptors =
            fds::descriptors(settings.server.max_connections, settings.hub.max_topics);
        let hub = Hub::with_descriptors(settings.hub, metrics.hub.clone(), descriptors.clone());
        let cluster = match &settings.cluster {
            Some(setup) => Some(start_cluster(setup, &settings, &metrics).await?),
            None => None,
        };
        let upstream = upstream(&settings, upstream_tls, cluster.as_ref(), &metrics);
        let tail = TailSettings {
            private: settings.admin_tail_private,
            lag_policy: settings.edge.lag_policy,
        };
        let handles = EdgeHandles {
            hub: hub.clone(),
            upstream,
            client_tls,
            metrics: metrics.edge.clone(),
            downstream_metrics: metrics.downstream.clone(),
            streams: settings.stream_hub.map(|hub_settings| {
                let hub = Hub::new(hub_settings, metrics.stream_hub.clone());
                (hub, metrics.streams.clone())
            }),
            cluster: cluster.as_ref().map(|(cluster, ..)| cluster.clone()),
        };
        let edge = Edge::new(settings.edge, handles)
            .map_err(|(path, source)| StartError::AlwaysOn { path, source })?;
        if let Some(hub) = edge.stream_hub() {
            let states = crate::edge::streams::StreamStates::new(hub.clone())?;
            registry.register(Box::new(states))?;
        }
        for route in &settings.open_routes {
            warn!(%route, "auth = \"none\" on a non-loopback listener: anyone can subscribe");
        }
        let listeners = bind_all(&settings.listeners).await?;
        let admin_cluster = cluster.as_ref().map(|(cluster, ..)| cluster.clone());
        let ops = Ops::new(
            registry,
            metrics,
            (&hub, edge.stream_hub()),
            admin_cluster,
            &settings.server,
            settings.admin_token.clone(),
            tail,
        );
        let (server_settings, max_topics) = (&settings.server, settings.hub.max_topics);
        let peer_link =
            cluster.map(|cluster| PeerLink::new(cluster, &edge, server_settings, max_topics));
        let server = Server::new(edge.clone(), settings.server, ops.metrics.server.clone())
            .with_proxy_protocol(settings.proxy_protocol)
            .with_descriptors(descriptors);
        Ok(App {
            relay: Relay { server, edge, hub },
            listeners,
            certificates,
            ops,
            peer_link,
            demo_origin,
            drain: settings.drain,
        })
    }

    /// The bound TLS address (useful with port 0).
    pub fn tls_addr(&self) -> SocketAddr {
        self.listeners
            .tls
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The bound plaintext address, if configured.
    pub fn plaintext_addr(&self) -> Option<SocketAddr> {
        self.listeners
            .plaintext
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
        self.listeners
            .admin
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Where the generated dev certificate was written, if one was generated.
    pub fn dev_cert_path(&self) -> Option<&std::path::Path> {
        self.certificates.dev_cert_path.as_deref()
    }

    /// The Prometheus registry holding the relay's metrics.
    pub fn registry(&self) -> &Registry {
        &self.ops.registry
    }

    /// The relay's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.ops.metrics
    }

    /// The readiness latch (`/readyz`).
    pub fn readiness(&self) -> &Readiness {
        &self.ops.readiness
    }

    /// Serves until `shutdown` resolves, then drains: `/readyz` fails at once; serving goes on
    /// for the drain delay; then listeners stop accepting and h2 connections get GOAWAY; SSE
    /// streams end spread over the drain window, each after a `retry:` hint; connections get
    /// until the drain timeout to close. Returns when done.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let App {
            relay,
            listeners,
            certificates,
            ops,
            peer_link,
            demo_origin,
            drain,
        } = self;
        let (stop, stopped) = watch::channel(false);
        // With request streams, the peer listener serves on through the drain: viewers that
        // moved to another relay follow this relay's streams over it (see `Hub::drain_streams`).
        let (stop_peers, peers_stopped) = match relay.edge.stream_hub() {
            Some(_) => {
                let (tx, rx) = watch::channel(false);
                (Some(tx), rx)
            }
            None => (None, stopped.clone()),
        };
        let serving = serve_clients(
            &relay,
            listeners.tls,
            listeners.plaintext,
            &certificates,
            peer_link,
            (&stopped, &peers_stopped),
        );
        let admin = ops.serve(listeners.admin);
        let reload = certificates.watch(&ops.metrics);
        let trim = memory::spawn_trim();
        ops.readiness.set(true);

        shutdown.await;
        info!(delay = ?drain.delay, window = ?drain.window, "draining: readiness off");
        ops.readiness.set(false);
        ops.metrics.hub.draining.set(1);
        tokio::time::sleep(drain.delay).await;
        info!("draining: no new connections, GOAWAY, ending streams");
        let _ = stop.send(true);
        let streams = async {
            if let Some(hub) = relay.edge.stream_hub() {
                hub.drain_streams(drain.window, drain.streams_after).await;
            }
            if let Some(stop_peers) = stop_peers {
                let _ = stop_peers.send(true);
            }
        };
        tokio::join!(relay.hub.drain(drain.window), streams);
        relay.edge.close_tunnels();
        for listener in serving {
            let _ = listener.await;
        }
        let _ = ops.admin_stop.send(true);
        let _ = admin.await;
        for task in reload.into_iter().chain(demo_origin).chain(trim) {
            task.abort();
        }
        info!("drained");
    }
}

/// Spawns the tasks serving the client listeners (TLS, plaintext if bound) and the peer
/// listener (cluster mode), each until its `stopped` (the clients', the peers') turns true.
fn serve_clients(
    relay: &Relay,
    tls: TcpListener,
    plaintext: Option<TcpListener>,
    certificates: &Certificates,
    peer_link: Option<PeerLink>,
    (stopped, peers_stopped): (&watch::Receiver<bool>, &watch::Receiver<bool>),
) -> Vec<JoinHandle<()>> {
    let mut serving = Vec::new();
    let (server, acceptor, stop_tls) = (
        relay.server.clone(),
        certificates.acceptor.clone(),
        when_true(stopped),
    );
    serving.push(tokio::spawn(async move {
        server.serve(tls, Some(acceptor), stop_tls).await
    }));
    if let Some(listener) = plaintext {
        let (server, stop_plain) = (relay.server.clone(), when_true(stopped));
        serving.push(tokio::spawn(async move {
            server.serve(listener, None, stop_plain).await
        }));
    }
    if let Some(peer) = peer_link {
        let stop_peers = when_true(peers_stopped);
        serving.push(tokio::spawn(async move {
            peer.server
                .serve(peer.listener, Some(peer.tls), stop_peers)
                .await
        }));
    }
    serving
}
