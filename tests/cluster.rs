//! Cluster mode on loopback addresses (127.0.0.11–13), each relay on a runtime of its own so
//! killing one drops every task and socket it had, as a crash does: one origin subscription
//! per topic for all three (and `/topics` names the same owner on each), clients on every
//! relay get every event exactly once, in order, through the owner's death; the peer link
//! refuses a wrong token and another CA.

mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sse_relay::app::App;
use sse_relay::app::Metrics;
use sse_relay::config::Settings;
use support::{eventually, http_get, temp_dir, test_config, EventReader, H2Client, TestOrigin};

const TOKEN: &str = "peer-token-for-tests";

/// The cluster's CA, one peer certificate (SAN `sse-relay-peer`) all relays share, and the
/// token file.
struct Pki {
    files: support::pki::Pki,
    token: PathBuf,
}

fn make_pki(dir: &Path, token: &str) -> Pki {
    let files = support::pki::pki(dir, &["sse-relay-peer"]);
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    Pki {
        files,
        token: token_file,
    }
}

/// One relay of the cluster on a runtime of its own.
struct Node {
    addr: SocketAddr,
    /// Its peer address (`cluster.self`).
    me: SocketAddr,
    admin: SocketAddr,
    cert: PathBuf,
    metrics: Metrics,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Node {
    async fn start(origin: &str, me: SocketAddr, peers: &[SocketAddr], pki: &Pki) -> Node {
        Self::start_with_backoff(origin, me, peers, pki, 10, 100).await
    }

    /// A relay whose upstream reconnect delays lie in `min_ms..=max_ms` (ms).
    async fn start_with_backoff(
        origin: &str,
        me: SocketAddr,
        peers: &[SocketAddr],
        pki: &Pki,
        min_ms: u64,
        max_ms: u64,
    ) -> Node {
        Self::start_configured(origin, me, peers, pki, |config| {
            config.upstream.backoff_min_ms = min_ms;
            config.upstream.backoff_max_ms = max_ms;
        })
        .await
    }

    /// A relay of the cluster whose config `configure` changed.
    async fn start_configured(
        origin: &str,
        me: SocketAddr,
        peers: &[SocketAddr],
        pki: &Pki,
        configure: impl FnOnce(&mut sse_relay::config::Config),
    ) -> Node {
        let mut config = test_config(origin);
        support::join_static_cluster(&mut config, me, peers, &pki.files, &pki.token);
        configure(&mut config);
        let settings = Settings::try_from(config).expect("valid cluster config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let started = runtime.spawn(async move {
            let app = App::bind(settings).await.expect("relay starts");
            let (addr, cert) = (app.tls_addr(), app.dev_cert_path().unwrap().to_owned());
            let (admin, metrics) = (app.admin_addr(), app.metrics().clone());
            tokio::spawn(app.run(std::future::pending()));
            (addr, admin, cert, metrics)
        });
        let (addr, admin, cert, metrics) = started.await.expect("relay starts");
        Node {
            addr,
            me,
            admin,
            cert,
            metrics,
            runtime: Some(runtime),
        }
    }

    /// Ends the relay as a crash would: every task and socket of its runtime goes at once.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    fn owns(&self) -> bool {
        self.metrics.cluster.owned_topics.get() == 1
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three peer addresses on 127.0.0.11–13 with one port free on the first.
fn peer_addresses() -> Vec<SocketAddr> {
    let port = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 11), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    (11..=13)
        .map(|last| SocketAddr::from(([127, 0, 0, last], port)))
        .collect()
}

/// Starts three relays on `peers` with reconnect delays of `backoff_ms` (min, max; ms),
/// waiting until each sees all three.
async fn three_relays(
    origin: &TestOrigin,
    peers: &[SocketAddr],
    pki: &Pki,
    backoff_ms: (u64, u64),
) -> Vec<Node> {
    let mut nodes = Vec::new();
    for me in peers {
        let (min, max) = backoff_ms;
        nodes.push(Node::start_with_backoff(&origin.template(), *me, peers, pki, min, max).await);
    }
    eventually("every relay sees three peers", || {
        nodes.iter().all(|n| n.metrics.cluster.peers_up.get() == 3)
    })
    .await;
    nodes
}

/// One client per relay on topic `a`, once the topic has one origin subscription and one owner.
async fn a_client_on_each(origin: &TestOrigin, nodes: &[Node]) -> Vec<(H2Client, EventReader)> {
    let mut clients = Vec::new();
    for node in nodes {
        let mut conn = H2Client::connect(node.addr, &node.cert, None).await;
        let stream = conn.subscribe("/events/a", &[]).await;
        clients.push((conn, stream));
    }
    eventually("one origin subscription for three relays", || {
        origin.open("a") == 1 && nodes.iter().filter(|n| n.owns()).count() == 1
    })
    .await;
    clients
}

/// Asserts that every client but the one of relay `dead` gets the events `range` next, once
/// each, in order (each within the tests' wait).
async fn survivors_get(
    clients: &mut [(H2Client, EventReader)],
    dead: usize,
    range: std::ops::RangeInclusive<u32>,
) {
    let n = range.clone().count();
    for (i, (_, stream)) in clients.iter_mut().enumerate() {
        if i != dead {
            assert_eq!(
                stream.data(n).await,
                numbered(range.clone()),
                "relay {i}'s client: every event once, in order"
            );
        }
    }
}

fn numbered(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| format!("e{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_hold_one_origin_subscription_and_outlive_the_owner() {
    let origin = TestOrigin::start().await;
    let dir = temp_dir("cluster");
    let pki = make_pki(&dir, TOKEN);
    let peers = peer_addresses();
    let mut nodes = three_relays(&origin, &peers, &pki, (10, 100)).await;
    let mut clients = a_client_on_each(&origin, &nodes).await;
    let readers = nodes
        .iter()
        .filter(|n| n.metrics.cluster.peer_subscriptions.get() == 1)
        .count();
    assert_eq!(readers, 2, "the two others read the topic from its owner");
    let owner_addr = nodes.iter().find(|n| n.owns()).unwrap().me.to_string();
    for node in &nodes {
        let (status, body) = http_get(node.admin, "/topics").await;
        assert_eq!(status, 200);
        let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
        let cluster = &stats["cluster"];
        assert_eq!(cluster["self"], node.me.to_string(), "{body}");
        assert_eq!(cluster["member"], true);
        assert_eq!(cluster["known"], 3);
        let live: Vec<String> = peers.iter().map(SocketAddr::to_string).collect();
        assert_eq!(cluster["live"], serde_json::json!(live), "{body}");
        let topic = &stats["topics"][0];
        assert_eq!(
            topic["owner"], owner_addr,
            "every relay names the same owner"
        );
        let reads_from = if node.owns() {
            serde_json::Value::Null
        } else {
            serde_json::Value::String(owner_addr.clone())
        };
        assert_eq!(topic["source_peer"], reads_from, "{body}");
    }
    for i in 1..=5 {
        origin.publish("a", &i.to_string(), &format!("e{i}"));
    }
    for (_, stream) in &mut clients {
        assert_eq!(stream.data(5).await, numbered(1..=5));
    }

    // The owner dies; what is published meanwhile is not lost on the survivors.
    let owner = nodes.iter().position(Node::owns).unwrap();
    nodes[owner].kill();
    for i in 6..=10 {
        origin.publish("a", &i.to_string(), &format!("e{i}"));
    }
    survivors_get(&mut clients, owner, 6..=10).await;
    eventually("a survivor took the topic over, alone", || {
        origin.open("a") == 1
            && nodes
                .iter()
                .enumerate()
                .filter(|(i, n)| *i != owner && n.owns())
                .count()
                == 1
    })
    .await;
    let moves: u64 = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != owner)
        .map(|(_, n)| n.metrics.cluster.ownership_moves.get())
        .sum();
    assert!(moves >= 2, "both survivors moved their upstream ({moves})");
    for i in 11..=12 {
        origin.publish("a", &i.to_string(), &format!("e{i}"));
    }
    for (i, (_, stream)) in clients.iter_mut().enumerate() {
        if i != owner {
            assert_eq!(stream.data(2).await, numbered(11..=12), "then live");
        }
    }
}

/// A GET to a relay's peer health path with `client_tls` and `token`; the status, or the
/// error when the TLS handshake (or connection) failed.
async fn peer_health(
    peer: SocketAddr,
    client_tls: rustls::ClientConfig,
    token: &str,
) -> Result<u16, String> {
    let client = sse_relay::http::http_client(client_tls, Duration::from_secs(5));
    let request = http::Request::get(format!("https://{peer}/_peer/v1/health"))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    match client.request(request).await {
        Ok(response) => Ok(response.status().as_u16()),
        Err(e) => Err(format!("{e:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_link_refuses_a_wrong_token_and_another_ca() {
    let origin = TestOrigin::start().await;
    let dir = temp_dir("cluster-link");
    let pki = make_pki(&dir, TOKEN);
    let me = peer_addresses()[0];
    let node = Node::start(&origin.template(), me, &[me], &pki).await;
    let configs = |p: &Pki| {
        sse_relay::cluster::link::configs(
            &p.files.ca,
            &p.files.cert,
            &p.files.key,
            "sse-relay-peer",
        )
        .unwrap()
        .1
    };
    assert_eq!(peer_health(me, configs(&pki), TOKEN).await, Ok(200));
    assert_eq!(peer_health(me, configs(&pki), "wrong").await, Ok(401));
    assert_eq!(node.metrics.cluster.peer_refused.get(), 1);
    let other_dir = temp_dir("cluster-other-ca");
    let other = make_pki(&other_dir, TOKEN);
    let refused = peer_health(me, configs(&other), TOKEN).await;
    assert!(refused.is_err(), "a certificate of another CA: {refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_relay_takes_over_its_topics_without_loss() {
    let origin = TestOrigin::start().await;
    let dir = temp_dir("cluster-join");
    let pki = make_pki(&dir, TOKEN);
    let mut peers = peer_addresses();
    peers.push(SocketAddr::new([127, 0, 0, 14].into(), peers[0].port()));
    // Two topics the fourth relay will own once it is up, and two it will not.
    let owner_of = |topic: &str| {
        let key = format!("0 {}", origin.template().replace("{topic}", topic));
        *sse_relay::cluster::rendezvous::owner(&key, &peers).unwrap()
    };
    let (mut moving, mut staying) = (Vec::new(), Vec::new());
    for i in 0.. {
        let topic = format!("t{i}");
        match owner_of(&topic) == peers[3] {
            true if moving.len() < 2 => moving.push(topic),
            false if staying.len() < 2 => staying.push(topic),
            _ => {}
        }
        if moving.len() == 2 && staying.len() == 2 {
            break;
        }
    }
    let topics: Vec<String> = moving.iter().chain(&staying).cloned().collect();
    let mut nodes = Vec::new();
    for me in &peers[..3] {
        nodes.push(Node::start(&origin.template(), *me, &peers, &pki).await);
    }
    eventually("three of four peers up", || {
        nodes.iter().all(|n| n.metrics.cluster.peers_up.get() == 3)
    })
    .await;
    let (mut conns, mut streams) = (Vec::new(), Vec::new());
    for node in &nodes {
        let mut conn = H2Client::connect(node.addr, &node.cert, None).await;
        for topic in &topics {
            streams.push((
                topic.clone(),
                conn.subscribe(&format!("/events/{topic}"), &[]).await,
            ));
        }
        conns.push(conn);
    }
    eventually("one origin subscription per topic", || {
        topics.iter().all(|t| origin.open(t) == 1)
    })
    .await;
    for topic in &topics {
        for i in 1..=3 {
            origin.publish(topic, &i.to_string(), &format!("e{i}"));
        }
    }
    for (_, stream) in &mut streams {
        assert_eq!(stream.data(3).await, numbered(1..=3));
    }

    // The fourth relay comes up; events go on meanwhile.
    nodes.push(Node::start(&origin.template(), peers[3], &peers, &pki).await);
    for topic in &topics {
        for i in 4..=6 {
            origin.publish(topic, &i.to_string(), &format!("e{i}"));
        }
    }
    for (topic, stream) in &mut streams {
        assert_eq!(
            stream.data(3).await,
            numbered(4..=6),
            "{topic}: no loss, no duplicate"
        );
    }
    eventually(
        "the newcomer owns its two topics, one origin stream each",
        || {
            nodes[3].metrics.cluster.owned_topics.get() == 2
                && topics.iter().all(|t| origin.open(t) == 1)
        },
    )
    .await;
    for topic in &topics {
        origin.publish(topic, "7", "e7");
    }
    for (topic, stream) in &mut streams {
        assert_eq!(stream.data(1).await, ["e7"], "{topic}: then live");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_does_not_wait_out_the_backoff_the_dead_owner_earned() {
    // Reconnect delays of ten minutes, at least: the survivors' links to the dead owner break
    // at once, but the view drops it only at the next probe (200 ms). Their backoff belongs to
    // the dead owner; the new source is tried as soon as the view changes, so the survivors'
    // clients get what is published next within the tests' wait (20 s), not after ten minutes.
    const TEN_MINUTES_MS: u64 = 600_000;
    let origin = TestOrigin::start().await;
    let dir = temp_dir("cluster-backoff");
    let pki = make_pki(&dir, TOKEN);
    let peers = peer_addresses();
    let backoff = (TEN_MINUTES_MS, TEN_MINUTES_MS);
    let mut nodes = three_relays(&origin, &peers, &pki, backoff).await;
    let mut clients = a_client_on_each(&origin, &nodes).await;
    origin.publish("a", "1", "e1");
    for (_, stream) in &mut clients {
        assert_eq!(stream.data(1).await, numbered(1..=1));
    }
    let owner = nodes.iter().position(Node::owns).unwrap();
    nodes[owner].kill();
    origin.publish("a", "2", "e2");
    survivors_get(&mut clients, owner, 2..=2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_of_every_relay_get_the_origins_retry() {
    let origin = TestOrigin::start().await;
    origin.start_streams_with("a", "retry: 3000\n\n");
    let dir = temp_dir("cluster-retry");
    let pki = make_pki(&dir, TOKEN);
    let peers = peer_addresses();
    let nodes = three_relays(&origin, &peers, &pki, (10, 100)).await;
    let mut clients = a_client_on_each(&origin, &nodes).await;
    for (_, stream) in &mut clients {
        stream.until_raw_contains("retry: 3000\n\n").await;
    }
    // Browsers joining later start with the origin's value, on the owner and on the relays
    // that read the topic from it (the owner's stream to them starts with it).
    let opening = ": sse-relay\n\nretry: 3000\n\n";
    for (conn, _) in &mut clients {
        let mut later = conn.subscribe("/events/a", &[]).await;
        assert_eq!(later.first_bytes(opening.len()).await, opening);
    }
    origin.publish_raw("a", None, bytes::Bytes::from_static(b"retry: 5000\n\n"));
    origin.publish("a", "1", "e1");
    for (_, stream) in &mut clients {
        assert_eq!(stream.data(1).await, numbered(1..=1));
        let raw = String::from_utf8_lossy(&stream.raw);
        assert!(
            raw.ends_with("retry: 5000\n\nid: 1\ndata: e1\n\n"),
            "{raw:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_origin_retry_each_relay_sends_its_own_hint_not_the_owners() {
    // Each relay has a hint of its own (2001, 2002, 2003 ms); the origin sets none. The
    // owner's stream to the other relays carries no hint of its, so each relay's browsers
    // get that relay's own, at the start and after the owner dies and the topic moves.
    let origin = TestOrigin::start().await;
    let dir = temp_dir("cluster-hint");
    let pki = make_pki(&dir, TOKEN);
    let peers = peer_addresses();
    let mut nodes = Vec::new();
    for (i, me) in peers.iter().enumerate() {
        let hint = 2001 + i as u64;
        nodes.push(
            Node::start_configured(&origin.template(), *me, &peers, &pki, |c| {
                c.upstream.backoff_min_ms = 10;
                c.upstream.backoff_max_ms = 100;
                c.downstream.retry_hint_ms = hint;
            })
            .await,
        );
    }
    eventually("every relay sees three peers", || {
        nodes.iter().all(|n| n.metrics.cluster.peers_up.get() == 3)
    })
    .await;
    let mut clients = a_client_on_each(&origin, &nodes).await;
    origin.publish("a", "1", "e1");
    for (_, stream) in &mut clients {
        assert_eq!(stream.data(1).await, numbered(1..=1));
    }
    for (i, (conn, _)) in clients.iter_mut().enumerate() {
        let opening = format!(": sse-relay\n\nretry: {}\n\n", 2001 + i);
        let mut later = conn.subscribe("/events/a", &[]).await;
        assert_eq!(later.first_bytes(opening.len()).await, opening, "relay {i}");
        origin.publish("a", &format!("{}", i + 2), &format!("e{}", i + 2));
        assert_eq!(later.data(1).await, [format!("e{}", i + 2)]);
        let raw = String::from_utf8_lossy(&later.raw);
        assert_eq!(
            raw.matches("retry:").count(),
            1,
            "only its own hint: {raw:?}"
        );
    }
    let owner = nodes.iter().position(Node::owns).unwrap();
    nodes[owner].kill();
    origin.publish("a", "9", "e9");
    for (i, (_, stream)) in clients.iter_mut().enumerate() {
        if i != owner {
            assert_eq!(stream.data(3).await, numbered(2..=4));
            assert_eq!(stream.data(1).await, ["e9"]);
            let raw = String::from_utf8_lossy(&stream.raw);
            assert_eq!(raw.matches("retry:").count(), 1, "relay {i}: {raw:?}");
        }
    }
}
