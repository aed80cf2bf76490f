//! Fan-out: one upstream subscription per topic, however many subscribers over h2 and
//! HTTP/1.1; every subscriber receives every event in order, byte-identical.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sse_relay::config::Config;
use support::{eventually, TestOrigin, TestRelay, WAIT};

/// No heartbeat comments within a test: the bytes are the events only.
fn quiet(c: &mut Config) {
    c.downstream.heartbeat_interval_ms = 600_000;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_upstream_for_300_h2_streams_and_20_http1_clients() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, quiet).await;
    let mut readers = Vec::new();
    for _ in 0..3 {
        let mut conn = relay.h2().await;
        for _ in 0..100 {
            readers.push(conn.subscribe("/events/a", &[]).await);
        }
    }
    for _ in 0..20 {
        readers.push(relay.h1().await.subscribe("/events/a", &[]).await);
    }
    assert!(readers.iter().all(|r| r.status == 200));
    assert_eq!(relay.metrics.hub.subscribers.get(), 320);
    eventually("the origin sees the subscription", || origin.open("a") == 1).await;

    for i in 1..=20 {
        origin.publish("a", &i.to_string(), &format!("event {i}"));
    }
    let expected: Vec<String> = (1..=20).map(|i| format!("event {i}")).collect();
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            tokio::spawn(async move {
                let data = r.data(20).await;
                (data, r.raw)
            })
        })
        .collect();
    let mut raws = Vec::new();
    for task in tasks {
        let (data, raw) = task.await.unwrap();
        assert_eq!(data, expected, "every event, in order");
        raws.push(raw);
    }
    assert!(raws.windows(2).all(|w| w[0] == w[1]), "identical bytes");
    assert_eq!(
        origin.requests("a").len(),
        1,
        "exactly one upstream subscription"
    );
    assert_eq!(origin.open("a"), 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_topics_get_two_upstream_subscriptions() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, quiet).await;
    let mut conn = relay.h2().await;
    let mut a = vec![
        conn.subscribe("/events/a", &[]).await,
        conn.subscribe("/events/a", &[]).await,
    ];
    let mut b = conn.subscribe("/events/b", &[]).await;
    eventually("both subscriptions", || {
        origin.open("a") == 1 && origin.open("b") == 1
    })
    .await;
    origin.publish("a", "1", "for a");
    origin.publish("b", "1", "for b");
    for r in &mut a {
        assert_eq!(r.data(1).await, ["for a"]);
    }
    assert_eq!(b.data(1).await, ["for b"]);
    assert_eq!(origin.requests("a").len(), 1);
    assert_eq!(origin.requests("b").len(), 1);
    assert_eq!(relay.metrics.hub.topics.get(), 2);
    relay.stop().await;
}

/// The streams of an h2 connection are served by the connection's own task: opening 50 more
/// SSE streams on it adds no tasks to the relay's runtime (hyper's default executor would add
/// one per stream), and every stream still gets every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_of_an_h2_connection_add_no_tasks() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, quiet).await;
    let mut conn = relay.h2().await;
    let mut readers = vec![conn.subscribe("/events/a", &[]).await];
    eventually("the origin sees the subscription", || origin.open("a") == 1).await;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();
    for _ in 0..50 {
        readers.push(conn.subscribe("/events/a", &[]).await);
    }
    assert!(readers.iter().all(|r| r.status == 200));
    assert_eq!(relay.metrics.hub.subscribers.get(), 51);
    let added = tasks().saturating_sub(before);
    assert!(added < 5, "50 streams added {added} tasks");

    origin.publish("a", "1", "one");
    origin.publish("a", "2", "two");
    for r in &mut readers {
        assert_eq!(r.data(2).await, ["one", "two"]);
    }
    relay.stop().await;
}

/// An origin that accepts subscriptions and never answers them; counts the connections.
async fn silent_origin() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(tcp);
        }
    });
    (format!("http://{addr}/sub/{{topic}}"), accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_headers_and_first_bytes_come_before_the_origin_answers() {
    let (upstream, asked) = silent_origin().await;
    let relay = TestRelay::start_with(&upstream, quiet).await;
    let mut conn = relay.h2().await;
    let mut r = tokio::time::timeout(WAIT, conn.subscribe("/events/a", &[]))
        .await
        .expect("the headers come without the origin's answer");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "text/event-stream");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["x-accel-buffering"], "no");
    // The origin never answers, so only a relay that does not wait for it sends anything:
    // first exactly the comment and the retry hint, nothing from upstream.
    r.until_raw_contains("retry: 2000\n\n").await;
    assert_eq!(
        String::from_utf8_lossy(&r.raw),
        ": sse-relay\n\nretry: 2000\n\n"
    );
    eventually("the relay asked the origin", || {
        asked.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(
        relay.metrics.upstream.open.get(),
        0,
        "no upstream stream yet"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_kb_event_passes_with_the_default_limits() {
    // An initial state snapshot: larger than the old 64 KiB default, as origins send them.
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, quiet).await;
    let mut r = relay.h2().await.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    let snapshot: String = (0..200 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    origin.publish("a", "1", &snapshot);
    origin.publish("a", "2", "after");
    let events = r.data(2).await;
    assert_eq!(
        events[0].len(),
        snapshot.len(),
        "the whole event, not an id-only frame"
    );
    assert!(events[0] == snapshot, "byte-identical");
    assert_eq!(events[1], "after");
    assert_eq!(relay.metrics.upstream.events_oversized.get(), 0);
    relay.stop().await;
}
