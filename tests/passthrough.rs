//! Passthrough: requests that match no SSE route are proxied to the default origin, streamed
//! both ways, with hop-by-hop and forwarding header rules, clear 502/504 answers, and
//! cancellation reaching the origin.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sse_relay::config::Config;
use sse_relay::edge::Outcome;
use sse_relay::edge::RejectReason;
use support::{eventually, TestRelay};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const MIB: u64 = 1024 * 1024;

/// What the test origin observed.
#[derive(Default)]
struct Seen {
    uploaded: AtomicU64,
    hang_dropped: AtomicBool,
}

struct DropFlag(Arc<Seen>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.hang_dropped.store(true, Ordering::SeqCst);
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// A plain HTTP origin: `/headers` echoes request headers, `/upload` counts the request body,
/// `/download/N` streams N MiB, `/tokens` answers a POST with an event stream fed by `tokens`,
/// `/slow` waits before answering, `/hang` streams forever and notes when it is dropped.
async fn origin(seen: Arc<Seen>, tokens: mpsc::Receiver<String>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tokens = Arc::new(tokio::sync::Mutex::new(Some(tokens)));
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (seen, tokens) = (seen.clone(), tokens.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let (seen, tokens) = (seen.clone(), tokens.clone());
                    async move { Ok::<_, Infallible>(respond(req, seen, tokens).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

async fn respond(
    req: Request<Incoming>,
    seen: Arc<Seen>,
    tokens: Arc<tokio::sync::Mutex<Option<mpsc::Receiver<String>>>>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/headers" => {
            let mut lines: Vec<String> = req
                .headers()
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
                .collect();
            lines.sort();
            let mut r = full(lines.join("\n"));
            r.headers_mut()
                .insert("connection", "x-origin-private".parse().unwrap());
            r.headers_mut()
                .insert("x-origin-private", "1".parse().unwrap());
            r.headers_mut()
                .insert("keep-alive", "timeout=5".parse().unwrap());
            r
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut n = 0;
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    n += data.len() as u64;
                }
            }
            seen.uploaded.store(n, Ordering::SeqCst);
            full(n.to_string())
        }
        p if p.starts_with("/download/") => {
            let mib: u64 = p["/download/".len()..].parse().unwrap();
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let chunks = (mib * MIB) / chunk.len() as u64;
            let stream = futures_util::stream::iter(
                (0..chunks).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))),
            );
            Response::new(StreamBody::new(stream).boxed())
        }
        "/tokens" => {
            let rx = tokens.lock().await.take().expect("one token stream");
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                let token = rx.recv().await?;
                let frame = Frame::data(Bytes::from(format!("data: {token}\n\n")));
                Some((Ok::<_, Infallible>(frame), rx))
            });
            let mut r = Response::new(StreamBody::new(stream).boxed());
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            full("late".into())
        }
        "/hang" => {
            let flag = DropFlag(seen);
            let stream = futures_util::stream::unfold(flag, |flag| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((
                    Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"."))),
                    flag,
                ))
            });
            Response::new(StreamBody::new(stream).boxed())
        }
        _ => {
            let mut r = full("nope".into());
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

fn full(text: String) -> Response<Body> {
    Response::new(Full::new(Bytes::from(text)).boxed())
}

/// A relay passing requests that match no SSE route to `origin`, with `configure` applied.
async fn relay_for(origin: SocketAddr, configure: impl FnOnce(&mut Config)) -> TestRelay {
    let sse_origin = support::TestOrigin::start().await;
    TestRelay::start(&sse_origin, |c| {
        c.passthrough.upstream = Some(format!("http://{origin}"));
        configure(c);
    })
    .await
}

async fn text(response: Response<Incoming>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed_and_forwarding_headers_added() {
    let seen = Arc::new(Seen::default());
    let addr = origin(seen, mpsc::channel(1).1).await;
    let relay = relay_for(addr, |_| {}).await;
    let mut conn = relay.h2().await;
    let response = conn
        .request(
            http::Method::GET,
            "/headers",
            &[
                ("x-private", "secret"),
                ("te", "trailers"),
                ("x-forwarded-for", "203.0.113.9"),
                ("x-kept", "yes"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-origin-private").is_none());
    assert!(response.headers().get("keep-alive").is_none());
    assert_eq!(response.headers()["via"], "1.1 sse-relay");
    let seen = text(response).await;
    assert!(seen.contains("x-kept: yes"), "{seen}");
    assert!(!seen.contains("\nte:"), "{seen}");
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: https"), "{seen}");
    assert!(seen.contains("x-forwarded-host: localhost"), "{seen}");
    assert!(
        seen.contains("forwarded: for=127.0.0.1;proto=https;host=\"localhost\""),
        "{seen}"
    );
    assert!(seen.contains("via: 2 sse-relay"), "{seen}");
    assert!(seen.contains(&format!("host: {addr}")), "{seen}");
    relay.stop().await;
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_with_bounded_memory() {
    let seen = Arc::new(Seen::default());
    let addr = origin(seen.clone(), mpsc::channel(1).1).await;
    let relay = relay_for(addr, |_| {}).await;
    let mut conn = relay.h2().await;
    let before = peak_rss_kib();
    const SIZE_MIB: u64 = 128;

    // Upload: a streamed request body of 128 MiB, generated on the fly.
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    let chunks = SIZE_MIB * MIB / chunk.len() as u64;
    let upload = StreamBody::new(futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))),
    ));
    let response = conn
        .send_streaming(
            Request::post("https://localhost/upload")
                .body(upload.boxed())
                .unwrap(),
        )
        .await;
    assert_eq!(text(response).await, (SIZE_MIB * MIB).to_string());
    assert_eq!(seen.uploaded.load(Ordering::SeqCst), SIZE_MIB * MIB);

    // Download: 128 MiB, counted as it arrives.
    let response = conn
        .request(http::Method::GET, &format!("/download/{SIZE_MIB}"), &[])
        .await;
    let mut body = response.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        n += frame.unwrap().into_data().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(n, SIZE_MIB * MIB);
    let grown_mib = (peak_rss_kib() - before) / 1024;
    assert!(
        grown_mib < SIZE_MIB / 2,
        "bodies were streamed, not buffered: peak RSS grew {grown_mib} MiB for {SIZE_MIB} MiB each way"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_answered_with_an_event_stream_flows_event_by_event() {
    let seen = Arc::new(Seen::default());
    let (tokens, rx) = mpsc::channel(8);
    let addr = origin(seen, rx).await;
    let relay = relay_for(addr, |_| {}).await;
    let mut conn = relay.h2().await;
    let response = conn.request(http::Method::POST, "/tokens", &[]).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    // Each token reaches the client before the next one is even produced.
    for word in ["Hello", "from", "an", "LLM"] {
        tokens.send(word.to_string()).await.unwrap();
        let frame = tokio::time::timeout(support::WAIT, body.frame())
            .await
            .expect("token arrives")
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), format!("data: {word}\n\n"));
    }
    drop((body, tokens));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_cancels_the_origin_request() {
    let seen = Arc::new(Seen::default());
    let addr = origin(seen.clone(), mpsc::channel(1).1).await;
    let relay = relay_for(addr, |_| {}).await;
    let mut conn = relay.h2().await;
    let response = conn.request(http::Method::GET, "/hang", &[]).await;
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    assert!(!seen.hang_dropped.load(Ordering::SeqCst));
    drop(body); // RST_STREAM
    eventually("the origin saw the cancellation", || {
        seen.hang_dropped.load(Ordering::SeqCst)
    })
    .await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_slow_origins_get_502_and_504() {
    let seen = Arc::new(Seen::default());
    let addr = origin(seen, mpsc::channel(1).1).await;
    let relay = relay_for(addr, |c| c.passthrough.response_timeout_ms = 200).await;
    let mut conn = relay.h2().await;
    let slow = conn.request(http::Method::GET, "/slow", &[]).await;
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(text(slow).await.contains("did not come in time"));
    assert_eq!(
        relay.metrics.edge.passthrough.get(Outcome::Timeout).get(),
        1
    );
    relay.stop().await;

    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let relay = relay_for(closed, |_| {}).await;
    let mut conn = relay.h2().await;
    let down = conn.request(http::Method::GET, "/anything", &[]).await;
    assert_eq!(down.status(), StatusCode::BAD_GATEWAY);
    assert!(text(down).await.contains("could not be reached"));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_routes_are_not_proxied() {
    let seen = Arc::new(Seen::default());
    let addr = origin(seen, mpsc::channel(1).1).await;
    let relay = relay_for(addr, |_| {}).await;
    let mut conn = relay.h2().await;
    let r = conn.subscribe("/events/a", &[]).await;
    assert_eq!(r.headers["content-type"], "text/event-stream");
    let other = conn.request(http::Method::GET, "/elsewhere", &[]).await;
    assert_eq!(other.status(), 404, "answered by the passthrough origin");
    assert_eq!(text(other).await, "nope");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_spellings_of_sse_paths_are_refused_not_proxied() {
    let seen = Arc::new(Seen::default());
    let addr = origin(seen, mpsc::channel(1).1).await;
    let relay = relay_for(addr, |_| {}).await;
    let mut conn = relay.h2().await;
    for path in [
        "/events/a/",
        "/events//a",
        "/EVENTS/a",
        "/events/a;jsessionid=1",
        "/events/b/../a",
    ] {
        let r = conn.request(http::Method::GET, path, &[]).await;
        assert_eq!(r.status(), 404, "{path}");
        let body = text(r).await;
        assert!(
            body.contains("canonical spelling"),
            "{path}: answered by {body:?}"
        );
    }
    assert_eq!(
        relay
            .metrics
            .edge
            .rejected
            .get(RejectReason::NoncanonicalPath)
            .get(),
        5
    );
    let other = conn
        .request(http::Method::GET, "/events/a/history", &[])
        .await;
    assert_eq!(text(other).await, "nope", "other paths still pass through");
    relay.stop().await;
}
