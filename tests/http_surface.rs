//! The HTTP surface around the streams: CORS for pages on other origins, the plaintext
//! listener (HTTP/1.1 and h2c prior knowledge), the h2 settings the relay advertises, and
//! answers for paths and methods that are not subscriptions.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{eventually, TestOrigin, TestRelay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_listed_origins_only() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        c.cors.allowed_origins = vec!["https://app.example".into()];
        c.cors.allow_credentials = true;
    })
    .await;
    let mut conn = relay.h2().await;
    let allowed = conn
        .subscribe("/events/a", &[("origin", "https://app.example")])
        .await;
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(allowed.headers["access-control-allow-credentials"], "true");
    let denied = conn
        .subscribe("/events/a", &[("origin", "https://evil.example")])
        .await;
    assert!(denied.headers.get("access-control-allow-origin").is_none());
    // The origin's refusal, answered after the wait for it (the request's `Origin` is all
    // that waits with the subscriber), is visible to an allowed page too.
    origin.answer("gone", support::origin::Canned::status(410, "gone"));
    let refused = send_h2(
        &mut conn.clone(),
        Request::get("https://localhost/events/gone").header("origin", "https://app.example"),
    )
    .await;
    assert_eq!(refused.status(), 410);
    assert_eq!(
        refused.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let refused = send_h2(
        &mut conn.clone(),
        Request::get("https://localhost/events/gone").header("origin", "https://evil.example"),
    )
    .await;
    assert_eq!(refused.status(), 410);
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    let preflight = |origin: &'static str| {
        Request::options("https://localhost/events/a")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "last-event-id")
    };
    let mut send = conn.clone();
    let ok = send_h2(&mut send, preflight("https://app.example")).await;
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()["access-control-allow-methods"], "GET");
    assert!(ok.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("last-event-id"));
    let no = send_h2(&mut send, preflight("https://evil.example")).await;
    assert!(no.headers().get("access-control-allow-origin").is_none());
    relay.stop().await;
}

async fn send_h2(
    conn: &mut support::H2Client,
    req: http::request::Builder,
) -> http::Response<hyper::body::Incoming> {
    let (parts, _) = req.body(()).unwrap().into_parts();
    let path = parts.uri.path().to_string();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    conn.request(parts.method, &path, &refs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_listener_serves_http1_and_h2c() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        c.server.plaintext_listen = Some(support::loopback());
        c.downstream.heartbeat_interval_ms = 600_000;
    })
    .await;
    let plain = relay.plain_addr.expect("plaintext listener");

    let tcp = tokio::net::TcpStream::connect(plain).await.unwrap();
    let (mut h2c, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let h2c_response = h2c
        .send_request(
            Request::get("http://localhost/events/a")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();

    let tcp = tokio::net::TcpStream::connect(plain).await.unwrap();
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let h1_response = h1
        .send_request(
            Request::get("/events/a")
                .header("host", "localhost")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    eventually("one upstream", || origin.open("a") == 1).await;
    origin.publish("a", "1", "hello");
    for response in [h2c_response, h1_response] {
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut raw = Vec::new();
        while !String::from_utf8_lossy(&raw).contains("data: hello") {
            let frame = tokio::time::timeout(support::WAIT, body.frame())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            raw.extend_from_slice(&frame.into_data().unwrap());
        }
    }
    assert_eq!(origin.requests("a").len(), 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_is_sent_on_tls_when_configured() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| c.server.hsts_max_age_s = 31_536_000).await;
    let r = relay.h2().await.subscribe("/events/a", &[]).await;
    assert_eq!(r.headers["strict-transport-security"], "max-age=31536000");
    relay.stop().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    let r = relay.h2().await.subscribe("/events/a", &[]).await;
    assert!(
        r.headers.get("strict-transport-security").is_none(),
        "off by default"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_subscription_requests_get_clear_statuses() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    let mut conn = relay.h2().await;
    assert_eq!(
        conn.request(http::Method::GET, "/nowhere", &[])
            .await
            .status(),
        404
    );
    assert_eq!(
        conn.request(http::Method::GET, "/events/..", &[])
            .await
            .status(),
        404
    );
    let post = conn.request(http::Method::POST, "/events/a", &[]).await;
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, OPTIONS");
    assert_eq!(
        origin.requests("a").len(),
        0,
        "no upstream work for refused requests"
    );
    relay.stop().await;
}

/// What the server says first on an h2 connection (ALPN `h2`, then the client preface and an
/// empty SETTINGS frame, RFC 9113 §3.4): the parameters of its SETTINGS frame as (identifier,
/// value) pairs, and the increment of its first WINDOW_UPDATE on stream 0 (the connection
/// window above the initial 65535, RFC 9113 §6.9.2), read within the server's first ten frames
/// and 10 s (a server that never sends them fails the test instead of hanging it).
async fn server_preface(relay: &TestRelay) -> (Vec<(u16, u32)>, Option<u32>) {
    tokio::time::timeout(Duration::from_secs(10), read_server_preface(relay))
        .await
        .expect("the server's SETTINGS and connection WINDOW_UPDATE within 10 s")
}

async fn read_server_preface(relay: &TestRelay) -> (Vec<(u16, u32)>, Option<u32>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let mut tls = support::tls_connector(&relay.cert, b"h2")
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut settings = None;
    let mut window_increment = None;
    for frame in 0..10 {
        // Frame header (RFC 9113 §4.1): length (24 bits), type, flags, stream id (32 bits).
        let mut header = [0u8; 9];
        tls.read_exact(&mut header).await.unwrap();
        if frame == 0 {
            // RFC 9113 §3.4: the server's preface is a SETTINGS frame.
            assert_eq!(header[3], 0x4, "the server's first frame is SETTINGS");
        }
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        let mut payload = vec![0u8; length];
        tls.read_exact(&mut payload).await.unwrap();
        match header[3] {
            // SETTINGS without ACK; each parameter: identifier (16 bits), value (32 bits),
            // RFC 9113 §6.5.1.
            0x4 if header[4] & 0x1 == 0 => {
                assert!(settings.is_none(), "one SETTINGS frame before our ACK");
                settings = Some(
                    payload
                        .chunks_exact(6)
                        .map(|p| {
                            (
                                u16::from_be_bytes([p[0], p[1]]),
                                u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
                            )
                        })
                        .collect(),
                );
            }
            0x8 if stream == 0 && window_increment.is_none() => {
                window_increment = Some(u32::from_be_bytes([
                    payload[0] & 0x7f,
                    payload[1],
                    payload[2],
                    payload[3],
                ]));
            }
            _ => {}
        }
        if settings.is_some() && window_increment.is_some() {
            break;
        }
    }
    (
        settings.expect("the server sends SETTINGS"),
        window_increment,
    )
}

/// SETTINGS_HEADER_TABLE_SIZE (identifier 0x1, RFC 9113 §6.5.2) is 0 by default, so no client
/// keeps an HPACK dynamic table in the relay for a connection's life; the configured value is
/// what is advertised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hpack_table_advertised_is_empty_by_default_and_configurable() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    let (settings, _) = server_preface(&relay).await;
    assert!(settings.contains(&(0x1, 0)), "advertised {settings:?}");
    relay.stop().await;
    let relay = TestRelay::start(&origin, |c| c.server.h2.header_table_size = 4096).await;
    let (settings, _) = server_preface(&relay).await;
    assert!(settings.contains(&(0x1, 4096)), "advertised {settings:?}");
    relay.stop().await;
}

/// The flow-control windows and the largest frame we accept are what `[server.h2]` says:
/// SETTINGS_INITIAL_WINDOW_SIZE (0x4) and SETTINGS_MAX_FRAME_SIZE (0x5) in the SETTINGS frame,
/// the connection window as a WINDOW_UPDATE on stream 0 above the initial 65535 (RFC 9113
/// §6.5.2, §6.9.2); 1 MiB windows and 16 KiB frames by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_h2_windows_and_frame_size_advertised_are_the_configured_ones() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    let (settings, window_increment) = server_preface(&relay).await;
    assert!(
        settings.contains(&(0x4, 1 << 20)),
        "advertised {settings:?}"
    );
    assert!(
        !settings.iter().any(|&(id, v)| id == 0x5 && v != 16_384),
        "advertised {settings:?}"
    );
    assert_eq!(window_increment, Some((1 << 20) - 65_535));
    relay.stop().await;
    let relay = TestRelay::start(&origin, |c| {
        c.server.h2.initial_stream_window_size = 262_144;
        c.server.h2.initial_connection_window_size = 4 << 20;
        c.server.h2.max_frame_size = 32_768;
    })
    .await;
    let (settings, window_increment) = server_preface(&relay).await;
    assert!(
        settings.contains(&(0x4, 262_144)),
        "advertised {settings:?}"
    );
    assert!(settings.contains(&(0x5, 32_768)), "advertised {settings:?}");
    assert_eq!(window_increment, Some((4 << 20) - 65_535));
    relay.stop().await;
}
