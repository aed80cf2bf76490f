//! The admin listener: Prometheus metrics, liveness and readiness probes, the topics document,
//! the status page with its `/stats` stream, and the drain as an operator sees it there
//! (readiness off while streams still flow, then draining, then the listener stops).

mod support;

use std::time::Duration;

use sse_relay::upstream::Failure;
use support::{eventually, http_get, sample, EventReader, TestOrigin, TestRelay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_metrics_and_topics_reflect_live_traffic() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    let admin = relay.admin_addr;
    assert_eq!(http_get(admin, "/healthz").await.0, 200);
    assert_eq!(http_get(admin, "/readyz").await.0, 200);

    let mut conn = relay.h2().await;
    let mut a = conn.subscribe("/events/a", &[]).await;
    let mut b = conn.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    // One event at a time, so each is its own hand-off (waiting events would share one).
    origin.publish("a", "41", "x");
    a.data(1).await;
    b.data(1).await;
    origin.publish("a", "42", "y");
    a.data(1).await;
    b.data(1).await;

    let (status, text) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(sample(&text, "sse_relay_subscribers"), Some(2.0));
    assert_eq!(
        sample(&text, "sse_relay_topic_subscribers{topic=\"/events/a\"}"),
        Some(2.0)
    );
    assert_eq!(sample(&text, "sse_relay_events_received_total"), Some(2.0));
    assert_eq!(sample(&text, "sse_relay_events_delivered_total"), Some(4.0));
    assert_eq!(
        sample(&text, "sse_relay_fanout_latency_seconds_count"),
        Some(4.0)
    );
    assert_eq!(
        sample(&text, "sse_relay_upstream_subscriptions_open"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "sse_relay_connections_accepted_total{protocol=\"h2\"}"
        ),
        Some(1.0)
    );
    assert!(text.contains("sse_relay_subscriber_lag_events_bucket"));

    let (status, json) = http_get(admin, "/topics").await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let topic = &doc["topics"][0];
    assert_eq!(topic["label"], "/events/a");
    assert_eq!(topic["subscribers"], 2);
    assert_eq!(topic["upstream"], "streaming");
    assert_eq!(topic["last_event_id"], "42");
    assert_eq!(topic["ring_events"], 2);
    assert_eq!(doc["ready"], true);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_stays_up_when_the_origin_is_down() {
    let origin = TestOrigin::start().await;
    origin.set_down(true);
    let relay = TestRelay::start(&origin, support::fast_backoff).await;
    let _r = relay.h2().await.subscribe("/events/a", &[]).await;
    eventually("failing upstream", || {
        relay.metrics.upstream.failures.get(Failure::Status).get() >= 2
    })
    .await;
    assert_eq!(http_get(relay.admin_addr, "/readyz").await.0, 200);
    relay.stop().await;
}

/// The next `stats` event of a `/stats` stream, as JSON; None once the stream ended.
async fn next_stats(stats: &mut EventReader) -> Option<serde_json::Value> {
    let event = stats.next_event().await?;
    assert_eq!(event.event_type.as_deref(), Some("stats"));
    Some(serde_json::from_str(&event.data.expect("stats carry data")).expect("stats are JSON"))
}

#[tokio::test(start_paused = true)]
async fn status_page_and_stats_stream_are_served() {
    // `/stats` sends one event per second: the test moves time a second at a time.
    const TICK: Duration = Duration::from_secs(1);
    let clock = support::hold_clock();
    let origin = TestOrigin::start().await;
    let mut relay = TestRelay::start(&origin, |c| {
        c.server.drain_delay_ms = 3_000;
        c.server.drain_window_ms = 3_000;
        c.server.drain_timeout_ms = 10_000;
    })
    .await;
    let (status, page) = http_get(relay.admin_addr, "/").await;
    assert_eq!(status, 200);
    for stream in ["\"stats\"", "\"history/stream\"", "\"tail?topic=\""] {
        assert!(page.contains(stream), "the page reads {stream}");
    }
    // The SVG namespace is a name the charts are created in, never fetched.
    let fetched = page.replace("http://www.w3.org/2000/svg", "");
    assert!(
        !fetched.contains("http://") && !fetched.contains("https://"),
        "no CDN"
    );

    let mut subscriber = relay.h2().await.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    let mut stats = support::http_stream(relay.admin_addr, "/stats").await;
    assert_eq!(stats.status, 200);
    assert_eq!(stats.headers["content-type"], "text/event-stream");
    let serving = next_stats(&mut stats).await.expect("a first event at once");
    assert_eq!(serving["ready"], true);
    assert_eq!(serving["draining"], false);
    assert_eq!(serving["subscribers"], 1);
    assert_eq!(serving["topics"][0]["label"], "/events/a");

    // The shutdown signal: readiness off at once, streams still served for the drain delay.
    relay.signal_shutdown();
    eventually("readiness off", || relay.metrics.hub.draining.get() == 1).await;
    assert_eq!(http_get(relay.admin_addr, "/readyz").await.0, 503);
    assert_eq!(http_get(relay.admin_addr, "/healthz").await.0, 200);
    support::advance(TICK).await;
    let delaying = next_stats(&mut stats)
        .await
        .expect("served during the delay");
    assert_eq!(delaying["ready"], false, "{delaying}");
    assert_eq!(
        delaying["draining"], false,
        "streams are not ended yet: {delaying}"
    );
    origin.publish("a", "1", "during the delay");
    assert_eq!(subscriber.data(1).await, ["during the delay"]);

    // Then the streams are ended over the window, and the admin listener stops last.
    let mut seen = Vec::new();
    loop {
        assert!(seen.len() < 20, "/stats never ended: {seen:?}");
        support::advance(TICK).await;
        match next_stats(&mut stats).await {
            Some(doc) => seen.push(doc),
            None => break,
        }
    }
    assert!(seen.iter().all(|doc| doc["ready"] == false), "{seen:?}");
    let first_draining = seen.iter().position(|doc| doc["draining"] == true);
    let first_draining = first_draining.expect("/stats showed the drain");
    assert!(
        seen[first_draining..]
            .iter()
            .all(|doc| doc["draining"] == true),
        "draining stays on: {seen:?}"
    );
    subscriber.until_end().await;
    assert!(String::from_utf8_lossy(&subscriber.raw).ends_with("retry: 2000\n\n"));
    drop(clock);
    relay.stop().await;
}
