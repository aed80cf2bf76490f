//! The cluster's relays for the cluster benchmark: three sse-relay processes on 127.0.0.11–13
//! with each other as static peers (a CA, one peer certificate and a token made for the run),
//! and what they say about themselves: which relay reads each topic from the origin (`/topics`)
//! and their `sse_relay_cluster_*` / `sse_relay_upstream_*` samples. It only starts relays;
//! killing one is the takeover's business.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::client;
use crate::procs::{free_port_on, http_get, Relay};
use crate::scenarios::{metric, Bench, Values};

/// The cluster's loopback addresses, one relay each.
pub const RELAY_IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 11),
    Ipv4Addr::new(127, 0, 0, 12),
    Ipv4Addr::new(127, 0, 0, 13),
];

/// The DNS name the peer certificate carries (`cluster.peer_name`'s default).
const PEER_NAME: &str = "sse-relay-peer";

/// Makes the cluster's CA, peer certificate and token in `dir`, starts a relay on each of
/// [`RELAY_IPS`] with the others as static peers, and waits until each sees all three.
pub async fn start_cluster(
    bench: &Bench,
    dir: &Path,
    origin_port: u16,
    refresh_ms: u64,
) -> Result<Vec<Relay>> {
    std::fs::create_dir_all(dir)?;
    let pki = crate::pki::pki(dir, &[PEER_NAME]);
    let token = dir.join("token");
    std::fs::write(&token, format!("bench-token-{}\n", client::now_ns()))?;
    let peers = RELAY_IPS
        .iter()
        .map(|&ip| Ok(SocketAddr::from((ip, free_port_on(ip)?))))
        .collect::<Result<Vec<_>>>()?;
    let list: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    let mut relays = Vec::new();
    for me in &peers {
        let section = format!(
            "\n[cluster]\npeers = [{}]\npeer_listen = \"{me}\"\nself = \"{me}\"\n\
             refresh_ms = {refresh_ms}\nca_file = \"{}\"\ncert_file = \"{}\"\n\
             key_file = \"{}\"\ntoken_file = \"{}\"\npeer_name = \"{PEER_NAME}\"\n",
            list.join(", "),
            pki.ca.display(),
            pki.cert.display(),
            pki.key.display(),
            token.display()
        );
        let Some(ip) = peer_ip(*me) else {
            bail!("{me} is not IPv4")
        };
        let relay_dir = dir.join(format!("relay-{ip}"));
        let relay = Relay::start_on(
            &relay_dir,
            &bench.relay_bin,
            &bench.cert,
            origin_port,
            &[],
            ip,
            &section,
        )?;
        relays.push(relay);
    }
    wait_peers_up(
        &mut relays,
        Duration::from_millis(refresh_ms * 3) + Duration::from_secs(10),
    )
    .await?;
    Ok(relays)
}

fn peer_ip(addr: SocketAddr) -> Option<Ipv4Addr> {
    match addr {
        SocketAddr::V4(a) => Some(*a.ip()),
        SocketAddr::V6(_) => None,
    }
}

/// Waits until every relay counts all three peers up (`sse_relay_cluster_peers_up`).
async fn wait_peers_up(relays: &mut [Relay], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut up = Vec::new();
        for relay in relays.iter_mut() {
            relay.child.check_running()?;
            let text = http_get(relay.admin_addr(), "/metrics")?;
            up.push(metric(&text, "sse_relay_cluster_peers_up").unwrap_or(0.0));
        }
        if up.iter().all(|&n| n == RELAY_IPS.len() as f64) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the relays count {up:?} peers up after {timeout:?}, expected 3 each");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// For each channel, the relay that reads it from the origin: the one whose `/topics` shows
/// no `source_peer` for it. Fails unless every channel has exactly one.
pub fn owners(relays: &[Relay], channels: &[String]) -> Result<Vec<usize>> {
    let mut owners = vec![Vec::new(); channels.len()];
    for (r, relay) in relays.iter().enumerate() {
        let text = http_get(relay.admin_addr(), "/topics")?;
        let stats: serde_json::Value = serde_json::from_str(&text).context("/topics JSON")?;
        for topic in stats["topics"].as_array().context("no topics in /topics")? {
            let label = topic["label"].as_str().unwrap_or("");
            let Some(t) = channels
                .iter()
                .position(|c| label == format!("/events/{c}"))
            else {
                continue;
            };
            if topic["source_peer"].is_null() {
                owners[t].push(r);
            }
        }
    }
    owners
        .iter()
        .zip(channels)
        .map(|(o, channel)| match o.as_slice() {
            [one] => Ok(*one),
            _ => bail!("{channel}: relays {o:?} read it from the origin, expected exactly one"),
        })
        .collect()
}

/// Records every relay's `sse_relay_cluster_*` and `sse_relay_upstream_*` samples as
/// `metrics.<when>.<ip>.<sample>`.
pub fn put_metrics<'a>(
    v: &mut Values,
    when: &str,
    relays: impl IntoIterator<Item = &'a Relay>,
) -> Result<()> {
    for relay in relays {
        let text = http_get(relay.admin_addr(), "/metrics")?;
        for line in text
            .lines()
            .filter(|l| l.starts_with("sse_relay_cluster_") || l.starts_with("sse_relay_upstream_"))
        {
            if let Some((name, value)) = line.rsplit_once(' ') {
                if let Ok(value) = value.parse::<f64>() {
                    v.insert(format!("metrics.{when}.{}.{name}", relay.ip), value);
                }
            }
        }
    }
    Ok(())
}
