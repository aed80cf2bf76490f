//! PROXY protocol on the relay's listeners (`server.proxy_protocol`): raw-socket clients send a
//! v1 or v2 header, then TLS or plaintext HTTP on the same connection, and the relay takes the
//! declared address for the client's (seen in `X-Forwarded-For` at a passthrough origin, and by
//! the per-IP cap); connections without a valid header, from a peer outside
//! `proxy_protocol_from`, or whose header never completes are closed and counted.

mod support;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ppp::v2::{Builder, Protocol};
use sse_relay::config::Config;
use sse_relay::server::proxy_protocol::Rejection;
use sse_relay::server::Cap;
use support::raw::until_closed;
use support::{eventually, http_get, H2Client, TestRelay, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// A passthrough origin answering every request with the `X-Forwarded-For` it got.
async fn forwarded_for_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let service = service_fn(|req: Request<Incoming>| async move {
                let xff = req
                    .headers()
                    .get("x-forwarded-for")
                    .map(|v| v.to_str().unwrap_or("?").to_string())
                    .unwrap_or_default();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(xff))))
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// A relay expecting PROXY headers on its TLS and plaintext listeners, passing requests that
/// match no SSE route to `origin`.
async fn relay(origin: SocketAddr, configure: impl FnOnce(&mut Config)) -> TestRelay {
    TestRelay::start_with("http://127.0.0.1:1/{topic}", |c| {
        c.server.proxy_protocol = true;
        c.server.plaintext_listen = Some(support::loopback());
        c.passthrough.upstream = Some(format!("http://{origin}"));
        configure(c);
    })
    .await
}

fn v1(client: SocketAddr) -> Vec<u8> {
    let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    let dst = if client.is_ipv4() { "127.0.0.1" } else { "::1" };
    format!(
        "PROXY {family} {} {dst} {} 443\r\n",
        client.ip(),
        client.port()
    )
    .into_bytes()
}

fn v2(client: SocketAddr) -> Vec<u8> {
    let dst: SocketAddr = if client.is_ipv4() {
        "127.0.0.1:443".parse().unwrap()
    } else {
        "[::1]:443".parse().unwrap()
    };
    Builder::with_addresses(0x21, Protocol::Stream, (client, dst))
        .build()
        .unwrap()
}

/// A TCP connection to `addr` that has sent `header`.
async fn after_header(addr: SocketAddr, header: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(header).await.unwrap();
    tcp
}

/// An h2 client over TLS to `relay` on a connection that has sent `header` first.
async fn h2_after(relay: &TestRelay, header: &[u8]) -> H2Client {
    H2Client::over(after_header(relay.addr, header).await, &relay.cert, None).await
}

/// The `X-Forwarded-For` the origin saw for a GET over h2 on `client`.
async fn forwarded_for(client: &mut H2Client) -> String {
    let response = client.get("/whoami", &[]).await;
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

fn rejected(relay: &TestRelay, reason: Rejection) -> u64 {
    relay
        .metrics
        .server
        .proxy_protocol_rejected
        .get(reason)
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_header_before_tls_declares_the_client() {
    let origin = forwarded_for_origin().await;
    let relay = relay(origin, |_| {}).await;
    let client: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    let mut h2 = h2_after(&relay, &v1(client)).await;
    assert_eq!(forwarded_for(&mut h2).await, "203.0.113.7");
    let client: SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
    let mut h2 = h2_after(&relay, &v1(client)).await;
    assert_eq!(forwarded_for(&mut h2).await, "2001:db8::7");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_header_before_tls_declares_the_client() {
    let origin = forwarded_for_origin().await;
    let relay = relay(origin, |_| {}).await;
    let client: SocketAddr = "198.51.100.9:5555".parse().unwrap();
    let mut h2 = h2_after(&relay, &v2(client)).await;
    assert_eq!(forwarded_for(&mut h2).await, "198.51.100.9");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_header_and_request_in_one_write_on_the_plaintext_listener() {
    let origin = forwarded_for_origin().await;
    let relay = relay(origin, |_| {}).await;
    let client: SocketAddr = "[2001:db8::42]:5555".parse().unwrap();
    // The request follows the header in the same segment: the relay reads both at once and
    // must hand the request on to HTTP/1.1.
    let mut bytes = v2(client);
    bytes.extend_from_slice(b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut tcp = after_header(relay.plain_addr.unwrap(), &bytes).await;
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("answered within the wait")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n2001:db8::42"), "{answer}");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_ip_cap_counts_the_declared_address() {
    let origin = forwarded_for_origin().await;
    let relay = relay(origin, |c| c.limits.max_connections_per_ip = 1).await;
    let first: SocketAddr = "203.0.113.1:1000".parse().unwrap();
    let mut kept = h2_after(&relay, &v1(first)).await;
    assert_eq!(forwarded_for(&mut kept).await, "203.0.113.1");
    // Same socket address (127.0.0.1) as the first, but another declared client: allowed.
    let other: SocketAddr = "203.0.113.2:1000".parse().unwrap();
    let mut h2 = h2_after(&relay, &v1(other)).await;
    assert_eq!(forwarded_for(&mut h2).await, "203.0.113.2");
    // The first declared client again, from another port: over the cap.
    let again: SocketAddr = "203.0.113.1:2000".parse().unwrap();
    until_closed(after_header(relay.addr, &v1(again)).await).await;
    assert_eq!(
        relay
            .metrics
            .server
            .connections_refused
            .get(Cap::PerIp)
            .get(),
        1
    );
    assert!(!kept.is_closed());
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_header_is_refused_and_counted() {
    let origin = forwarded_for_origin().await;
    let relay = relay(origin, |_| {}).await;
    // Plaintext HTTP/1.1 straight away.
    let request = b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut tcp = after_header(relay.plain_addr.unwrap(), request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("closed within the wait");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    eventually("the refusal counted", || {
        rejected(&relay, Rejection::Invalid) == 1
    })
    .await;
    // A TLS ClientHello straight away: the handshake never completes.
    let tcp = TcpStream::connect(relay.addr).await.unwrap();
    let connector = support::tls_connector(&relay.cert, b"h2");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let handshake = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("the relay answers the ClientHello by closing");
    assert!(handshake.is_err(), "TLS without a PROXY header must fail");
    eventually("the refusal counted", || {
        rejected(&relay, Rejection::Invalid) == 2
    })
    .await;
    // Connected and gone again before a byte.
    drop(TcpStream::connect(relay.addr).await.unwrap());
    eventually("the close counted", || {
        rejected(&relay, Rejection::Closed) == 1
    })
    .await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_from_outside_proxy_protocol_from_is_refused() {
    let origin = forwarded_for_origin().await;
    let relay = relay(origin, |c| {
        c.server.proxy_protocol_from = vec!["127.0.0.2/32".into()];
    })
    .await;
    let client: SocketAddr = "203.0.113.5:1000".parse().unwrap();
    // From 127.0.0.1: not a listed balancer.
    until_closed(after_header(relay.addr, &v1(client)).await).await;
    assert_eq!(rejected(&relay, Rejection::NotAllowed), 1);
    // From 127.0.0.2: listed.
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::from([127, 0, 0, 2]), 0))
        .unwrap();
    let mut tcp = socket.connect(relay.addr).await.unwrap();
    tcp.write_all(&v1(client)).await.unwrap();
    let mut h2 = H2Client::over(tcp, &relay.cert, None).await;
    assert_eq!(forwarded_for(&mut h2).await, "203.0.113.5");
    assert_eq!(rejected(&relay, Rejection::NotAllowed), 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_that_never_completes_times_out() {
    let origin = forwarded_for_origin().await;
    let relay = relay(origin, |c| c.server.proxy_protocol_timeout_ms = 200).await;
    let client: SocketAddr = "203.0.113.5:1000".parse().unwrap();
    let header = v1(client);
    until_closed(after_header(relay.addr, &header[..header.len() - 2]).await).await;
    eventually("the timeout counted", || {
        rejected(&relay, Rejection::Timeout) == 1
    })
    .await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_expects_no_header() {
    let origin = forwarded_for_origin().await;
    let relay = relay(origin, |_| {}).await;
    let (status, _) = http_get(relay.admin_addr, "/healthz").await;
    assert_eq!(status, 200);
    relay.stop().await;
}
