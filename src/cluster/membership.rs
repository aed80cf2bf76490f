//! Who is in the cluster: every `cluster.refresh_ms`, the static `cluster.peers` and the
//! records of `cluster.dns_name` are resolved and each peer is probed on its peer listener
//! (`GET /_peer/v1/health` with the token); the peers that answer, and this relay, are the
//! live set every owner is computed from. A peer that stops answering is gone until it answers
//! again; a draining relay answers 503 and so leaves the set before it stops.
//!
//! This module keeps the live set only; it never decides a topic's owner ([`super::rendezvous`]
//! does) and never subscribes to a topic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::link::PeerToken;
use super::metrics::ClusterMetrics;
use super::ClusterSettings;
use crate::http::HttpClient;

/// The live peers, sorted: every peer that answered its probe, and this relay when it is a
/// member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSet {
    /// Peer addresses that answered (and this relay's own when it is a member).
    pub live: Vec<SocketAddr>,
    /// Peers resolved, count (this relay included).
    pub known: usize,
    /// Whether this relay is in `live`: static peers configured, listed by `dns_name`, or no
    /// other peer answering. A relay that is not a member owns no topic.
    pub member: bool,
}

/// The path every relay answers on its peer listener while it serves.
pub const HEALTH_PATH: &str = "/_peer/v1/health";

/// What a refresh works with.
pub(super) struct Prober {
    pub settings: ClusterSettings,
    pub client: HttpClient<Empty<Bytes>>,
    pub token: PeerToken,
    pub metrics: Arc<ClusterMetrics>,
}

impl Prober {
    /// Resolves and probes once; the live set.
    ///
    /// This relay is in the set when static `cluster.peers` are configured (a static list
    /// names the whole cluster, this relay with it), when `cluster.dns_name` lists its own
    /// address, or when no other peer answers (it then serves as a single node). A relay the
    /// name does not list (a Kubernetes pod not yet ready, say) is no member: it owns no
    /// topic and reads every topic from its owner, as the members' view has it, so the views
    /// agree and the origin still sees one subscription per topic.
    pub async fn refresh(&self) -> PeerSet {
        let me = self.settings.self_addr;
        let mut candidates = self.resolve().await;
        let listed = candidates.contains(&me) || !self.settings.peers.is_empty();
        candidates.retain(|a| *a != me);
        if candidates.is_empty() {
            self.metrics.resolve_failures.inc();
        }
        let probes = candidates.iter().map(|addr| self.probe(*addr));
        let answers = futures_util::future::join_all(probes).await;
        let mut live: Vec<SocketAddr> = candidates
            .iter()
            .zip(answers)
            .filter_map(|(addr, up)| up.then_some(*addr))
            .collect();
        let member = listed || live.is_empty();
        if member {
            live.push(me);
        }
        live.sort();
        let set = PeerSet {
            known: candidates.len() + 1,
            live,
            member,
        };
        self.metrics.peers_known.set(set.known as i64);
        self.metrics.peers_up.set(set.live.len() as i64);
        set
    }

    /// Every address of the static peers and of the DNS name, deduplicated.
    async fn resolve(&self) -> Vec<SocketAddr> {
        let mut names: Vec<String> = self.settings.peers.clone();
        if let Some(dns) = &self.settings.dns_name {
            names.push(format!("{dns}:{}", self.settings.peer_port));
        }
        let mut found = Vec::new();
        for name in names {
            match tokio::net::lookup_host(name.as_str()).await {
                Ok(addrs) => found.extend(addrs),
                Err(e) => debug!(peer = %name, error = %e, "peer name did not resolve"),
            }
        }
        found.sort();
        found.dedup();
        found
    }

    /// True when the peer at `addr` answers its health path in time.
    async fn probe(&self, addr: SocketAddr) -> bool {
        let uri = format!("https://{addr}{HEALTH_PATH}");
        let Ok(request) = Request::get(uri)
            .header(http::header::AUTHORIZATION, self.token.header().clone())
            .body(Empty::new())
        else {
            return false;
        };
        let deadline = self.settings.probe_timeout();
        match tokio::time::timeout(deadline, self.client.request(request)).await {
            Ok(Ok(response)) => response.status() == StatusCode::OK,
            Ok(Err(e)) => {
                debug!(%addr, error = %crate::ops::error_chain(&e), "peer probe failed");
                false
            }
            Err(_) => false,
        }
    }
}

/// Refreshes the live set every `refresh`, publishing changes, until every receiver is gone.
pub(super) async fn run(prober: Prober, view: watch::Sender<Arc<PeerSet>>) {
    let mut ticks = tokio::time::interval(prober.settings.refresh);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if view.is_closed() {
            return;
        }
        let set = Arc::new(prober.refresh().await);
        view.send_if_modified(|current| {
            if **current == *set {
                return false;
            }
            info!(live = ?set.live, known = set.known, "cluster peer set changed");
            if set.live.len() == 1 && set.member {
                warn!("no peer answers: serving as a single node");
            }
            *current = set.clone();
            true
        });
    }
}

/// How long a probe may take: at most half the refresh, at most 2 s.
pub(super) fn probe_timeout(refresh: Duration) -> Duration {
    (refresh / 2).min(Duration::from_secs(2))
}
