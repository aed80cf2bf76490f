//! Nothing lost that could be kept: the upstream resumes with `Last-Event-ID` after a cut,
//! clients resume from the replay buffer or, past it, from the origin (catch-up), and an origin
//! outage is a 200 stream of heartbeats.

mod support;

use sse_relay::config::Config;
use sse_relay::edge::RejectReason;
use sse_relay::hub::CatchUpOutcome;
use sse_relay::upstream::Defect;
use sse_relay::upstream::Failure;
use support::{eventually, TestOrigin, TestRelay};

/// Reconnects within milliseconds, and no heartbeat comments within a test.
fn fast_reconnect(c: &mut Config) {
    c.upstream.backoff_min_ms = 10;
    c.upstream.backoff_max_ms = 50;
    c.downstream.heartbeat_interval_ms = 600_000;
}

fn numbered(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| format!("e{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_cut_mid_event_resumes_without_gap_duplicate_or_partial() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, fast_reconnect).await;
    let mut h2 = relay.h2().await.subscribe("/events/a", &[]).await;
    let mut h1 = relay.h1().await.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    for i in 1..=5 {
        origin.publish("a", &i.to_string(), &format!("e{i}"));
    }
    assert_eq!(h2.data(5).await, numbered(1..=5));
    // The origin breaks the stream in the middle of event 6.
    origin.cut("a", "id: 6\ndata: partial");
    eventually("the relay reconnects", || origin.requests("a").len() == 2).await;
    let resumed = &origin.requests("a")[1];
    assert_eq!(
        resumed.last_event_id.as_deref(),
        Some("5"),
        "Last-Event-ID upstream"
    );
    for i in 6..=10 {
        origin.publish("a", &i.to_string(), &format!("e{i}"));
    }
    assert_eq!(h2.data(5).await, numbered(6..=10));
    assert_eq!(h1.data(10).await, numbered(1..=10));
    assert!(!String::from_utf8_lossy(&h1.raw).contains("partial"));
    assert!(relay.metrics.upstream.failures.get(Failure::Stream).get() >= 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_outage_keeps_clients_on_200_with_heartbeats() {
    let origin = TestOrigin::start().await;
    origin.set_down(true);
    let relay = TestRelay::start(&origin, |c| {
        c.upstream.backoff_min_ms = 10;
        c.upstream.backoff_max_ms = 100;
        c.downstream.heartbeat_interval_ms = 50;
    })
    .await;
    let mut r = relay.h2().await.subscribe("/events/a", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "text/event-stream");
    eventually("the relay retries", || {
        relay.metrics.upstream.failures.get(Failure::Status).get() >= 3
    })
    .await;
    r.until_raw_contains(":\n\n:\n\n").await;
    assert!(relay.metrics.downstream.heartbeats.get() >= 2);
    origin.set_down(false);
    eventually("the relay reconnects", || origin.open("a") == 1).await;
    origin.publish("a", "1", "back");
    assert_eq!(r.data(1).await, ["back"]);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_resumes_from_last_event_id_header_or_query() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, fast_reconnect).await;
    let mut conn = relay.h2().await;
    let mut first = conn.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    for i in 1..=6 {
        origin.publish("a", &i.to_string(), &format!("e{i}"));
    }
    assert_eq!(first.data(6).await, numbered(1..=6));
    // The client went away after event 3 and comes back.
    let mut by_header = conn.subscribe("/events/a", &[("last-event-id", "3")]).await;
    let mut by_query = conn.subscribe("/events/a?lastEventId=3", &[]).await;
    let mut h1 = relay
        .h1()
        .await
        .subscribe("/events/a", &[("last-event-id", "3")])
        .await;
    origin.publish("a", "7", "e7");
    for r in [&mut by_header, &mut by_query, &mut h1] {
        assert_eq!(
            r.data(4).await,
            numbered(4..=7),
            "exactly the missed events, then live"
        );
    }
    assert_eq!(relay.metrics.hub.replay_hits.get(), 3);
    assert_eq!(
        origin.requests("a").len(),
        1,
        "resumes are served by the relay"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_subscriber_last_event_id_reaches_the_origin() {
    let origin = TestOrigin::start().await;
    for i in 1..=4 {
        origin.publish("a", &i.to_string(), &format!("e{i}"));
    }
    let relay = TestRelay::start(&origin, fast_reconnect).await;
    let mut r = relay
        .h2()
        .await
        .subscribe("/events/a", &[("last-event-id", "2")])
        .await;
    assert_eq!(
        r.data(2).await,
        numbered(3..=4),
        "the origin replays what the client missed"
    );
    assert_eq!(origin.requests("a")[0].last_event_id.as_deref(), Some("2"));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_never_reach_the_origin() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, fast_reconnect).await;
    let _r = relay
        .h2()
        .await
        .subscribe(
            "/events/a",
            &[
                ("cookie", "session=secret"),
                ("authorization", "Bearer secret"),
            ],
        )
        .await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    let seen = &origin.requests("a")[0].headers;
    assert!(seen.get("cookie").is_none());
    assert!(seen.get("authorization").is_none());
    assert_eq!(seen["accept"], "text/event-stream");
    assert_eq!(seen["cache-control"], "no-cache");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_event_is_dropped_counted_and_the_stream_goes_on() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        c.limits.max_event_bytes = 1024;
        c.downstream.heartbeat_interval_ms = 600_000;
    })
    .await;
    let mut r = relay.h2().await.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    origin.publish("a", "1", "small");
    origin.publish("a", "2", &"x".repeat(4096));
    origin.publish("a", "3", "after");
    assert_eq!(r.data(1).await, ["small"]);
    // The oversized event's id still passes (an id-only frame), so resumes stay exact.
    let id_only = r.next_event().await.unwrap();
    assert_eq!((id_only.id.as_deref(), id_only.data), (Some("2"), None));
    assert_eq!(r.data(1).await, ["after"]);
    assert_eq!(relay.metrics.upstream.events_oversized.get(), 1);
    assert_eq!(origin.requests("a").len(), 1, "no reconnect needed");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_id_the_origin_refuses_does_not_keep_the_topic_shut() {
    let origin = TestOrigin::start().await;
    origin.set_strict_ids(true);
    let relay = TestRelay::start(&origin, fast_reconnect).await;
    let mut r = relay
        .h2()
        .await
        .subscribe("/events/a", &[("last-event-id", "never-issued")])
        .await;
    eventually("the relay subscribes without the refused id", || {
        origin.open("a") == 1
    })
    .await;
    assert_eq!(origin.requests("a")[0].last_event_id, None);
    assert!(relay.metrics.upstream.failures.get(Failure::Refused).get() >= 1);
    origin.publish("a", "1", "e1");
    assert_eq!(r.data(1).await, ["e1"], "the subscriber gets live events");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ids_no_stream_can_carry_are_ignored_and_counted() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, fast_reconnect).await;
    let mut conn = relay.h2().await;
    let long = "x".repeat(2000);
    let mut first = conn.subscribe("/events/a?lastEventId=a%0Ab", &[]).await;
    let _second = conn
        .subscribe("/events/b", &[("last-event-id", long.as_str())])
        .await;
    let _third = conn.subscribe("/events/c?lastEventId=a%00b", &[]).await;
    eventually("all three topics open upstream", || {
        origin.open("a") + origin.open("b") + origin.open("c") == 3
    })
    .await;
    for topic in ["a", "b", "c"] {
        assert_eq!(origin.requests(topic)[0].last_event_id, None, "{topic}");
    }
    assert_eq!(
        relay
            .metrics
            .edge
            .rejected
            .get(RejectReason::LastEventId)
            .get(),
        3
    );
    origin.publish("a", "1", "e1");
    assert_eq!(first.data(1).await, ["e1"]);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_id_that_cannot_be_a_header_is_dropped_on_reconnect() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, fast_reconnect).await;
    let mut r = relay.h2().await.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    origin.publish_raw("a", None, "id: x\u{1}y\ndata: e1\n\n".into());
    assert_eq!(r.data(1).await, ["e1"]);
    origin.cut("a", "");
    eventually("the relay reconnects without the id", || {
        origin.requests("a").len() == 2 && origin.open("a") == 1
    })
    .await;
    assert_eq!(origin.requests("a")[1].last_event_id, None);
    assert_eq!(
        relay
            .metrics
            .upstream
            .failures
            .get(Failure::LastEventId)
            .get(),
        1
    );
    origin.publish("a", "2", "e2");
    assert_eq!(r.data(1).await, ["e2"]);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_fields_are_counted_and_the_stream_goes_on() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, fast_reconnect).await;
    let mut r = relay.h2().await.subscribe("/events/a", &[]).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    origin.publish_raw("a", None, "retry: soon\n\n".into());
    origin.publish_raw("a", None, "id: a\0b\ndata: e1\n\n".into());
    origin.publish_raw("a", None, bytes::Bytes::from_static(b"data: e\xff2\n\n"));
    origin.publish("a", "3", "e3");
    assert_eq!(r.data(3).await, ["e1", "e\u{fffd}2", "e3"]);
    use sse_relay::sse::Malformed;
    let m = &relay.metrics.upstream.malformed;
    let count = |d: Defect| m.get(d).get();
    assert_eq!(
        (
            count(Defect::Field(Malformed::BadRetry)),
            count(Defect::Field(Malformed::NulInId)),
            count(Defect::Field(Malformed::InvalidUtf8))
        ),
        (1, 1, 1)
    );
    assert_eq!(count(Defect::Truncated), 0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_ends_mid_event_is_counted_as_truncated() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A raw HTTP/1.1 origin: one whole event, then half of one, then it closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = tcp.read(&mut request).await;
                let _ = tcp
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                          connection: close\r\n\r\nid: 1\ndata: whole\n\nid: 2\ndata: cu",
                    )
                    .await;
            });
        }
    });
    let relay = TestRelay::start_with(&format!("http://{addr}/sub/{{topic}}"), |c| {
        c.upstream.backoff_min_ms = 50;
        c.upstream.backoff_max_ms = 100;
    })
    .await;
    let mut r = relay.h2().await.subscribe("/events/a", &[]).await;
    assert_eq!(r.data(1).await, ["whole"]);
    eventually("the cut event is counted", || {
        relay
            .metrics
            .upstream
            .malformed
            .get(Defect::Truncated)
            .get()
            >= 1
    })
    .await;
    assert!(!String::from_utf8_lossy(&r.raw).contains("cu\n"));
    relay.stop().await;
}

/// A relay with a 2-event ring whose topic `a` is open (the returned connection's live
/// stream read each of e1–e5 as it came: it never fell out of the ring).
async fn ring_of_two_past_five_events(origin: &TestOrigin) -> (TestRelay, support::H2Client) {
    let relay = TestRelay::start(origin, |c| {
        fast_reconnect(c);
        c.replay.max_events = 2;
    })
    .await;
    let mut conn = relay.h2().await;
    let mut live = conn.subscribe("/events/a", &[]).await;
    eventually("streaming", || origin.open("a") == 1).await;
    for i in 1..=5 {
        origin.publish("a", &i.to_string(), &format!("e{i}"));
        assert_eq!(live.data(1).await, [format!("e{i}")]);
    }
    (relay, conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_from_an_id_no_longer_buffered_is_caught_up_from_the_origin() {
    let origin = TestOrigin::start().await;
    let (relay, mut conn) = ring_of_two_past_five_events(&origin).await;
    // e1 left the ring long ago: the relay asks the origin once more, from e1.
    let mut resumed = conn.subscribe("/events/a", &[("last-event-id", "1")]).await;
    assert_eq!(
        resumed.data(4).await,
        numbered(2..=5),
        "no gap, no duplicate"
    );
    origin.publish("a", "6", "e6");
    assert_eq!(resumed.data(1).await, ["e6"], "then live");
    let requests = origin.requests("a");
    assert_eq!(
        requests.len(),
        2,
        "the topic's subscription and one catch-up"
    );
    assert_eq!(requests[1].last_event_id.as_deref(), Some("1"));
    let catch_ups = &relay.metrics.hub.catch_ups;
    assert_eq!(catch_ups.get(CatchUpOutcome::Joined).get(), 1);
    assert_eq!(relay.metrics.downstream.gaps.get(), 0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_ignores_last_event_id_yields_the_gap_signal() {
    let origin = TestOrigin::start().await;
    let (relay, mut conn) = ring_of_two_past_five_events(&origin).await;
    origin.set_ignore_last_event_id(true);
    let mut resumed = conn.subscribe("/events/a", &[("last-event-id", "1")]).await;
    eventually("the catch-up reached the origin", || {
        origin.requests("a").len() == 2
    })
    .await;
    // The origin sends the catch-up live events only; e6 reaches the ring too: not a replay.
    origin.publish("a", "6", "e6");
    let gap = resumed.next_event().await.unwrap();
    assert_eq!(gap.event_type.as_deref(), Some("sse-relay-gap"));
    assert_eq!(
        gap.id, None,
        "the gap signal does not move the client's last event id"
    );
    let data: serde_json::Value = serde_json::from_str(gap.data.as_deref().unwrap()).unwrap();
    assert_eq!(
        data,
        serde_json::json!({ "last_event_id": "1", "next_event_id": "5" })
    );
    assert_eq!(resumed.data(2).await, ["e5", "e6"]);
    assert_eq!(relay.metrics.downstream.gaps.get(), 1);
    let catch_ups = &relay.metrics.hub.catch_ups;
    assert_eq!(catch_ups.get(CatchUpOutcome::NoReplay).get(), 1);
    // An id still buffered resumes without a gap (and without asking the origin).
    let mut exact = conn.subscribe("/events/a", &[("last-event-id", "5")]).await;
    let next = exact.next_event().await.unwrap();
    assert_eq!((next.event_type, next.data.as_deref()), (None, Some("e6")));
    assert_eq!(origin.requests("a").len(), 2);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gap_signal_can_be_turned_off() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        fast_reconnect(c);
        c.replay.max_events = 2;
        c.downstream.gap_event = String::new();
        // Without catch-up, a resume from an id the ring lacks starts at its oldest event.
        c.replay.catch_up = false;
    })
    .await;
    let mut conn = relay.h2().await;
    let mut live = conn.subscribe("/events/a", &[]).await;
    eventually("streaming", || origin.open("a") == 1).await;
    for i in 1..=3 {
        origin.publish("a", &i.to_string(), &format!("e{i}"));
        assert_eq!(live.data(1).await, [format!("e{i}")]);
    }
    let mut resumed = conn.subscribe("/events/a", &[("last-event-id", "x")]).await;
    let first = resumed.next_event().await.unwrap();
    assert_eq!(
        (first.event_type, first.data.as_deref()),
        (None, Some("e2"))
    );
    assert_eq!(relay.metrics.downstream.gaps.get(), 1, "still counted");
    assert_eq!(origin.requests("a").len(), 1, "no catch-up request");
    relay.stop().await;
}
