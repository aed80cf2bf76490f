//! The admin listener's window on the relay: `/history` (the last minutes, a sample a second)
//! and `/tail` (a topic's events, live), over real sockets: a tail shows the ring's recent
//! events then live ones in order, is counted apart from subscribers and keeps no topic open;
//! a per-user topic is tailed only with `admin.tail_private`.

mod per_user;
mod support;

use per_user::{bearer_of, per_user_relay, per_user_relay_with};
use support::{eventually, http_get, http_stream, sample, EventReader, TestOrigin, TestRelay};

/// `/tail?topic=` for the topic shown as `key`.
fn tail_path(key: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
    format!("/tail?topic={encoded}")
}

/// The keys `/topics` shows.
async fn shown_keys(relay: &TestRelay) -> Vec<String> {
    let (status, json) = http_get(relay.admin_addr, "/topics").await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    doc["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap().to_owned())
        .collect()
}

/// The next `tail` event's JSON (heartbeats pass unseen).
async fn next_tail(tail: &mut EventReader) -> serde_json::Value {
    let event = tail.next_event().await.expect("a tail event");
    assert_eq!(event.event_type.as_deref(), Some("tail"), "{event:?}");
    serde_json::from_str(&event.data.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_shows_recent_then_live_events_in_order_and_is_no_subscriber() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    let mut client = relay.h2().await.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    for n in 1..=3 {
        origin.publish("a", &n.to_string(), &format!("event {n}"));
    }
    assert_eq!(client.data(3).await.len(), 3);
    let key = shown_keys(&relay).await.remove(0);

    let mut tail = http_stream(relay.admin_addr, &tail_path(&key)).await;
    assert_eq!(tail.status, 200);
    assert_eq!(tail.headers["content-type"], "text/event-stream");
    for n in 1..=3 {
        let shown = next_tail(&mut tail).await;
        assert_eq!(shown["id"], n.to_string());
        assert_eq!(shown["type"], "message");
        assert_eq!(shown["data"], format!("event {n}"));
        assert_eq!(shown["data_bytes"], 7);
        assert_eq!(shown["size"], format!("id: {n}\ndata: event {n}\n\n").len());
    }
    eventually("the tail counted", || relay.metrics.admin.tails.get() == 1).await;
    let delivered = relay.metrics.downstream.events_delivered.get();
    let long = "x".repeat(1000);
    origin.publish("a", "4", &long);
    let shown = next_tail(&mut tail).await;
    assert_eq!(shown["id"], "4");
    assert_eq!(
        shown["data"].as_str().unwrap().len(),
        256,
        "the first bytes"
    );
    assert_eq!(shown["data_bytes"], 1000);
    client.data(1).await;

    let (_, metrics) = http_get(relay.admin_addr, "/metrics").await;
    assert_eq!(sample(&metrics, "sse_relay_admin_tails"), Some(1.0));
    assert_eq!(
        sample(&metrics, "sse_relay_subscribers"),
        Some(1.0),
        "a tail is none"
    );
    assert_eq!(
        sample(&metrics, "sse_relay_admin_tail_events_total"),
        Some(4.0)
    );
    assert_eq!(
        relay.metrics.downstream.events_delivered.get(),
        delivered + 1,
        "a tail's events are not deliveries"
    );
    drop(tail);
    eventually("the tail gone", || relay.metrics.admin.tails.get() == 0).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_keeps_no_topic_open_and_ends_with_it() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| c.topics.idle_grace_ms = 50).await;
    let client = relay.h2().await.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    let key = shown_keys(&relay).await.remove(0);
    let mut tail = http_stream(relay.admin_addr, &tail_path(&key)).await;
    eventually("the tail counted", || relay.metrics.admin.tails.get() == 1).await;
    drop(client);
    let closed = tail.next_event().await.expect("the tail says why it ends");
    assert_eq!(closed.event_type.as_deref(), Some("closed"));
    assert_eq!(closed.data.as_deref(), Some("{\"reason\":\"retired\"}"));
    tail.until_end().await;
    eventually(
        "the topic retired, tail or not: its upstream closed",
        || origin.open("a") == 0,
    )
    .await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_user_topic_is_tailed_only_with_tail_private() {
    let origin = TestOrigin::start().await;
    let alice = bearer_of("alice@example.com");
    for allowed in [false, true] {
        let relay = if allowed {
            per_user_relay_with(&origin, |c| c.admin.tail_private = true).await
        } else {
            per_user_relay(&origin).await
        };
        let _a = relay
            .h2()
            .await
            .subscribe("/me/events", &[("authorization", &alice)])
            .await;
        eventually("subscribed upstream", || {
            origin.open("user-alice%40example.com") == 1
        })
        .await;
        let (_, json) = http_get(relay.admin_addr, "/topics").await;
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        let row = &doc["topics"][0];
        assert_eq!(row["private"], true, "{row}");
        assert_eq!(row["tailable"], allowed, "{row}");
        let key = row["key"].as_str().unwrap();
        assert!(!key.contains("alice"), "listed redacted: {key}");
        if allowed {
            let tail = http_stream(relay.admin_addr, &tail_path(key)).await;
            assert_eq!(tail.status, 200);
        } else {
            let (status, why) = http_get(relay.admin_addr, &tail_path(key)).await;
            assert_eq!(status, 403, "{why}");
            assert!(why.contains("admin.tail_private"), "{why}");
        }
        let (status, _) = http_get(relay.admin_addr, &tail_path("0 http://nowhere/")).await;
        assert_eq!(status, 404, "a topic not open");
        relay.stop().await;
        eventually("closed upstream", || {
            origin.open("user-alice%40example.com") == 0
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_holds_a_sample_a_second_with_the_relays_figures() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    let _client = relay.h2().await.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    let mut stream = http_stream(relay.admin_addr, "/history/stream").await;
    let first = stream.next_event().await.expect("the history at once");
    assert_eq!(first.event_type.as_deref(), Some("history"));
    let doc: serde_json::Value = serde_json::from_str(&first.data.unwrap()).unwrap();
    assert_eq!(doc["interval_ms"], 1000);
    assert_eq!(doc["capacity"], 900);
    assert_eq!(doc["failure_reasons"][0], "connect");
    // The next samples, as they are taken: the subscriber and its topic in each.
    let mut last_ms = None;
    for _ in 0..2 {
        let event = stream.next_event().await.expect("a sample");
        assert_eq!(event.event_type.as_deref(), Some("sample"));
        let s: serde_json::Value = serde_json::from_str(&event.data.unwrap()).unwrap();
        assert_eq!(s["subscribers"], 1, "{s}");
        assert_eq!(s["topics"], 1, "{s}");
        assert_eq!(s["connections_h2"], 1, "{s}");
        assert!(s["rss_bytes"].as_u64().unwrap() > 1 << 20, "{s}");
        let ms = s["unix_ms"].as_u64().unwrap();
        if let Some(before) = last_ms {
            assert_eq!(ms - before, 1000, "a second apart");
        }
        last_ms = Some(ms);
    }
    let (status, json) = http_get(relay.admin_addr, "/history").await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(doc["samples"].as_array().unwrap().len() >= 2, "{doc}");
    relay.stop().await;
}
