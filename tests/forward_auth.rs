//! Forward auth (as nginx `auth_request`): the authorization server sees the client's
//! credentials and the topic, 2xx allows and 401/403 deny, answers are cached per credential
//! and topic, identical concurrent checks are coalesced into one request, an outage keeps
//! browsers retrying instead of failing them for good, and with `reauthorize_after_ms` a
//! revoked credential stops receiving.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sse_relay::config::{AuthMode, AuthUnavailable, ForwardAuthConfig};
use sse_relay::edge::DenialKind;
use support::{eventually, TestOrigin, TestRelay};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// An authorization server: allows `Bearer good` on `/events/a`, 403 for other topics, 401
/// otherwise; records what it saw at once, but answers nothing until `open` turns true (so a
/// test decides how long checks stay in flight).
async fn auth_server(
    seen: Arc<Mutex<Vec<http::HeaderMap>>>,
    open: watch::Receiver<bool>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (seen, open) = (seen.clone(), open.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (seen, mut open) = (seen.clone(), open.clone());
                    async move {
                        seen.lock().unwrap().push(req.headers().clone());
                        let _ = open.wait_for(|open| *open).await;
                        let h = req.headers();
                        let status = match (
                            h.get("authorization").map(|v| v.to_str().unwrap()),
                            h.get("x-sse-topic").map(|v| v.to_str().unwrap()),
                        ) {
                            (Some("Bearer good"), Some("/events/a")) => StatusCode::NO_CONTENT,
                            (Some("Bearer good"), _) => StatusCode::FORBIDDEN,
                            _ => StatusCode::UNAUTHORIZED,
                        };
                        let mut r = Response::new(Empty::<Bytes>::new());
                        *r.status_mut() = status;
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// `[auth.forward]` asking the authorization server at `auth`, other keys at their defaults.
fn forward_to(auth: SocketAddr) -> ForwardAuthConfig {
    support::forward_auth_config(&format!("http://{auth}/auth"))
}

/// A relay whose route asks `forward` about every subscriber.
async fn relay(origin: &TestOrigin, forward: ForwardAuthConfig) -> TestRelay {
    TestRelay::start(origin, |c| {
        c.routes[0].auth = AuthMode::Forward;
        c.auth.forward = Some(forward);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allows_denies_caches_and_coalesces() {
    let origin = TestOrigin::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (open, gate) = watch::channel(false);
    let relay = relay(&origin, forward_to(auth_server(seen.clone(), gate).await)).await;
    let good = [("authorization", "Bearer good"), ("cookie", "session=s1")];

    // Ten identical subscriptions, each on its own connection, while the first check is held
    // in flight: one authorization request. (Connections are counted as their first request
    // enters the relay, so all ten are in before the answer; one that got no further than that
    // would find the answer cached, which also asks nothing.)
    let mut opening = Vec::new();
    for _ in 0..10 {
        let mut c = relay.h2().await;
        opening.push(tokio::spawn(async move {
            c.subscribe("/events/a", &good).await
        }));
    }
    eventually("ten requests in, one check in flight", || {
        relay.metrics.server.connections_accepted.h2.get() == 10 && !seen.lock().unwrap().is_empty()
    })
    .await;
    open.send_replace(true);
    let mut conn = relay.h2().await;
    let mut streams = Vec::new();
    for o in opening {
        let r = o.await.unwrap();
        assert_eq!(r.status, 200);
        streams.push(r);
    }
    assert_eq!(seen.lock().unwrap().len(), 1, "coalesced into one check");
    // Within the cache TTL: no new request.
    assert_eq!(conn.subscribe("/events/a", &good).await.status, 200);
    assert_eq!(seen.lock().unwrap().len(), 1, "cached");

    let first = seen.lock().unwrap()[0].clone();
    assert_eq!(first["x-original-uri"], "/events/a");
    assert_eq!(first["x-sse-topic"], "/events/a");
    assert_eq!(first["x-forwarded-for"], "127.0.0.1");
    assert_eq!(first["cookie"], "session=s1");

    assert_eq!(conn.subscribe("/events/b", &good).await.status, 403);
    assert_eq!(
        conn.subscribe("/events/a", &[("authorization", "Bearer bad")])
            .await
            .status,
        401
    );
    // Negative answers are cached too.
    let before = seen.lock().unwrap().len();
    assert_eq!(conn.subscribe("/events/b", &good).await.status, 403);
    assert_eq!(seen.lock().unwrap().len(), before);

    // Another client with the same credentials is checked on its own (the answer may depend
    // on X-Forwarded-For).
    let before = seen.lock().unwrap().len();
    let mut elsewhere =
        support::H2Client::connect_from(relay.addr, "127.0.0.2".parse().unwrap(), &relay.cert)
            .await;
    assert_eq!(elsewhere.subscribe("/events/a", &good).await.status, 200);
    let seen_now = seen.lock().unwrap().clone();
    assert_eq!(
        seen_now.len(),
        before + 1,
        "not served from 127.0.0.1's cache"
    );
    assert_eq!(seen_now[before]["x-forwarded-for"], "127.0.0.2");

    eventually("subscribed", || origin.open("a") == 1).await;
    let upstream = &origin.requests("a")[0].headers;
    assert!(upstream.get("authorization").is_none() && upstream.get("cookie").is_none());
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_outage_keeps_event_sources_retrying() {
    let origin = TestOrigin::start().await;
    let down = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let relay = relay(
        &origin,
        ForwardAuthConfig {
            timeout_ms: 300,
            ..forward_to(down)
        },
    )
    .await;
    let mut conn = relay.h2().await;
    let mut es = conn
        .subscribe(
            "/events/a",
            &[
                ("accept", "text/event-stream"),
                ("authorization", "Bearer good"),
            ],
        )
        .await;
    assert_eq!(
        es.status, 200,
        "an EventSource gets a stream that tells it to retry"
    );
    es.until_end().await;
    assert!(String::from_utf8_lossy(&es.raw).ends_with("retry: 2000\n\n"));
    let other = conn
        .subscribe("/events/a", &[("authorization", "Bearer good")])
        .await;
    assert_eq!(other.status, 503, "other clients get 503");
    assert!(origin.requests("a").is_empty());
    assert_eq!(
        relay
            .metrics
            .edge
            .auth_denied
            .get(DenialKind::Unavailable)
            .get(),
        2
    );
    relay.stop().await;

    let relay = self::relay(
        &origin,
        ForwardAuthConfig {
            timeout_ms: 300,
            unavailable: AuthUnavailable::Deny,
            ..forward_to(down)
        },
    )
    .await;
    let es = relay
        .h2()
        .await
        .subscribe("/events/a", &[("accept", "text/event-stream")])
        .await;
    assert_eq!(es.status, 401, "unavailable = \"deny\" answers 401");
    relay.stop().await;
}

/// An authorization server that allows while `allowed` is set (204) and forbids (403) after;
/// counts the checks it answered.
async fn switch_server(allowed: Arc<AtomicBool>, asked: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (allowed, asked) = (allowed.clone(), asked.clone());
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<Incoming>| {
                    asked.fetch_add(1, Ordering::SeqCst);
                    let mut r = Response::new(Empty::<Bytes>::new());
                    *r.status_mut() = if allowed.load(Ordering::SeqCst) {
                        StatusCode::NO_CONTENT
                    } else {
                        StatusCode::FORBIDDEN
                    };
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthorize_after_ms_ends_streams_so_a_revoked_credential_stops_receiving() {
    let origin = TestOrigin::start().await;
    let allowed = Arc::new(AtomicBool::new(true));
    let asked = Arc::new(AtomicUsize::new(0));
    let auth = switch_server(allowed.clone(), asked.clone()).await;
    // A stream ends in the last tenth of reauthorize_after_ms after it was allowed, so at
    // least 900 ms after the check that allowed it: past cache_ttl_ms, whose answer is then
    // stale and its reconnect is checked again (the relay's own clock orders the two).
    let relay = relay(
        &origin,
        ForwardAuthConfig {
            cache_ttl_ms: 100,
            reauthorize_after_ms: 1000,
            ..forward_to(auth)
        },
    )
    .await;
    let mut conn = relay.h2().await;
    let good = ("authorization", "Bearer good");

    let mut first = conn.subscribe("/events/a", &[good]).await;
    assert_eq!(first.status, 200);
    eventually("subscribed", || origin.open("a") == 1).await;
    origin.publish("a", "1", "one");
    assert_eq!(first.data(1).await, ["one"]);
    // The stream ends by itself (within the second), telling the client when to come back.
    first.until_end().await;
    assert!(String::from_utf8_lossy(&first.raw).ends_with("retry: 2000\n\n"));

    // Still allowed: the reconnect is authorized again and resumes where it left off.
    origin.publish("a", "2", "missed while away");
    eventually("the relay has event 2", || {
        relay.metrics.upstream.events_received.get() >= 2
    })
    .await;
    let checks = asked.load(Ordering::SeqCst);
    let mut second = conn
        .subscribe("/events/a", &[good, ("last-event-id", "1")])
        .await;
    assert_eq!(second.status, 200);
    assert_eq!(second.data(1).await, ["missed while away"]);
    assert_eq!(asked.load(Ordering::SeqCst), checks + 1, "authorized again");

    // Revoked: the open stream ends and its reconnect is refused.
    allowed.store(false, Ordering::SeqCst);
    second.until_end().await;
    let refused = conn
        .subscribe("/events/a", &[good, ("last-event-id", "2")])
        .await;
    assert_eq!(refused.status, 403);
    relay.stop().await;
}
