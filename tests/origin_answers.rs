//! The origin's answers keep their meaning through the relay (issue 11 item 2): refusals
//! (401/403/404/410) reach subscribers as the origin gave them and are remembered for
//! `topics.origin_error_ttl_ms`; 5xx/429 are retried behind a 200 stream, no sooner than the
//! origin's `Retry-After`; redirects are followed within the origin; a 200 that is not an event
//! stream becomes 502 after a bounded number of tries.

mod support;

use std::time::Duration;

use http_body_util::BodyExt;
use sse_relay::upstream::{Failure, Refusal};
use support::origin::Canned;
use support::{eventually, settle, TestOrigin, TestRelay};

/// Status and body text of a plain GET through the relay.
async fn answer(conn: &mut support::H2Client, path: &str) -> (u16, String) {
    let response = conn.get(path, &[("accept", "text/event-stream")]).await;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_reach_subscribers_with_the_origins_body_and_are_remembered() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    let mut conn = relay.h2().await;
    for (status, label) in [
        (401, Refusal::Unauthorized),
        (403, Refusal::Forbidden),
        (404, Refusal::NotFound),
        (410, Refusal::Gone),
    ] {
        let topic = format!("t{status}");
        origin.answer(&topic, Canned::status(status, "told by the origin"));
        let path = format!("/events/{topic}");
        assert_eq!(
            answer(&mut conn, &path).await,
            (status, "told by the origin".to_string()),
            "the first subscriber gets the origin's answer"
        );
        for _ in 0..5 {
            assert_eq!(answer(&mut conn, &path).await.0, status);
        }
        assert_eq!(
            origin.hits(&topic),
            1,
            "{status}: later subscribers within the ttl do not ask the origin again"
        );
        assert_eq!(relay.metrics.upstream.refusals.get(label).get(), 1);
    }
    assert_eq!(
        relay.metrics.hub.topics.get(),
        0,
        "refused topics are closed"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_after_streaming_ends_the_streams_and_answers_the_reconnect() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, support::fast_backoff).await;
    let mut conn = relay.h2().await;
    let mut r = conn.subscribe("/events/a", &[]).await;
    eventually("streaming", || origin.open("a") == 1).await;
    origin.publish("a", "1", "before");
    assert_eq!(r.data(1).await, ["before"]);
    origin.answer("a", Canned::status(410, "gone for good"));
    origin.cut("a", "");
    r.until_end().await;
    assert_eq!(
        answer(&mut conn, "/events/a").await,
        (410, "gone for good".to_string()),
        "the reconnecting browser meets the origin's 410 and stops"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_4xx_are_passed_on_but_408_and_429_are_retried() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, support::fast_backoff).await;
    let mut conn = relay.h2().await;
    origin.answer("bad", Canned::status(400, "bad topic"));
    assert_eq!(answer(&mut conn, "/events/bad").await.0, 400);
    for (topic, status) in [("slow", 408), ("busy", 429)] {
        origin.answer(topic, Canned::status(status, "later").times(2));
        let mut r = conn.subscribe(&format!("/events/{topic}"), &[]).await;
        assert_eq!(r.status, 200, "{status}: the subscriber keeps a stream");
        eventually("retried until it streams", || origin.open(topic) == 1).await;
        origin.publish(topic, "1", "made it");
        assert_eq!(r.data(1).await, ["made it"]);
    }
    relay.stop().await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_on_503_bounds_the_origin_requests() {
    const RETRY_AFTER: Duration = Duration::from_secs(5);
    let origin = TestOrigin::start().await;
    // The backoff alone would retry every 10–50 ms: hundreds of requests per window.
    let relay = TestRelay::start(&origin, support::fast_backoff).await;
    origin.answer(
        "a",
        Canned::status(503, "overloaded").header("retry-after", "5"),
    );
    let clock = support::hold_clock();
    let r = relay.h2().await.subscribe("/events/a", &[]).await;
    assert_eq!(
        r.status, 200,
        "subscribers ride an outage out on their stream"
    );
    eventually("the origin is asked", || origin.hits("a") == 1).await;
    for asked in 1..=3 {
        for _ in 0..5 {
            settle().await;
        }
        support::advance(RETRY_AFTER - Duration::from_millis(100)).await;
        settle().await;
        assert_eq!(
            origin.hits("a"),
            asked,
            "no request before Retry-After ({asked})"
        );
        // Step until the retry comes (within 200 ms of Retry-After), so the next round counts
        // from it.
        for _ in 0..20 {
            support::advance(Duration::from_millis(10)).await;
            settle().await;
            if origin.hits("a") > asked {
                break;
            }
        }
        assert_eq!(
            origin.hits("a"),
            asked + 1,
            "asked again once Retry-After passed"
        );
    }
    eventually("every answer counted", || {
        relay.metrics.upstream.failures.get(Failure::Status).get() == 4
    })
    .await;
    drop(clock);
    drop(r);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_within_the_origin_only() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    let mut conn = relay.h2().await;
    origin.answer(
        "moved",
        Canned::status(307, "").header("location", "/sub/target"),
    );
    let mut r = conn.subscribe("/events/moved", &[]).await;
    eventually("followed to the target", || origin.open("target") == 1).await;
    origin.publish("target", "1", "via redirect");
    assert_eq!(r.data(1).await, ["via redirect"]);

    origin.answer(
        "loop",
        Canned::status(302, "").header("location", "/sub/loop"),
    );
    assert_eq!(answer(&mut conn, "/events/loop").await.0, 502);
    assert_eq!(origin.hits("loop"), 6, "the first request and 5 redirects");

    let elsewhere = format!("http://localhost:{}/sub/x", origin.addr.port());
    origin.answer(
        "away",
        Canned::status(301, "").header("location", &elsewhere),
    );
    assert_eq!(answer(&mut conn, "/events/away").await.0, 502);
    assert_eq!(origin.hits("x"), 0, "another origin is never asked");
    assert_eq!(
        relay.metrics.upstream.failures.get(Failure::Redirect).get(),
        2
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_that_is_not_an_event_stream_becomes_502_after_bounded_tries() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, support::fast_backoff).await;
    let mut conn = relay.h2().await;
    origin.answer("page", Canned::status(200, "<html>login</html>"));
    assert_eq!(answer(&mut conn, "/events/page").await.0, 502);
    assert_eq!(origin.hits("page"), 3, "bounded tries");
    assert_eq!(
        relay
            .metrics
            .upstream
            .refusals
            .get(Refusal::BadGateway)
            .get(),
        1
    );
    // Once is a misroute ridden out: the subscriber gets its stream.
    origin.answer(
        "blip",
        Canned::status(200, "<html>deploying</html>").times(1),
    );
    let mut r = conn.subscribe("/events/blip", &[]).await;
    eventually("streaming after the blip", || origin.open("blip") == 1).await;
    origin.publish("blip", "1", "now a stream");
    assert_eq!(r.data(1).await, ["now a stream"]);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_other_than_200_and_204_is_final_like_a_4xx() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, support::fast_backoff).await;
    let mut conn = relay.h2().await;
    for (status, body) in [(205, ""), (210, "odd"), (299, "odder")] {
        let topic = format!("t{status}");
        origin.answer(&topic, Canned::status(status, body));
        let path = format!("/events/{topic}");
        let got = tokio::time::timeout(support::WAIT, answer(&mut conn, &path))
            .await
            .expect("answered, not held open as an outage");
        assert_eq!(
            got,
            (status, body.to_string()),
            "passed on as the origin gave it"
        );
        assert_eq!(origin.hits(&topic), 1, "{status} is not retried");
    }
    assert_eq!(relay.metrics.upstream.refusals.get(Refusal::Other).get(), 3);
    relay.stop().await;
}
