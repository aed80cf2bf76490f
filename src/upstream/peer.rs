//! A topic's upstream in a cluster: where its next attempt goes ([`Source`]: the origin or the
//! owning peer, see [`Cluster::source`]), the peer's subscribe URL, the gauges of topics read
//! either way, and the watch that ends an attempt once its source is no longer right (the
//! owner changed, or other relays started reading the topic from here).
//!
//! It only reads the cluster's view; it never changes membership or ownership.

use std::net::SocketAddr;

use bytes::Bytes;
use http::Uri;
use http_body_util::Empty;

use super::UpstreamHeaders;
use crate::cluster::{Cluster, Source, SUBSCRIBE_PATH};
use crate::http::HttpClient;
use crate::hub::Topic;

/// The route of an attempt that reads from the owning peer: where it goes, with what.
pub(super) struct PeerRoute<'a> {
    /// The owner's peer address.
    pub addr: SocketAddr,
    /// Its subscribe URL for the topic.
    pub uri: Uri,
    /// The cluster token.
    pub headers: &'a UpstreamHeaders,
    /// The peer link's client.
    pub client: &'a HttpClient<Empty<Bytes>>,
}

/// The peer `topic`'s next attempt reads from, sending `token`; `None` for the origin (also
/// when the key is too long for a peer URL: the token never goes anywhere but a peer).
pub(super) fn peer_route<'a>(
    cluster: &'a Cluster,
    token: &'a UpstreamHeaders,
    topic: &Topic,
) -> Option<PeerRoute<'a>> {
    let Source::Peer(addr) = source_of(cluster, topic) else {
        return None;
    };
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("key", topic.key())
        .append_pair("label", topic.label())
        .finish();
    let uri = format!("https://{addr}{SUBSCRIBE_PATH}?{query}")
        .parse()
        .ok()?;
    Some(PeerRoute {
        addr,
        uri,
        headers: token,
        client: cluster.client(),
    })
}

/// The source of `topic`'s next attempt, with this relay's view now.
pub(super) fn source_of(cluster: &Cluster, topic: &Topic) -> Source {
    let serving_peers = *topic.peer_subscribers().borrow() > 0;
    cluster.source(topic.key(), serving_peers)
}

/// Resolves once `topic`'s source in this relay's view is no longer `expected` (at once if it
/// is not now).
pub(super) async fn source_changes(cluster: &Cluster, topic: &Topic, expected: Source) {
    let mut view = cluster.view();
    let mut peers = topic.peer_subscribers();
    if source_of(cluster, topic) != expected {
        return;
    }
    loop {
        tokio::select! {
            changed = view.changed() => if changed.is_err() { std::future::pending::<()>().await },
            changed = peers.changed() => if changed.is_err() { std::future::pending::<()>().await },
        }
        if source_of(cluster, topic) != expected {
            return;
        }
    }
}

/// Counts a topic in `sse_relay_cluster_owned_topics` or `_peer_subscriptions` while an
/// attempt reads it from that source.
pub(super) struct SourceGauge(prometheus::IntGauge);

impl SourceGauge {
    /// Counts the topic under `source`'s gauge until dropped.
    pub fn new(cluster: &Cluster, source: Source) -> Self {
        let metrics = cluster.metrics();
        let gauge = match source {
            Source::Origin => metrics.owned_topics.clone(),
            Source::Peer(_) => metrics.peer_subscriptions.clone(),
        };
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for SourceGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}
