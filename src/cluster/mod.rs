//! Cluster mode: relays that hold one origin subscription per topic between them. Each topic
//! has one owner among the live peers ([`rendezvous`] hashing of its key over the set that
//! [`membership`] keeps); the owner reads the origin as a single relay does, every other relay
//! reads the topic from the owner over the peer link (h2 over mutual TLS with a bearer token,
//! [`link`]), so a browser may connect to any relay while the origin serves one stream per
//! topic. Event ids pass through unchanged, so resumes work on any relay, and when the owner
//! changes each relay moves its upstream resuming with the last id it holds.
//!
//! This module owns membership and ownership; the upstream asks it where a topic's next
//! attempt goes, and the edge serves the peer listener.

pub mod link;
pub mod membership;
mod metrics;
pub mod rendezvous;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use tokio::sync::watch;

pub use link::PeerToken;
pub use membership::{PeerSet, HEALTH_PATH};
pub use metrics::ClusterMetrics;

use crate::http::HttpClient;

/// The path a relay subscribes to a topic on its owner with: `?key=<topic key>&label=<path>`.
pub const SUBSCRIBE_PATH: &str = "/_peer/v1/subscribe";

/// The path a relay follows (GET) or cancels (DELETE) a request stream another relay holds
/// with: `?key=<stream id>&scope=<scope>` (docs/request-streams.md, "Any relay").
pub const STREAM_PATH: &str = "/_peer/v1/stream";

/// Cluster settings, validated (see `[cluster]` in the config).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// This relay's peer address as the others dial it.
    pub self_addr: SocketAddr,
    /// Static peers, `host:port`.
    pub peers: Vec<String>,
    /// A name whose A/AAAA records are peers, with `peer_port`.
    pub dns_name: Option<String>,
    /// The port of the peer listener (for `dns_name`'s records).
    pub peer_port: u16,
    /// How often peers are resolved and probed.
    pub refresh: Duration,
}

impl ClusterSettings {
    /// How long one probe may take (at most half the refresh, at most 2 s).
    pub fn probe_timeout(&self) -> Duration {
        membership::probe_timeout(self.refresh)
    }
}

/// Where a topic's upstream reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The origin: no cluster, this relay owns the topic, or other relays read it from here.
    Origin,
    /// The topic's owner, another relay, at this peer address.
    Peer(SocketAddr),
}

/// This relay's view of the cluster (cheap to clone).
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    self_addr: SocketAddr,
    view: watch::Receiver<Arc<PeerSet>>,
    client: HttpClient<Empty<Bytes>>,
    token: PeerToken,
    metrics: Arc<ClusterMetrics>,
}

impl Cluster {
    /// Resolves and probes the peers once (so the first topics already go to their owners),
    /// then keeps refreshing in the background for as long as this handle or a clone lives.
    /// `client` dials peers with the link's TLS for subscriptions, `probes` for health probes.
    pub async fn start(
        settings: ClusterSettings,
        client: HttpClient<Empty<Bytes>>,
        probes: HttpClient<Empty<Bytes>>,
        token: PeerToken,
        metrics: Arc<ClusterMetrics>,
    ) -> Self {
        let self_addr = settings.self_addr;
        let prober = membership::Prober {
            settings,
            client: probes,
            token: token.clone(),
            metrics: metrics.clone(),
        };
        let first = prober.refresh().await;
        tracing::info!(live = ?first.live, known = first.known, "cluster peers");
        let (tx, view) = watch::channel(Arc::new(first));
        tokio::spawn(membership::run(prober, tx));
        Self {
            inner: Arc::new(Inner {
                self_addr,
                view,
                client,
                token,
                metrics,
            }),
        }
    }

    /// This relay's own peer address (`cluster.self`).
    pub fn self_addr(&self) -> SocketAddr {
        self.inner.self_addr
    }

    /// The live peers now.
    pub fn peers(&self) -> Arc<PeerSet> {
        self.inner.view.borrow().clone()
    }

    /// Watches the live peer set.
    pub fn view(&self) -> watch::Receiver<Arc<PeerSet>> {
        self.inner.view.clone()
    }

    /// The owner of topic `key` in the current view.
    pub fn owner(&self, key: &str) -> SocketAddr {
        let peers = self.peers();
        rendezvous::owner(key, &peers.live)
            .copied()
            .unwrap_or(self.inner.self_addr)
    }

    /// Where a topic's upstream reads from: its owner, unless that is this relay or other
    /// relays read the topic from here (`serving_peers`), then the origin.
    pub fn source(&self, key: &str, serving_peers: bool) -> Source {
        let owner = self.owner(key);
        if owner == self.inner.self_addr || serving_peers {
            Source::Origin
        } else {
            Source::Peer(owner)
        }
    }

    /// The client that dials peers.
    pub fn client(&self) -> &HttpClient<Empty<Bytes>> {
        &self.inner.client
    }

    /// The token peer requests carry.
    pub fn token(&self) -> &PeerToken {
        &self.inner.token
    }

    /// The cluster's metrics.
    pub fn metrics(&self) -> &Arc<ClusterMetrics> {
        &self.inner.metrics
    }
}
