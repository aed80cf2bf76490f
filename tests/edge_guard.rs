//! What the edge refuses or rewrites before a request reaches an origin: a `Host` that could
//! forge a `Forwarded` element, missing, duplicate or malformed `Host` fields and an h2
//! `host` that contradicts `:authority`, other spellings of SSE paths, odd h2 request
//! targets and schemes, CONNECT and TRACE, h2 cookie crumbs, and malformed chunked bodies.
//! Each refusal is counted, and the relay goes on serving everyone else.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sse_relay::edge::RejectReason;
use support::TestRelay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Every request the passthrough origin received, as `METHOD target` then one
/// `name: value` line per field line, in the order received.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A plain HTTP origin that records each request (after reading its whole body) and answers
/// `200` with the record as its body.
async fn echo_origin(seen: Seen) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(echo(req, seen).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

async fn echo(req: Request<Incoming>, seen: Seen) -> Response<BoxBody<Bytes, Infallible>> {
    let mut record = format!("{} {}", req.method(), req.uri());
    for (name, value) in req.headers() {
        record.push_str(&format!(
            "\n{name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    let body = req.into_body().collect().await;
    seen.0.lock().unwrap().push(record.clone());
    let status = if body.is_ok() { 200 } else { 499 };
    let mut response = Response::new(Full::new(Bytes::from(record)).boxed());
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

/// A relay whose `/events/{topic}` route goes to a test SSE origin and whose passthrough goes
/// to a fresh [`echo_origin`].
async fn relay_and_origin() -> (TestRelay, Seen) {
    let seen = Seen::default();
    let addr = echo_origin(seen.clone()).await;
    let sse_origin = support::TestOrigin::start().await;
    let relay = TestRelay::start(&sse_origin, |c| {
        c.passthrough.upstream = Some(format!("http://{addr}"));
    })
    .await;
    (relay, seen)
}

/// Sends `request` as raw bytes over a fresh TLS connection (ALPN `http/1.1`) and reads the
/// answer until the relay closes the connection (send `Connection: close`); returns the status
/// and the whole answer as text.
async fn raw_h1(relay: &TestRelay, request: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let mut tls = support::tls_connector(&relay.cert, b"http/1.1")
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(support::WAIT, tls.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the relay answers and closes within the wait");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    (status, answer)
}

/// An h2 connection over TLS speaking the `h2` crate directly, which sends header sets a
/// higher-level client would not (a `host` beside `:authority`, `:path = *`, any `:scheme`).
async fn raw_h2(relay: &TestRelay) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let tls = support::tls_connector(&relay.cert, b"h2")
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (send, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(conn);
    send
}

/// Sends `request` (no body) on `send` and returns the status, or `None` when the stream was
/// reset instead of answered.
async fn h2_status(send: &mut h2::client::SendRequest<Bytes>, request: Request<()>) -> Option<u16> {
    let mut send = send.clone().ready().await.ok()?;
    let (response, _) = send.send_request(request, true).ok()?;
    let response = tokio::time::timeout(support::WAIT, response)
        .await
        .expect("an answer within the wait");
    response.ok().map(|r| r.status().as_u16())
}

fn rejected(relay: &TestRelay, reason: RejectReason) -> u64 {
    relay.metrics.edge.rejected.get(reason).get()
}

/// The elements of a `Forwarded` value (RFC 7239 §4): commas outside quoted-strings, with
/// `\` escaping inside them, separate elements.
fn forwarded_elements(value: &str) -> usize {
    let (mut elements, mut quoted, mut escaped) = (1, false, false);
    for c in value.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => elements += 1,
            _ => {}
        }
    }
    elements
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_cannot_forge_a_forwarded_element() {
    let (relay, seen) = relay_and_origin().await;
    let (status, answer) = raw_h1(
        &relay,
        "GET /headers HTTP/1.1\r\nHost: x\", for=6.6.6.6;proto=https;host=\"y\r\n\
         Connection: close\r\n\r\n",
    )
    .await;
    for record in seen.all() {
        for line in record.lines() {
            if let Some(value) = line.strip_prefix("forwarded: ") {
                assert_eq!(forwarded_elements(value), 1, "forged: {value}");
            }
        }
    }
    assert!(
        status == 400 || !seen.all().is_empty(),
        "refused or forwarded: {answer}"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_exactly_one_valid_host_gets_400() {
    let (relay, seen) = relay_and_origin().await;
    let refused = [
        "GET /headers HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n",
        "GET /headers HTTP/1.1\r\n",
        "GET /headers HTTP/1.1\r\nHost: a b\r\n",
        "GET /headers HTTP/1.1\r\nHost: a.example:80x\r\n",
        "GET /headers HTTP/1.1\r\nHost: a.example:123456\r\n",
        "GET /headers HTTP/1.1\r\nHost: [not-an-ip]\r\n",
        "GET /headers HTTP/1.1\r\nHost: user@a.example\r\n",
        "GET /events/a HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n",
    ];
    for head in refused {
        let (status, answer) = raw_h1(&relay, &format!("{head}Connection: close\r\n\r\n")).await;
        assert_eq!(status, 400, "{head:?}: {answer}");
    }
    assert!(
        seen.all().is_empty(),
        "reached the origin: {:?}",
        seen.all()
    );
    assert_eq!(rejected(&relay, RejectReason::Host), refused.len() as u64);
    for head in [
        "GET /headers HTTP/1.1\r\nHost: localhost:8443\r\n",
        "GET /headers HTTP/1.1\r\nHost: [::1]:8443\r\n",
        "GET /headers HTTP/1.1\r\nHost: a-b.example\r\n",
        "GET /headers HTTP/1.0\r\n",
    ] {
        let (status, answer) = raw_h1(&relay, &format!("{head}Connection: close\r\n\r\n")).await;
        assert_eq!(status, 200, "{head:?}: {answer}");
    }

    // h2: `:authority` decides; a `host` that names another authority is refused.
    let mut h2 = raw_h2(&relay).await;
    let with_host = |host: &str| {
        Request::get("https://localhost/headers")
            .header("host", host)
            .body(())
            .unwrap()
    };
    assert_eq!(
        h2_status(&mut h2, with_host("elsewhere.example")).await,
        Some(400)
    );
    assert_eq!(h2_status(&mut h2, with_host("LOCALHOST")).await, Some(200));
    let userinfo = Request::get("https://user@localhost/headers")
        .body(())
        .unwrap();
    assert_eq!(h2_status(&mut h2, userinfo).await, Some(400));
    let plain = Request::get("https://localhost/headers").body(()).unwrap();
    assert_eq!(h2_status(&mut h2, plain).await, Some(200));
    assert_eq!(
        rejected(&relay, RejectReason::Host),
        refused.len() as u64 + 2
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_that_decode_to_an_sse_route_get_404_not_the_origin() {
    let (relay, seen) = relay_and_origin().await;
    let paths = [
        "/events\\a",
        "/events%2Fa",
        "/events%2fa",
        "/events%5Ca",
        "/x/..%2Fevents/a",
        "/x/%2E%2E/events/a",
        "/events/a%2F",
    ];
    for path in paths {
        let (status, answer) = raw_h1(
            &relay,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 404, "{path}: {answer}");
    }
    assert!(
        seen.all().is_empty(),
        "reached the origin: {:?}",
        seen.all()
    );
    assert_eq!(
        rejected(&relay, RejectReason::NoncanonicalPath),
        paths.len() as u64
    );
    let (status, _) = raw_h1(
        &relay,
        "GET /events%2Fa%2Fhistory HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "paths that are no SSE route pass through");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_asterisk_targets_are_for_options_and_schemes_are_http() {
    let (relay, seen) = relay_and_origin().await;
    let mut h2 = raw_h2(&relay).await;
    let asterisk = |method: http::Method| {
        let uri = http::Uri::from_parts({
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(http::uri::Scheme::HTTPS);
            parts.authority = Some("localhost".parse().unwrap());
            parts.path_and_query = Some("*".parse().unwrap());
            parts
        });
        Request::builder()
            .method(method)
            .uri(uri.expect("an asterisk-form URI"))
            .body(())
            .unwrap()
    };
    let get = h2_status(&mut h2, asterisk(http::Method::GET)).await;
    assert!(matches!(get, Some(400) | None), "GET *: {get:?}");
    let other_scheme = Request::get("ftp://localhost/headers").body(()).unwrap();
    let ftp = h2_status(&mut h2, other_scheme).await;
    assert!(matches!(ftp, Some(400) | None), "ftp: {ftp:?}");
    assert!(
        seen.all().is_empty(),
        "reached the origin: {:?}",
        seen.all()
    );
    let options = h2_status(&mut h2, asterisk(http::Method::OPTIONS)).await;
    assert_ne!(options, Some(400), "OPTIONS * is a valid request");
    let plain = Request::get("https://localhost/headers").body(()).unwrap();
    assert_eq!(h2_status(&mut raw_h2(&relay).await, plain).await, Some(200));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_cookie_crumbs_reach_an_http1_origin_as_one_line() {
    let (relay, seen) = relay_and_origin().await;
    let mut conn = relay.h2().await;
    let response = conn
        .request(
            http::Method::GET,
            "/headers",
            &[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let record = seen.all().pop().expect("the origin got the request");
    let cookies: Vec<&str> = record
        .lines()
        .filter_map(|l| l.strip_prefix("cookie: "))
        .collect();
    assert_eq!(cookies, ["a=1; b=2; c=3"], "{record}");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_trace_get_405_with_allow() {
    let (relay, seen) = relay_and_origin().await;
    for request in [
        "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n",
        "TRACE /headers HTTP/1.1\r\nHost: localhost\r\n",
        "TRACE /events/a HTTP/1.1\r\nHost: localhost\r\n",
    ] {
        let (status, answer) = raw_h1(&relay, &format!("{request}Connection: close\r\n\r\n")).await;
        assert_eq!(status, 405, "{request:?}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("\r\nallow: "),
            "{answer}"
        );
    }
    let mut conn = relay.h2().await;
    let trace = conn.request(http::Method::TRACE, "/headers", &[]).await;
    assert_eq!(trace.status(), 405);
    assert!(trace.headers().contains_key("allow"));
    assert!(
        seen.all().is_empty(),
        "reached the origin: {:?}",
        seen.all()
    );
    assert_eq!(rejected(&relay, RejectReason::Method), 4);
    let ok = conn.request(http::Method::GET, "/headers", &[]).await;
    assert_eq!(ok.status(), 200);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_the_clients_fault() {
    let (relay, _seen) = relay_and_origin().await;
    let (status, answer) = raw_h1(
        &relay,
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(rejected(&relay, RejectReason::RequestBody), 1);
    let (status, answer) = raw_h1(
        &relay,
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    relay.stop().await;
}
