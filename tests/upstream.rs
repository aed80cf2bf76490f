//! The upstream side: https origins over h2 (ALPN) trusted through `extra_ca_file`, the
//! read-idle timeout, and origins that cannot be reached (the origin's answers: origin_answers.rs).

mod support;

use std::time::Duration;

use sse_relay::upstream::Failure;
use support::origin::Canned;
use support::{eventually, settle, TestOrigin, TestRelay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_origin_is_reached_over_h2_with_the_extra_ca() {
    let dir = support::temp_dir("origin-tls");
    let origin = TestOrigin::start_tls(&dir).await;
    let ca = dir.join("cert.pem");
    let relay = TestRelay::start_with(&origin.tls_template(), |c| {
        c.upstream.extra_ca_file = Some(ca.clone());
    })
    .await;
    let mut r = relay.h2().await.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    origin.publish("a", "1", "over tls");
    assert_eq!(r.data(1).await, ["over tls"]);
    assert_eq!(
        origin.requests("a")[0].version,
        http::Version::HTTP_2,
        "h2 by ALPN"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_https_origin_is_refused_and_retried() {
    let dir = support::temp_dir("origin-untrusted");
    let origin = TestOrigin::start_tls(&dir).await;
    let relay = TestRelay::start_with(&origin.tls_template(), |c| {
        c.upstream.backoff_min_ms = 10;
        c.upstream.backoff_max_ms = 50;
    })
    .await;
    let r = relay.h2().await.subscribe("/events/a", &[]).await;
    assert_eq!(r.status, 200, "the client still gets a stream");
    eventually("connect failures counted", || {
        relay.metrics.upstream.failures.get(Failure::Connect).get() >= 2
    })
    .await;
    assert!(
        origin.requests("a").is_empty(),
        "no request without a trusted certificate"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_origin_is_reconnected_after_the_read_idle_timeout() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        c.upstream.read_idle_timeout_ms = 200;
        c.upstream.backoff_min_ms = 10;
        c.upstream.backoff_max_ms = 50;
    })
    .await;
    let mut r = relay.h2().await.subscribe("/events/a", &[]).await;
    eventually("reconnected after silence", || {
        origin.requests("a").len() >= 2
    })
    .await;
    assert!(
        relay
            .metrics
            .upstream
            .failures
            .get(Failure::IdleTimeout)
            .get()
            >= 1
    );
    origin.publish("a", "1", "after idle");
    assert_eq!(r.data(1).await, ["after idle"]);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_id_over_1_kib_is_not_sent_back_upstream() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, support::fast_backoff).await;
    let mut r = relay.h2().await.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    let huge = "x".repeat(900 * 1024);
    let frame = format!("id: {huge}\ndata: a 900 KB id\n\n");
    origin.publish_raw("a", None, bytes::Bytes::from(frame));
    assert_eq!(r.data(1).await, ["a 900 KB id"]);
    origin.cut("a", "");
    eventually("reconnected", || origin.requests("a").len() == 2).await;
    assert_eq!(
        origin.requests("a")[1].last_event_id,
        None,
        "an id over 1 KiB is not sent back as Last-Event-ID"
    );
    assert!(
        relay
            .metrics
            .upstream
            .failures
            .get(Failure::LastEventId)
            .get()
            >= 1,
        "and it is counted"
    );
    relay.stop().await;
}

/// An origin that answers `200 text/event-stream` with `retry: 0` and one event, then closes:
/// its streams never stay up for the backoff's ceiling, so the backoff never restarts and the
/// relay's requests thin out as the backoff's window widens (full jitter: each delay uniform
/// between `backoff_min_ms` and the window, which doubles up to `backoff_max_ms`).
#[tokio::test(start_paused = true)]
async fn a_flapping_origin_is_asked_as_the_backoff_says() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        c.upstream.backoff_min_ms = 100;
        c.upstream.backoff_max_ms = 2_000;
    })
    .await;
    origin.answer(
        "a",
        Canned::status(200, "retry: 0\ndata: flap\n\n").header("content-type", "text/event-stream"),
    );
    let clock = support::hold_clock();
    let r = relay.h2().await.subscribe("/events/a", &[]).await;
    assert_eq!(r.status, 200);
    eventually("the origin is asked", || origin.hits("a") >= 1).await;
    for _ in 0..100 {
        support::advance(Duration::from_millis(100)).await;
        settle().await;
        settle().await;
    }
    // A backoff restarted after every event asks every 100 ms: 100 requests in these 10 s. One
    // that widens to 2 s waits 1.05 s on average once there: about 15 requests.
    let hits = origin.hits("a");
    assert!(hits <= 40, "{hits} requests in 10 s");
    drop(clock);
    drop(r);
    relay.stop().await;
}

/// An origin that answers `retry: 5000` and one event, then closes: the relay asks it again no
/// sooner than 5 s, though the backoff's ceiling is 2 s (the origin's `retry:` is the floor of
/// each delay, WHATWG HTML §9.2.6), and within the floor plus the jitter above it (at most
/// `backoff_max_ms - backoff_min_ms`).
#[tokio::test(start_paused = true)]
async fn the_origin_is_asked_again_no_sooner_than_its_retry_even_over_the_backoff_max() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        c.upstream.backoff_min_ms = 100;
        c.upstream.backoff_max_ms = 2_000;
    })
    .await;
    origin.answer(
        "a",
        Canned::status(200, "retry: 5000\ndata: flap\n\n")
            .header("content-type", "text/event-stream"),
    );
    let clock = support::hold_clock();
    let r = relay.h2().await.subscribe("/events/a", &[]).await;
    assert_eq!(r.status, 200);
    eventually("the origin is asked", || origin.hits("a") == 1).await;
    for _ in 0..49 {
        support::advance(Duration::from_millis(100)).await;
        settle().await;
    }
    assert_eq!(origin.hits("a"), 1, "not asked again within 4.9 s");
    support::advance(Duration::from_millis(2_100)).await;
    eventually("asked again by 7 s", || origin.hits("a") == 2).await;
    drop(clock);
    drop(r);
    relay.stop().await;
}
