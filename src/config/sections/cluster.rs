//! The `[cluster]` table: relays that hold one origin subscription per topic between them
//! (docs/cluster.md), every field documented with its unit and default. The raw
//! model only: validated into a [`crate::config::ClusterSetup`], never used raw.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// `[cluster]`: peers, this relay's own peer address, and the peer link's TLS and token. Off
/// (a single relay) unless `peers` or `dns_name` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Peer addresses, `host:port` (this relay's own may be among them). Default empty.
    pub peers: Vec<String>,
    /// A name whose every A/AAAA record is a peer (a Kubernetes headless Service), with the port
    /// of `peer_listen`. Default unset.
    pub dns_name: Option<String>,
    /// Where this relay serves its peers (h2 over mutual TLS; never the public port).
    /// Required in a cluster.
    pub peer_listen: Option<SocketAddr>,
    /// This relay's own peer address as the others reach it (`ip:port`; the chart takes the pod
    /// IP). Required in a cluster.
    #[serde(rename = "self")]
    pub self_addr: Option<SocketAddr>,
    /// How often peers are resolved and probed, ms. Default 5000: an owner that dies is
    /// replaced within about this long, and probing costs one small request per peer.
    pub refresh_ms: u64,
    /// PEM CA that signs every peer's certificate; peers verify each other against it.
    /// Required in a cluster.
    pub ca_file: Option<PathBuf>,
    /// This relay's peer certificate (PEM chain), signed by `ca_file`. Required in a cluster.
    pub cert_file: Option<PathBuf>,
    /// The key of `cert_file` (PEM). Required in a cluster.
    pub key_file: Option<PathBuf>,
    /// A file holding the bearer token every peer request carries (trimmed; the same in every
    /// relay of the cluster). Required in a cluster.
    pub token_file: Option<PathBuf>,
    /// The DNS name every peer certificate carries, checked instead of the peer's address
    /// (pod IPs change; the chart's certificates name this). Default `"sse-relay-peer"`.
    pub peer_name: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            peers: Vec::new(),
            dns_name: None,
            peer_listen: None,
            self_addr: None,
            refresh_ms: 5000,
            ca_file: None,
            cert_file: None,
            key_file: None,
            token_file: None,
            peer_name: "sse-relay-peer".to_string(),
        }
    }
}
