//! Topic lifecycle: the upstream subscription opens with the first subscriber, survives a
//! subscriber returning within the idle grace period, and closes after it; drain ends streams.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use support::{eventually, http_get, TestOrigin, TestRelay};

#[tokio::test(start_paused = true)]
async fn upstream_closes_after_grace_and_is_reused_within_it() {
    const GRACE: Duration = Duration::from_millis(1500);
    // Time moves only where this test advances it.
    let clock = support::hold_clock();
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| c.topics.idle_grace_ms = 1500).await;
    let mut conn = relay.h2().await;
    let first = conn.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    drop(first); // RST_STREAM: the subscriber leaves
    eventually("subscriber detached", || {
        relay.metrics.hub.subscribers.get() == 0
    })
    .await;
    support::advance(GRACE * 3 / 4).await;
    assert_eq!(origin.open("a"), 1, "kept open during the grace period");
    let mut again = conn.subscribe("/events/a", &[]).await;
    origin.publish("a", "1", "still flowing");
    assert_eq!(again.data(1).await, ["still flowing"]);
    assert_eq!(origin.requests("a").len(), 1, "reused, not reopened");
    drop(again);
    eventually("detached again", || {
        relay.metrics.hub.subscribers.get() == 0
    })
    .await;
    support::advance(GRACE * 3 / 4).await;
    assert_eq!(
        origin.open("a"),
        1,
        "the grace counts from the second leave"
    );
    support::advance(GRACE / 2).await;
    eventually("upstream closed after the grace period", || {
        origin.open("a") == 0
    })
    .await;
    assert_eq!(relay.metrics.hub.topics.get(), 0);
    // A later subscriber opens a fresh upstream subscription.
    let _later = conn.subscribe("/events/a", &[]).await;
    eventually("reopened", || origin.open("a") == 1).await;
    assert_eq!(origin.requests("a").len(), 2);
    drop(clock);
    relay.stop().await;
}

#[tokio::test(start_paused = true)]
async fn idle_grace_counts_from_the_last_leave() {
    const GRACE: Duration = Duration::from_secs(2);
    // Time moves only where this test advances it.
    let clock = support::hold_clock();
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| c.topics.idle_grace_ms = 2000).await;
    let mut conn = relay.h2().await;
    let first = conn.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    drop(first);
    eventually("detached", || relay.metrics.hub.subscribers.get() == 0).await;
    // Halfway through the first leave's grace, a visitor comes and goes.
    support::advance(GRACE / 2).await;
    let visitor = conn.subscribe("/events/a", &[]).await;
    eventually("visitor attached", || {
        relay.metrics.hub.subscribers.get() == 1
    })
    .await;
    drop(visitor);
    eventually("visitor detached", || {
        relay.metrics.hub.subscribers.get() == 0
    })
    .await;
    // Past the first leave's grace (by a quarter), within the visitor's (by three quarters).
    support::advance(GRACE * 3 / 4).await;
    let (_, topics) = http_get(relay.admin_addr, "/topics").await;
    let doc: serde_json::Value = serde_json::from_str(&topics).unwrap();
    assert_eq!(
        doc["topics"][0]["label"], "/events/a",
        "the grace restarted at the visitor's leave: {doc}"
    );
    assert_eq!(relay.metrics.hub.topics.get(), 1);
    assert_eq!(origin.open("a"), 1);
    assert_eq!(
        origin.requests("a").len(),
        1,
        "never closed, never reopened"
    );
    // Past the visitor's grace: the upstream subscription closes.
    support::advance(GRACE * 2).await;
    eventually("closed after the visitor's grace", || origin.open("a") == 0).await;
    assert_eq!(relay.metrics.hub.topics.get(), 0);
    drop(clock);
    relay.stop().await;
}

#[tokio::test(start_paused = true)]
async fn always_on_topics_open_at_start_fill_their_buffer_and_never_retire() {
    // Time moves only where this test advances it.
    let clock = support::hold_clock();
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        c.topics.always_on = vec!["/events/a".into()];
        c.topics.idle_grace_ms = 100;
    })
    .await;
    eventually("opened without a subscriber", || origin.open("a") == 1).await;
    origin.publish("a", "1", "e1");
    origin.publish("a", "2", "e2");
    eventually("buffered", || {
        relay.metrics.upstream.events_received.get() == 2
    })
    .await;
    let mut r = relay
        .h2()
        .await
        .subscribe("/events/a", &[("last-event-id", "1")])
        .await;
    assert_eq!(
        r.data(1).await,
        ["e2"],
        "served from the warm replay buffer"
    );
    drop(r);
    eventually("detached", || relay.metrics.hub.subscribers.get() == 0).await;
    support::advance(Duration::from_millis(500)).await;
    assert_eq!(origin.open("a"), 1, "still open five idle graces later");
    assert_eq!(origin.requests("a").len(), 1);
    drop(clock);
    relay.stop().await;
}

/// An origin that answers every subscription `204 No Content` (the topic is over); counts them.
async fn no_content_origin() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async {
                        let mut r = http::Response::new(http_body_util::Empty::<Bytes>::new());
                        *r.status_mut() = http::StatusCode::NO_CONTENT;
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}/sub/{{topic}}"), asked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_204_closes_the_topic_and_ends_streams_cleanly() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, support::fast_backoff).await;
    let mut conn = relay.h2().await;
    let mut r = conn.subscribe("/events/a", &[]).await;
    eventually("streaming", || origin.open("a") == 1).await;
    origin.answer("a", support::origin::Canned::status(204, ""));
    origin.cut("a", "");
    r.until_end().await;
    assert!(r.ended, "the stream ends cleanly");
    eventually("topic removed", || relay.metrics.hub.topics.get() == 0).await;
    // A browser reconnecting is told 204 as well (so it stops), without asking the origin again.
    assert_eq!(conn.get("/events/a", &[]).await.status(), 204);
    assert_eq!(origin.hits("a"), 2, "the stream, then the 204");
    // Another topic is unaffected.
    let _b = conn.subscribe("/events/b", &[]).await;
    eventually("b streams", || origin.open("b") == 1).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_closed_topic_is_asked_again_after_the_ttl() {
    let (upstream, asked) = no_content_origin().await;
    let relay = TestRelay::start_with(&upstream, |c| c.topics.origin_closed_ttl_ms = 300).await;
    let mut conn = relay.h2().await;
    assert_eq!(
        conn.get("/events/a", &[]).await.status(),
        204,
        "as the origin said"
    );
    assert_eq!(conn.get("/events/a", &[]).await.status(), 204);
    assert_eq!(asked.load(Ordering::SeqCst), 1, "remembered within the ttl");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(conn.get("/events/a", &[]).await.status(), 204);
    assert_eq!(asked.load(Ordering::SeqCst), 2, "asked again after it");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_ends_every_stream_with_a_retry_hint() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| c.downstream.retry_hint_ms = 3456).await;
    let mut conn = relay.h2().await;
    let mut h2 = [
        conn.subscribe("/events/a", &[]).await,
        conn.subscribe("/events/b", &[]).await,
    ];
    let mut h1 = relay.h1().await.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    let addr = relay.addr;
    relay.stop().await;
    for r in h2.iter_mut().chain([&mut h1]) {
        r.until_end().await;
        let raw = String::from_utf8_lossy(&r.raw);
        assert!(
            raw.ends_with("retry: 3456\n\n"),
            "ends with the retry hint: {raw:?}"
        );
    }
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
    eventually("upstream closed", || origin.open("a") == 0).await;
}
