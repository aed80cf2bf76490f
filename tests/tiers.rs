//! Relay tiers: an edge relay whose route's upstream is a regional relay's public route, which
//! follows the origin. Event ids pass both hops unchanged, the edge's clients ride out the
//! regional relay's restart (the edge resumes from it by `Last-Event-ID`, the regional from the
//! origin), and relays whose routes lead back to each other are stopped by the hop list.

mod support;

use std::net::{Ipv4Addr, SocketAddr};

use sse_relay::config::Config;
use support::pki::{pki, Pki};
use support::{eventually, free_port, temp_dir, TestOrigin, TestRelay};

fn fast_reconnect(c: &mut Config) {
    c.upstream.backoff_min_ms = 10;
    c.upstream.backoff_max_ms = 50;
    c.downstream.heartbeat_interval_ms = 600_000;
}

/// A regional relay on `addr` (a fixed port, so a restart listens where the edge dials),
/// serving the certificate of `pki` for `localhost`.
async fn regional(origin: &TestOrigin, addr: SocketAddr, pki: &Pki) -> TestRelay {
    TestRelay::start(origin, |c| {
        fast_reconnect(c);
        c.server.listen = addr;
        c.server.dev_cert_dir = None;
        c.server.tls_cert = Some(pki.cert.clone());
        c.server.tls_key = Some(pki.key.clone());
    })
    .await
}

/// An origin, a regional relay in front of it on a fixed port (its certificate from `pki`),
/// and an edge relay whose route's upstream is the regional relay's public route.
struct Chain {
    origin: TestOrigin,
    pki: Pki,
    addr: SocketAddr,
    regional: TestRelay,
    edge: TestRelay,
}

async fn chain(name: &str) -> Chain {
    let origin = TestOrigin::start().await;
    let pki = pki(&temp_dir(name), &["localhost"]);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let regional = regional(&origin, addr, &pki).await;
    let upstream = format!("https://localhost:{}/events/{{topic}}", addr.port());
    let edge = TestRelay::start_with(&upstream, |c| {
        fast_reconnect(c);
        c.upstream.extra_ca_file = Some(pki.ca.clone());
    })
    .await;
    Chain {
        origin,
        pki,
        addr,
        regional,
        edge,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_pass_two_hops_and_the_edge_resumes_across_a_regional_restart() {
    let Chain {
        origin,
        pki,
        addr,
        regional: regional_relay,
        edge,
    } = chain("tiers").await;
    let mut conn = edge.h2().await;
    let mut client = conn.subscribe("/events/a", &[]).await;
    eventually("the chain reached the origin", || origin.open("a") == 1).await;
    for i in 1..=3 {
        origin.publish("a", &format!("id-{i}"), &format!("e{i}"));
    }
    for i in 1..=3 {
        let event = client.next_event().await.unwrap();
        assert_eq!(
            event.id.as_deref(),
            Some(format!("id-{i}").as_str()),
            "ids unchanged"
        );
        assert_eq!(event.data.as_deref(), Some(format!("e{i}").as_str()));
    }
    let hops = origin.requests("a")[0].headers["sse-relay-hops"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        hops.split(", ").count(),
        2,
        "the origin sees two relays listed: {hops}"
    );

    // The regional relay restarts; the origin publishes meanwhile.
    regional_relay.stop().await;
    origin.publish("a", "id-4", "e4");
    let regional_relay = regional(&origin, addr, &pki).await;
    origin.publish("a", "id-5", "e5");
    assert_eq!(
        client.data(2).await,
        ["e4", "e5"],
        "the edge's client lost nothing"
    );
    let last = origin.requests("a").last().unwrap().last_event_id.clone();
    assert_eq!(
        last.as_deref(),
        Some("id-3"),
        "the new regional resumed the origin"
    );
    // A client that reconnects to the edge by Last-Event-ID resumes there.
    let mut resumed = conn
        .subscribe("/events/a", &[("last-event-id", "id-2")])
        .await;
    assert_eq!(resumed.data(3).await, ["e3", "e4", "e5"]);
    regional_relay.stop().await;
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_whose_routes_lead_back_to_each_other_are_stopped_and_counted() {
    let dir = temp_dir("tiers-loop");
    let pki = pki(&dir, &["localhost"]);
    let (a_addr, b_addr) = (
        SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
        SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
    );
    let relay_on = |addr: SocketAddr, upstream: SocketAddr| {
        let pki = &pki;
        let upstream = format!("https://localhost:{}/events/{{topic}}", upstream.port());
        async move {
            TestRelay::start_with(&upstream, |c| {
                fast_reconnect(c);
                c.server.listen = addr;
                c.server.dev_cert_dir = None;
                c.server.tls_cert = Some(pki.cert.clone());
                c.server.tls_key = Some(pki.key.clone());
                c.upstream.extra_ca_file = Some(pki.ca.clone());
            })
            .await
        }
    };
    let a = relay_on(a_addr, b_addr).await;
    let b = relay_on(b_addr, a_addr).await;
    let mut conn = support::H2Client::connect(a.addr, &pki.ca, None).await;
    let response = conn.get("/events/loop", &[]).await;
    assert_eq!(
        response.status(),
        508,
        "A → B → A is a loop: A finds itself listed and says so"
    );
    let hop_limit = |relay: &TestRelay| {
        relay
            .metrics
            .edge
            .rejected
            .get(sse_relay::edge::RejectReason::HopLimit)
            .get()
    };
    assert_eq!(hop_limit(&a) + hop_limit(&b), 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_own_relay_list_cannot_shut_a_shared_topic() {
    let Chain {
        origin,
        regional: regional_relay,
        edge,
        ..
    } = chain("tiers-poison").await;
    let mut conn = edge.h2().await;
    // Seven made-up relays: the edge accepts it (under 8), the regional then sees eight.
    let forged = "a1, a2, a3, a4, a5, a6, a7";
    let refused = conn.get("/events/a", &[("sse-relay-hops", forged)]).await;
    assert_eq!(
        refused.status(),
        508,
        "the forged chain is refused further on"
    );
    let mut client = conn.subscribe("/events/a", &[]).await;
    eventually("the shared topic reached the origin", || {
        origin.open("a") == 1
    })
    .await;
    origin.publish("a", "1", "e1");
    assert_eq!(
        client.data(1).await,
        ["e1"],
        "the shared topic is not refused"
    );
    regional_relay.stop().await;
    edge.stop().await;
}
