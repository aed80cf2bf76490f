//! The soak's churn of topics: rounds in which thousands of distinct topics open (one
//! subscriber each, one event each), then every subscriber leaves and the relay retires them
//! all; the relay's RSS is sampled fresh, after each round and after an idle wait, so memory
//! that a load leaves behind shows (allocator retention, maps that keep their capacity).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper::body::Incoming;

use super::relay_process::metric;
use super::{h2_connect, sample, Origin};

/// Streams opened per client connection (below the relay's 256 concurrent streams).
const STREAMS_PER_CONNECTION: usize = 200;

/// What the churn measured: RSS before, after each round and after the idle wait, KiB.
pub struct ChurnReport {
    pub before: u64,
    pub rounds: Vec<u64>,
    pub idle: u64,
}

/// The relay as the churn sees it: its TLS and admin addresses, certificate and process id.
pub struct Target<'a> {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub cert: &'a Path,
    pub pid: u32,
}

/// Runs `rounds` rounds of `topics` distinct topics against `relay`, waiting `idle` after the
/// last one.
pub async fn run(
    relay: &Target<'_>,
    origin: &Origin,
    topics: usize,
    rounds: usize,
    idle: Duration,
) -> ChurnReport {
    let before = sample(relay.pid).0;
    // Topics open before the churn (the soak's own, when it ran first) stay open throughout.
    let base = open_topics(relay.admin).await.unwrap_or(0.0);
    let mut after = Vec::new();
    for round in 0..rounds {
        let names: Vec<String> = (0..topics).map(|i| format!("churn-{round}-{i}")).collect();
        let held = open_all(relay, &names).await;
        wait_for_topics(relay.admin, |open| open >= base + topics as f64).await;
        for name in &names {
            origin.publish(name);
        }
        // Time for the events to reach the rings (nothing to wait on: the bodies are not read).
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(held);
        wait_for_topics(relay.admin, |open| open <= base).await;
        after.push(sample(relay.pid).0);
    }
    tokio::time::sleep(idle).await;
    ChurnReport {
        before,
        rounds: after,
        idle: sample(relay.pid).0,
    }
}

/// Opens one stream per name, `STREAMS_PER_CONNECTION` to a connection; returns their bodies
/// (dropping them leaves the topics).
async fn open_all(relay: &Target<'_>, names: &[String]) -> Vec<Incoming> {
    let mut bodies = Vec::with_capacity(names.len());
    for chunk in names.chunks(STREAMS_PER_CONNECTION) {
        let send = h2_connect(relay.addr, relay.cert).await;
        let opening = chunk.iter().map(|name| {
            let mut send = send.clone();
            let request = Request::get(format!("https://localhost/events/{name}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            async move { send.send_request(request).await }
        });
        for response in futures_util::future::join_all(opening).await {
            bodies.push(response.expect("subscribed").into_body());
        }
    }
    bodies
}

/// Waits (bounded: two minutes) until the relay's `sse_relay_topics` meets `done`.
async fn wait_for_topics(admin: SocketAddr, done: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if open_topics(admin).await.is_some_and(&done) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("topic churn: the relay's topic count did not settle within 2 minutes");
}

/// `sse_relay_topics` from the admin listener's `/metrics`.
async fn open_topics(admin: SocketAddr) -> Option<f64> {
    metric(admin, "sse_relay_topics").await
}
