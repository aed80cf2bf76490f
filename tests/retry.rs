//! The origin's `retry:` reaches the browser (WHATWG HTML §9.2.6: the `retry` field sets the
//! reconnection time): every stream starts with the origin's current value, a change reaches
//! live subscribers, and the relay's own hint (`downstream.retry_hint_ms`) goes only where the
//! origin set none and right before the relay itself ends a stream (drain, lag policy).

mod support;

use support::{eventually, H2Client, TestOrigin, TestRelay};

/// What a stream starts with when the topic's origin said `retry: {ms}`.
fn opening(ms: u64) -> String {
    format!(": sse-relay\n\nretry: {ms}\n\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_start_with_the_origins_retry_not_the_relays_hint() {
    let origin = TestOrigin::start().await;
    origin.start_streams_with("a", "retry: 3000\n\n");
    let relay = TestRelay::start(&origin, |_| {}).await;
    let mut conn = relay.h2().await;
    // The first subscriber opens the topic: its stream may start before the origin answered
    // (with the relay's hint), and the origin's value follows.
    let mut first = conn.subscribe("/events/a", &[]).await;
    first.until_raw_contains("retry: 3000\n\n").await;
    // Later ones, on h2 and HTTP/1.1, start with the origin's value.
    let mut second = conn.subscribe("/events/a", &[]).await;
    let mut third = relay.h1().await.subscribe("/events/a", &[]).await;
    for r in [&mut second, &mut third] {
        assert_eq!(r.first_bytes(opening(3000).len()).await, opening(3000));
    }
    origin.publish("a", "1", "e1");
    for r in [&mut first, &mut second, &mut third] {
        assert_eq!(r.data(1).await, ["e1"]);
    }
    for r in [&second, &third] {
        let raw = String::from_utf8_lossy(&r.raw);
        assert!(!raw.contains("retry: 2000"), "no relay hint: {raw:?}");
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_the_origins_retry_reaches_live_subscribers_without_a_following_event() {
    let origin = TestOrigin::start().await;
    origin.start_streams_with("a", "retry: 3000\n\n");
    let relay = TestRelay::start(&origin, |_| {}).await;
    let mut conn = relay.h2().await;
    let mut first = conn.subscribe("/events/a", &[]).await;
    first.until_raw_contains("retry: 3000\n\n").await;
    let mut second = relay.h1().await.subscribe("/events/a", &[]).await;
    assert_eq!(second.first_bytes(opening(3000).len()).await, opening(3000));
    origin.publish_raw("a", None, bytes::Bytes::from_static(b"retry: 5000\n\n"));
    for r in [&mut first, &mut second] {
        r.until_raw_contains("retry: 5000\n\n").await;
    }
    let mut third = conn.subscribe("/events/a", &[]).await;
    assert_eq!(third.first_bytes(opening(5000).len()).await, opening(5000));
    // In order with the events: an event after the change comes after it.
    origin.publish("a", "1", "e1");
    for r in [&mut first, &mut second, &mut third] {
        assert_eq!(r.data(1).await, ["e1"]);
        let raw = String::from_utf8_lossy(&r.raw);
        assert!(
            raw.ends_with("retry: 5000\n\nid: 1\ndata: e1\n\n"),
            "{raw:?}"
        );
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_origin_retry_streams_start_with_the_relays_hint() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    let mut conn = relay.h2().await;
    let mut first = conn.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    origin.publish("a", "1", "e1");
    assert_eq!(first.data(1).await, ["e1"]);
    let mut second = conn.subscribe("/events/a", &[]).await;
    assert_eq!(second.first_bytes(opening(2000).len()).await, opening(2000));
    origin.publish("a", "2", "e2");
    assert_eq!(second.data(1).await, ["e2"]);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_ends_streams_with_the_relays_hint_after_the_origins_retry() {
    let origin = TestOrigin::start().await;
    origin.start_streams_with("a", "retry: 7000\n\n");
    let relay = TestRelay::start(&origin, |c| c.downstream.retry_hint_ms = 3456).await;
    let mut first = relay.h2().await.subscribe("/events/a", &[]).await;
    first.until_raw_contains("retry: 7000\n\n").await;
    let mut second = relay.h1().await.subscribe("/events/a", &[]).await;
    assert_eq!(second.first_bytes(opening(7000).len()).await, opening(7000));
    relay.stop().await;
    for r in [&mut first, &mut second] {
        r.until_end().await;
        let raw = String::from_utf8_lossy(&r.raw);
        assert!(raw.ends_with("retry: 3456\n\n"), "the hint last: {raw:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_policy_ends_a_stream_with_the_relays_hint_after_the_origins_retry() {
    let origin = TestOrigin::start().await;
    origin.start_streams_with("a", "retry: 7000\n\n");
    let relay = TestRelay::start(&origin, |c| {
        c.replay.max_events = 4;
        c.downstream.heartbeat_interval_ms = 600_000;
    })
    .await;
    let mut reader = relay.h2().await.subscribe("/events/a", &[]).await;
    reader.until_raw_contains("retry: 7000\n\n").await;
    // A stream whose 4 KiB window fills and is not read falls out of the 4-event ring.
    let mut conn = H2Client::connect(relay.addr, &relay.cert, Some(4096)).await;
    let mut stalled = conn.subscribe("/events/a", &[]).await;
    assert_eq!(
        stalled.first_bytes(opening(7000).len()).await,
        opening(7000)
    );
    // One at a time, read by the reader as they come (the ring holds 4), never by the stalled.
    let payload = "x".repeat(200);
    for i in 1..=40 {
        origin.publish("a", &i.to_string(), &payload);
        assert_eq!(reader.data(1).await, std::slice::from_ref(&payload));
    }
    stalled.until_end().await;
    let raw = String::from_utf8_lossy(&stalled.raw);
    assert!(raw.ends_with("retry: 2000\n\n"), "the hint last: {raw:?}");
    assert_eq!(relay.metrics.downstream.subscribers_lagged.get(), 1);
    relay.stop().await;
}
