//! An origin's compressed event stream (RFC 9110 §8.4 `Content-Encoding`): the relay offers
//! the codings it decodes, decodes gzip, deflate, br and zstd streams as each flushed event
//! arrives (the shared subscription and a catch-up alike), counts a coding it cannot read or a
//! stream that does not decode under `content_encoding` and retries it as an outage, and leaves
//! the passthrough's bytes and `Accept-Encoding` alone.

mod support;

use http_body_util::BodyExt;
use sse_relay::config::HeaderSetting;
use sse_relay::hub::CatchUpOutcome;
use sse_relay::upstream::{Failure, ACCEPT_ENCODING};
use support::origin::Canned;
use support::{eventually, TestOrigin, TestRelay};

/// `n` events' data of `coding`'s topic.
fn events(coding: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{coding} {i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_streams_reach_h2_and_http1_subscribers() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    for coding in ["gzip", "br", "zstd", "deflate"] {
        origin.set_encoding(Some(coding));
        let path = format!("/events/{coding}");
        let mut h2 = relay.h2().await.subscribe(&path, &[]).await;
        let mut h1 = relay.h1().await.subscribe(&path, &[]).await;
        eventually("subscribed upstream", || origin.open(coding) == 1).await;
        for (i, data) in events(coding, 3).iter().enumerate() {
            origin.publish(coding, &(i + 1).to_string(), data);
        }
        assert_eq!(h2.data(3).await, events(coding, 3), "h2, {coding}");
        assert_eq!(h1.data(3).await, events(coding, 3), "HTTP/1.1, {coding}");
        let request = &origin.requests(coding)[0];
        assert_eq!(request.headers["accept-encoding"], ACCEPT_ENCODING);
    }
    assert_eq!(relay.metrics.upstream.events_received.get(), 12);
    relay.stop().await;
}

/// An origin that flushes its compressor after each event: each event reaches the subscriber
/// from the bytes that carry it, while the origin's stream stays open (nothing waits for more
/// compressed input or for the stream's end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_event_reaches_the_subscriber_while_the_origin_stream_stays_open() {
    let origin = TestOrigin::start().await;
    origin.set_encoding(Some("gzip"));
    let relay = TestRelay::start(&origin, |_| {}).await;
    let mut r = relay.h2().await.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    for i in 1..=5 {
        origin.publish("a", &i.to_string(), &format!("flushed {i}"));
        assert_eq!(r.data(1).await, [format!("flushed {i}")]);
        assert_eq!(origin.open("a"), 1, "the origin's stream is still open");
    }
    assert_eq!(origin.requests("a").len(), 1);
    relay.stop().await;
}

/// A gzip stream that does not decode is never parsed: the attempt is counted and the relay
/// asks again. (What decoded before the corruption is delivered: `src/upstream/decode/`'s
/// tests, where the chunks are known.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_gzip_stream_is_counted_and_retried() {
    let origin = TestOrigin::start().await;
    origin.set_encoding(Some("gzip"));
    let relay = TestRelay::start(&origin, support::fast_backoff).await;
    // A gzip header (RFC 1952 §2.3), then a deflate block of the reserved type 3 (RFC 1951
    // §3.2.3) and what would parse as an event if read as text.
    let mut corrupt = b"\x1f\x8b\x08\0\0\0\0\0\0\xff".to_vec();
    corrupt.extend(b"\x07\ndata: garbage\n\n");
    origin.answer(
        "a",
        Canned::status(200, "")
            .header("content-type", "text/event-stream")
            .header("content-encoding", "gzip")
            .body(corrupt)
            .times(1),
    );
    let mut r = relay.h2().await.subscribe("/events/a", &[]).await;
    assert_eq!(r.status, 200);
    eventually("retried after the corrupt stream", || origin.open("a") == 1).await;
    let failures = &relay.metrics.upstream.failures;
    assert_eq!(failures.get(Failure::ContentEncoding).get(), 1);
    origin.publish("a", "1", "after");
    assert_eq!(
        r.data(1).await,
        ["after"],
        "nothing parsed from the garbage"
    );
    assert_eq!(relay.metrics.upstream.events_received.get(), 1);
    relay.stop().await;
}

/// `compress` (RFC 9110 §8.4.1.1) and an unknown token: an outage behind the subscribers'
/// stream, counted and retried; the body is never parsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coding_the_relay_cannot_read_is_counted_retried_and_never_parsed() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, support::fast_backoff).await;
    let mut conn = relay.h2().await;
    for (topic, coding) in [("compress", "compress"), ("unknown", "gzip, snappy")] {
        origin.answer(
            topic,
            Canned::status(200, "id: 1\ndata: not decoded\n\n")
                .header("content-type", "text/event-stream")
                .header("content-encoding", coding)
                .times(2),
        );
        let mut r = conn.subscribe(&format!("/events/{topic}"), &[]).await;
        assert_eq!(r.status, 200, "{coding}: subscribers ride it out");
        eventually("retried until it streams", || origin.open(topic) == 1).await;
        origin.publish(topic, "2", "readable");
        assert_eq!(r.data(1).await, ["readable"], "{coding}: never parsed");
    }
    let failures = &relay.metrics.upstream.failures;
    assert_eq!(failures.get(Failure::ContentEncoding).get(), 4);
    assert_eq!(relay.metrics.upstream.events_received.get(), 2);
    relay.stop().await;
}

/// A resume older than the ring is caught up from a gzip origin (as in resume.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_from_a_gzip_origin_replays_what_the_ring_lacks() {
    let origin = TestOrigin::start().await;
    origin.set_encoding(Some("gzip"));
    let relay = TestRelay::start(&origin, |c| c.replay.max_events = 2).await;
    let mut conn = relay.h2().await;
    let mut live = conn.subscribe("/events/a", &[]).await;
    eventually("streaming", || origin.open("a") == 1).await;
    for i in 1..=5 {
        origin.publish("a", &i.to_string(), &format!("e{i}"));
        assert_eq!(live.data(1).await, [format!("e{i}")]);
    }
    let mut resumed = conn.subscribe("/events/a", &[("last-event-id", "1")]).await;
    assert_eq!(resumed.data(4).await, ["e2", "e3", "e4", "e5"]);
    let requests = origin.requests("a");
    assert_eq!(requests.len(), 2, "the subscription and one catch-up");
    assert_eq!(requests[1].last_event_id.as_deref(), Some("1"));
    assert_eq!(requests[1].headers["accept-encoding"], ACCEPT_ENCODING);
    let joined = relay.metrics.hub.catch_ups.get(CatchUpOutcome::Joined);
    assert_eq!(joined.get(), 1);
    relay.stop().await;
}

/// A catch-up answered in a coding the relay cannot read is never parsed: the resuming
/// subscriber gets the gap signal, then the ring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_in_an_unreadable_coding_ends_in_the_gap_signal() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| c.replay.max_events = 2).await;
    let mut conn = relay.h2().await;
    let mut live = conn.subscribe("/events/a", &[]).await;
    eventually("streaming", || origin.open("a") == 1).await;
    for i in 1..=5 {
        origin.publish("a", &i.to_string(), &format!("e{i}"));
        assert_eq!(live.data(1).await, [format!("e{i}")]);
    }
    origin.answer(
        "a",
        Canned::status(
            200,
            "id: 2\ndata: e2\n\nid: 3\ndata: e3\n\nid: 4\ndata: e4\n\n",
        )
        .header("content-type", "text/event-stream")
        .header("content-encoding", "compress")
        .times(1),
    );
    let mut resumed = conn.subscribe("/events/a", &[("last-event-id", "1")]).await;
    let gap = resumed.next_event().await.unwrap();
    assert_eq!(gap.event_type.as_deref(), Some("sse-relay-gap"));
    assert_eq!(resumed.data(2).await, ["e4", "e5"]);
    assert_eq!(origin.hits("a"), 2, "the subscription and one catch-up");
    let failed = relay.metrics.hub.catch_ups.get(CatchUpOutcome::Failed);
    assert_eq!(failed.get(), 1);
    relay.stop().await;
}

/// The passthrough is no SSE subscription: the client's own `Accept-Encoding` reaches the
/// origin and the origin's compressed bytes reach the client as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_passthrough_forwards_accept_encoding_and_compressed_bytes_unchanged() {
    let origin = TestOrigin::start().await;
    origin.set_encoding(Some("gzip"));
    let upstream = format!("http://{}", origin.addr);
    let relay = TestRelay::start(&origin, |c| c.passthrough.upstream = Some(upstream)).await;
    let mut conn = relay.h2().await;
    let response = conn.get("/sub/p", &[("accept-encoding", "br")]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first[..2], [0x1f, 0x8b], "gzip's magic bytes, not decoded");
    assert_eq!(origin.requests("p")[0].headers["accept-encoding"], "br");
    drop((body, conn));
    relay.stop().await;
}

/// A route may ask its origin for `identity` (or any codings) in its own headers: they replace
/// what the relay offers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routes_accept_encoding_replaces_the_relays() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        let identity = HeaderSetting::Literal("identity".into());
        let headers = &mut c.routes[0].upstream_headers;
        headers.insert("Accept-Encoding".into(), identity);
    })
    .await;
    let mut r = relay.h2().await.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    origin.publish("a", "1", "plain");
    assert_eq!(r.data(1).await, ["plain"]);
    let request = &origin.requests("a")[0];
    let accept: Vec<_> = request.headers.get_all("accept-encoding").iter().collect();
    assert_eq!(accept, ["identity"], "sent once, the route's");
    relay.stop().await;
}
