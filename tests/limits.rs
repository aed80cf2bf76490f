//! Limits for hostile or careless clients: silent TCP and TLS connections are closed, idle
//! connections too, a connection's stream lifetime is capped with GOAWAY, connections per IP
//! are capped, past the buffer budget new subscribers are shed with a retry stream, and one
//! client cannot open more than its budget of topics.

mod support;

use std::sync::Arc;

use rustls::pki_types::ServerName;
use sse_relay::config::Config;
use sse_relay::hub::TopicRefusal;
use sse_relay::server::Cap;
use sse_relay::server::CloseCause;
use support::raw::until_closed;
use support::{eventually, H2Client, TestOrigin, TestRelay};
use tokio::net::TcpStream;

/// Tight limits, so the watchdogs act within the test.
fn tight(c: &mut Config) {
    let l = &mut c.limits;
    l.tls_handshake_timeout_ms = 300;
    l.first_request_timeout_ms = 300;
    l.idle_connection_timeout_ms = 300;
    l.max_streams_per_connection_lifetime = 3;
    l.max_connections_per_ip = 4;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tcp_and_tls_connections_are_closed() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, tight).await;
    // TCP only, no ClientHello.
    until_closed(TcpStream::connect(relay.addr).await.unwrap()).await;
    eventually("handshake timeout counted", || {
        relay.metrics.server.tls_handshake_failures.get() == 1
    })
    .await;
    // TLS done, but never the h2 preface.
    let mut roots = rustls::RootCertStore::empty();
    for c in sse_relay::server::tls::read_certs(&relay.cert).unwrap() {
        roots.add(c).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(relay.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    until_closed(tls).await;
    eventually("first-request timeout counted", || {
        relay
            .metrics
            .server
            .connections_closed
            .get(CloseCause::FirstRequestTimeout)
            .get()
            == 1
    })
    .await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed_but_one_with_a_stream_is_kept() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, tight).await;
    // The busy connection has had its stream since before the idle one existed: had the idle
    // timeout applied to it, it would have been closed first.
    let mut busy = relay.h2().await;
    let mut stream = busy.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    let mut idle = relay.h2().await;
    let response = idle.request(http::Method::GET, "/nowhere", &[]).await;
    assert_eq!(response.status(), 404);
    drop(response);
    eventually("idle connection closed", || idle.is_closed()).await;
    assert_eq!(
        relay
            .metrics
            .server
            .connections_closed
            .get(CloseCause::Idle)
            .get(),
        1
    );
    origin.publish("a", "1", "still open");
    assert_eq!(
        stream.data(1).await,
        ["still open"],
        "a connection with a stream stays"
    );
    assert_eq!(
        relay
            .metrics
            .server
            .connections_closed
            .get(CloseCause::Idle)
            .get(),
        1
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_lifetime_cap_sends_goaway() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, tight).await;
    let mut conn = relay.h2().await;
    for _ in 0..3 {
        assert_eq!(
            conn.request(http::Method::GET, "/x", &[]).await.status(),
            404
        );
    }
    eventually("GOAWAY after the lifetime cap", || {
        relay
            .metrics
            .server
            .connections_closed
            .get(CloseCause::StreamLifetime)
            .get()
            == 1
    })
    .await;
    // A fresh connection works.
    let mut fresh = relay.h2().await;
    assert_eq!(
        fresh.request(http::Method::GET, "/x", &[]).await.status(),
        404
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_ip_are_capped() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, tight).await;
    let mut kept = Vec::new();
    for _ in 0..4 {
        let mut c = relay.h2().await;
        kept.push(c.subscribe("/events/a", &[]).await);
    }
    let refused = TcpStream::connect(relay.addr).await.unwrap();
    until_closed(refused).await;
    assert_eq!(
        relay
            .metrics
            .server
            .connections_refused
            .get(Cap::PerIp)
            .get(),
        1
    );
    drop(kept);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_buffer_budget_new_subscribers_get_a_retry_stream() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| c.limits.max_buffered_bytes = 4096).await;
    let mut conn = relay.h2().await;
    let mut first = conn.subscribe("/events/a", &[]).await;
    eventually("subscribed", || origin.open("a") == 1).await;
    for i in 1..=10 {
        origin.publish("a", &i.to_string(), &"x".repeat(1000));
    }
    first.data(10).await;
    let mut shed = conn.subscribe("/events/b", &[]).await;
    assert_eq!(shed.status, 200, "never a non-200 for an EventSource");
    shed.until_end().await;
    assert!(String::from_utf8_lossy(&shed.raw).ends_with("retry: 2000\n\n"));
    assert_eq!(relay.metrics.hub.subscribers_shed.get(), 1);
    assert_eq!(
        origin.requests("b").len(),
        0,
        "no upstream work for a shed subscriber"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_takes_its_topic_budget_and_another_still_opens_topics() {
    let origin = TestOrigin::start().await;
    // A budget of half the topic cap (the default share): 2 of 4.
    let relay = TestRelay::start(&origin, |c| c.limits.max_topics = 4).await;
    let mut greedy = relay.h2().await;
    let mut held = Vec::new();
    for topic in ["a", "b"] {
        held.push(greedy.subscribe(&format!("/events/{topic}"), &[]).await);
        eventually("subscribed", || origin.open(topic) == 1).await;
    }
    let mut shed = greedy.subscribe("/events/c", &[]).await;
    assert_eq!(shed.status, 200, "never a non-200 for an EventSource");
    shed.until_end().await;
    assert!(String::from_utf8_lossy(&shed.raw).ends_with("retry: 2000\n\n"));
    let refused = &relay.metrics.hub.topics_refused;
    assert_eq!(refused.get(TopicRefusal::ClientBudget).get(), 1);
    assert_eq!(origin.requests("c").len(), 0, "no upstream work for it");
    let mut joined = greedy.subscribe("/events/a", &[]).await;
    let from = std::net::IpAddr::from([127, 0, 0, 2]);
    let mut other = H2Client::connect_from(relay.addr, from, &relay.cert).await;
    let mut fresh = other.subscribe("/events/c", &[]).await;
    eventually("another address opened c", || origin.open("c") == 1).await;
    origin.publish("c", "1", "for the other client");
    assert_eq!(fresh.data(1).await, ["for the other client"]);
    origin.publish("a", "1", "still flowing");
    assert_eq!(
        joined.data(1).await,
        ["still flowing"],
        "joining costs no budget"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_hundred_clients_behind_one_address_are_all_served_by_default() {
    // Behind a NAT, a corporate proxy or a Kubernetes Service that SNATs to the node IP, every
    // client shares one address: the default per-IP limit must not refuse any of them.
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        c.downstream.heartbeat_interval_ms = 600_000;
    })
    .await;
    let mut readers = Vec::new();
    for _ in 0..1500 {
        readers.push(relay.h2().await.subscribe("/events/a", &[]).await);
    }
    assert!(readers.iter().all(|r| r.status == 200));
    assert_eq!(relay.metrics.hub.subscribers.get(), 1500);
    assert_eq!(relay.metrics.server.connections_open.h2.get(), 1500);
    assert_eq!(
        relay
            .metrics
            .server
            .connections_refused
            .get(Cap::PerIp)
            .get(),
        0
    );
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    origin.publish("a", "1", "to everyone");
    for r in &mut readers {
        assert_eq!(r.data(1).await, ["to everyone"]);
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variable_host_reaches_only_the_listed_hosts() {
    let origin = TestOrigin::start().await;
    let upstream = format!("http://{{topic}}:{}/sub/{{topic}}", origin.addr.port());
    let relay = TestRelay::start_with(&upstream, |c| {
        c.routes[0].upstream_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    let mut conn = relay.h2().await;
    for other in ["127.1", "2130706433", "localhost", "0x7f000001"] {
        let response = conn.get(&format!("/events/{other}"), &[]).await;
        assert_eq!(response.status(), 404, "{other} is not a listed host");
    }
    let mut listed = conn.subscribe("/events/127.0.0.1", &[]).await;
    assert_eq!(listed.status, 200);
    eventually("the listed host reached", || origin.open("127.0.0.1") == 1).await;
    origin.publish("127.0.0.1", "1", "hello");
    assert_eq!(listed.data(1).await, ["hello"]);
    for other in ["127.1", "2130706433", "localhost", "0x7f000001"] {
        assert!(origin.requests(other).is_empty(), "{other} reached no host");
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_name_past_the_cap_gets_414_and_reaches_no_origin() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    let mut conn = relay.h2().await;
    let long = "t".repeat(1025);
    let refused = conn.get(&format!("/events/{long}"), &[]).await;
    assert_eq!(refused.status(), 414, "URI Too Long (RFC 9110 §15.5.15)");
    let rejected = &relay.metrics.edge.rejected;
    let reason = sse_relay::edge::RejectReason::VariableTooLong;
    assert_eq!(rejected.get(reason).get(), 1, "counted");
    let longest = "t".repeat(1024);
    let mut served = conn.subscribe(&format!("/events/{longest}"), &[]).await;
    assert_eq!(served.status, 200, "the cap itself is allowed");
    eventually("subscribed", || origin.open(&longest) == 1).await;
    origin.publish(&longest, "1", "hi");
    assert_eq!(served.data(1).await, ["hi"]);
    assert!(origin.requests(&long).is_empty(), "no origin request");
    relay.stop().await;
}
