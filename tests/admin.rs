//! The admin listener: Prometheus metrics, liveness and readiness probes, the topics document,
//! and the drain as an operator sees it (readiness first, then streams ended spread out).

mod support;

use support::{eventually, http_get, sample, TestOrigin, TestRelay};

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
    let relay = TestRelay::start(&origin, |c| {
        c.upstream.backoff_min_ms = 10;
        c.upstream.backoff_max_ms = 50;
    })
    .await;
    let _r = relay.h2().await.subscribe("/events/a", &[]).await;
    eventually("failing upstream", || {
        relay.metrics.upstream_failures.status.get() >= 2
    })
    .await;
    assert_eq!(http_get(relay.admin_addr, "/readyz").await.0, 200);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_and_stats_stream_are_served() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    let (status, page) = http_get(relay.admin_addr, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("new EventSource(\"stats\")"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no CDN"
    );
    relay.stop().await;
}
