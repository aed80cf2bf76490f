//! `[cluster]`, validated into a [`ClusterSetup`]: on only when `peers` or `dns_name` is set;
//! then the peer listener, this relay's own address, the CA, certificate, key and token files
//! are all required (a half-configured cluster would either refuse its peers or hand them
//! topics it cannot serve), and the companions are refused without peers (set alone, they
//! would silently do nothing).
//!
//! It checks that files exist but never reads them, nor resolves a peer (the cluster does, at
//! start).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::issue::{file_exists, ms, positive, ConfigIssue};
use super::ClusterConfig;
use crate::cluster::ClusterSettings;

/// Cluster mode's validated settings and the files of its peer link.
#[derive(Debug, Clone)]
pub struct ClusterSetup {
    /// Membership and ownership.
    pub settings: ClusterSettings,
    /// Where peers are served.
    pub listen: SocketAddr,
    /// The cluster CA (PEM).
    pub ca_file: PathBuf,
    /// This relay's peer certificate (PEM chain).
    pub cert_file: PathBuf,
    /// Its key (PEM).
    pub key_file: PathBuf,
    /// The bearer token's file.
    pub token_file: PathBuf,
    /// The DNS name every peer certificate carries.
    pub peer_name: String,
}

/// The cluster settings of `c` (`None`: a single relay).
///
/// # Errors
/// A [`ConfigIssue`] naming the `cluster.*` key that is missing, names a missing file, or is
/// set without `cluster.peers` / `cluster.dns_name`.
pub(super) fn setup(c: &ClusterConfig) -> Result<Option<ClusterSetup>, ConfigIssue> {
    let enabled = !c.peers.is_empty() || c.dns_name.is_some();
    if !enabled {
        let stray = [
            ("cluster.peer_listen", c.peer_listen.is_some()),
            ("cluster.self", c.self_addr.is_some()),
            ("cluster.token_file", c.token_file.is_some()),
        ];
        if let Some(&(key, _)) = stray.iter().find(|(_, set)| *set) {
            return Err(ConfigIssue::new(
                key,
                "set, but neither cluster.peers nor cluster.dns_name is",
            ));
        }
        return Ok(None);
    }
    positive("cluster.refresh_ms", c.refresh_ms)?;
    if c.peer_name.trim().is_empty() {
        return Err(ConfigIssue::new("cluster.peer_name", "must not be empty"));
    }
    for (i, peer) in c.peers.iter().enumerate() {
        if peer
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err(ConfigIssue::new(
                format!("cluster.peers[{i}]"),
                format!("{peer:?} is not host:port"),
            ));
        }
    }
    let listen = required("cluster.peer_listen", c.peer_listen)?;
    let self_addr = required("cluster.self", c.self_addr)?;
    if self_addr.ip().is_unspecified() || self_addr.port() == 0 {
        return Err(ConfigIssue::new(
            "cluster.self",
            format!("{self_addr} is not an address peers can dial (the chart sets the pod IP)"),
        ));
    }
    Ok(Some(ClusterSetup {
        settings: ClusterSettings {
            self_addr,
            peers: c.peers.clone(),
            dns_name: c.dns_name.clone(),
            peer_port: listen.port(),
            refresh: ms(c.refresh_ms),
        },
        listen,
        ca_file: required_file("cluster.ca_file", c.ca_file.as_deref())?,
        cert_file: required_file("cluster.cert_file", c.cert_file.as_deref())?,
        key_file: required_file("cluster.key_file", c.key_file.as_deref())?,
        token_file: required_file("cluster.token_file", c.token_file.as_deref())?,
        peer_name: c.peer_name.trim().to_string(),
    }))
}

/// `value`, which a cluster must have.
fn required<T>(key: &str, value: Option<T>) -> Result<T, ConfigIssue> {
    value.ok_or_else(|| ConfigIssue::new(key, "required in a cluster (peers or dns_name set)"))
}

/// `path`, which a cluster must have, and which must exist.
fn required_file(key: &str, path: Option<&Path>) -> Result<PathBuf, ConfigIssue> {
    let path = required(key, path)?;
    file_exists(key, Some(path))?;
    Ok(path.to_owned())
}
