//! Compressed event streams judged by real decoders: Python's zlib for gzip and the
//! `zstandard` package (libzstd) for zstd (`tests/decoders/decode.py`), fed each chunk as
//! hyper received it (no decompression in the client), h2 and HTTP/1.1 over TLS, against a
//! relay in this process in front of the in-process origin.
//!
//! On every topic, subscribers in the same position ask for identity, gzip, zstd and what a
//! browser asks (gzip, the relay's default first) at once. Each chunk must decode at once to whole frames
//! (every event is flushed as it comes: the test waits for each event before the next), each
//! stream must decode to the identity stream byte for byte, and a stream the relay ends must
//! end whole (gzip's trailer, CRC-32 and length, checked by zlib; zstd's last frame ended).
//! Where per-subscriber bytes differ by design (a lag), each frame is judged against the
//! identity stream's frames instead.
//!
//! Needs python3 with `pip install -r tests/decoders/requirements.txt`; run with
//! `cargo test --test acceptance_compression -- --include-ignored`.

mod support;

#[path = "decoders/mod.rs"]
mod decoders;

use std::time::Duration;

use bytes::Bytes;
use decoders::group::{check_headers, last_id, origin_frame, Group, ALL, ZSTD};
use decoders::{require_decoders, Clients, Proto, Stream};
use http_body_util::{BodyExt, Full};
use sse_relay::compress::Coding;
use sse_relay::config::{Config, StreamRouteConfig};
use sse_relay::edge::streams::OnDisconnect;
use sse_relay::hub::CatchUpOutcome;
use support::answers::AnswerOrigin;
use support::origin::Canned;
use support::{eventually, TestOrigin, TestRelay};

const BOTH: [Proto; 2] = [Proto::H2, Proto::Http1];

/// No heartbeats during a test that does not ask for them; reconnects within milliseconds.
fn quiet(c: &mut Config) {
    c.downstream.heartbeat_interval_ms = 600_000;
    support::fast_backoff(c);
}

/// Segments of `events` events (and no other bound within a test).
fn segments_of(c: &mut Config, events: u32) {
    c.compression.segment_events = events;
    c.compression.segment_bytes = 1 << 20;
    c.compression.segment_ms = 3_600_000;
}

/// Publishes the origin's event `i` on `topic`.
fn publish(origin: &TestOrigin, topic: &str, i: usize) {
    let id = i.to_string();
    origin.publish_raw(topic, Some(&id), Bytes::from(origin_frame(i)));
}

/// Publishes events `range` one by one, each read by every group before the next.
async fn step_through(
    origin: &TestOrigin,
    topic: &str,
    range: std::ops::RangeInclusive<usize>,
    groups: &mut [&mut Group],
) {
    for i in range {
        groups.iter_mut().for_each(|g| g.mark());
        publish(origin, topic, i);
        for group in groups.iter_mut() {
            group.until_id(i).await;
        }
    }
}

/// The origin closes `topic` (its stream ends, the next request is answered 204): the relay
/// ends the topic's streams.
fn end_topic(origin: &TestOrigin, topic: &str) {
    origin.answer(topic, Canned::status(204, ""));
    origin.cut(topic, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs python3 with zstandard (tests/decoders/requirements.txt); run with --include-ignored (CI does)"]
async fn subscribers_from_the_start_decode_to_the_identity_stream_and_share_each_events_bytes() {
    require_decoders();
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        quiet(c);
        segments_of(c, 8);
    })
    .await;
    let mut clients = Clients::new(&relay);
    let mut group = Group::open(&mut clients, "start", "/events/a", &[], &BOTH, &ALL).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    group
        .until("the opening", |p| p.ends_with(b"retry: 2000\n\n"))
        .await;

    step_through(&origin, "a", 1..=30, &mut [&mut group]).await;
    group.mark();
    end_topic(&origin, "a");
    group.until_end().await;
    assert_eq!(origin.requests("a").len(), 1, "one upstream subscription");

    // Compressed once per topic and coding: every subscriber of a coding got the same bytes
    // for each event (step k is event k + 1), and the same end.
    for coding in ["gzip", "zstd"] {
        let streams = group.of(coding);
        assert!(streams.len() >= 2, "{coding}: subscribers to compare");
        for event in 1..=30 {
            let first = streams[0].step_bytes(event - 1);
            for other in &streams[1..] {
                assert_eq!(
                    other.step_bytes(event - 1),
                    first,
                    "{coding}: event {event}: {} and {} got the same compressed bytes",
                    other.name,
                    streams[0].name
                );
            }
        }
    }
    // The relay's count of them: every byte on the wire, mostly shared.
    let compressed = &relay.metrics.downstream.compressed;
    for (k, coding) in Coding::ALL.into_iter().enumerate() {
        let streams = group.of(coding.token());
        let wire: usize = streams.iter().flat_map(|s| &s.chunks).map(Bytes::len).sum();
        let (shared, own) = (
            compressed.shared_bytes[k].get(),
            compressed.own_bytes[k].get(),
        );
        assert_eq!(
            compressed.streams[k].get(),
            streams.len() as u64,
            "{coding:?}"
        );
        assert_eq!(
            shared + own,
            wire as u64,
            "{coding:?}: shared {shared} + own {own}"
        );
        assert!(shared > own, "{coding:?}: shared {shared}, own {own}");
    }
    report(&group);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs python3 with zstandard (tests/decoders/requirements.txt); run with --include-ignored (CI does)"]
async fn a_subscriber_joining_mid_segment_decodes_and_shares_the_bytes_from_the_next_boundary() {
    require_decoders();
    let origin = TestOrigin::start().await;
    let mut relay = TestRelay::start(&origin, |c| {
        quiet(c);
        segments_of(c, 4);
    })
    .await;
    let mut clients = Clients::new(&relay);
    let mut early = Group::open(&mut clients, "early", "/events/a", &[], &BOTH, &ALL).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    early.mark();
    // Segments: events 1–4, 5–8, 9–12. The late ones join after event 2.
    step_through(&origin, "a", 1..=2, &mut [&mut early]).await;
    let mut late = Group::open(&mut clients, "late", "/events/a", &[], &BOTH, &ALL).await;
    late.until("the opening", |p| p.ends_with(b"retry: 2000\n\n"))
        .await;
    late.mark();
    // Step k of `late` is event k + 2; step k of `early` is event k.
    step_through(&origin, "a", 3..=12, &mut [&mut early, &mut late]).await;

    for coding in ["gzip", "zstd"] {
        for (e, l) in early.of(coding).into_iter().zip(late.of(coding)) {
            let (at_boundary, early_bytes) = (l.step_bytes(3), e.step_bytes(5));
            assert!(
                early_bytes.ends_with(&at_boundary),
                "{coding}: from event 5, the segment's first, {} sends the shared bytes {} \
                 sends (a zstd stream in step ends its frame first)",
                l.name,
                e.name
            );
            for event in 6..=12 {
                assert_eq!(
                    l.step_bytes(event - 2),
                    e.step_bytes(event),
                    "{coding}: event {event}: {} shares {}'s bytes",
                    l.name,
                    e.name
                );
            }
        }
    }
    // Ended by the drain: the relay's farewell `retry:`, compressed on its own, then the end.
    relay.signal_shutdown();
    early.until_end().await;
    late.until_end().await;
    for stream in early.streams.iter().chain(&late.streams) {
        assert!(
            stream.text().ends_with("retry: 2000\n\n"),
            "{}",
            stream.name
        );
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs python3 with zstandard (tests/decoders/requirements.txt); run with --include-ignored (CI does)"]
async fn resumes_from_the_ring_and_through_catch_up_decode_to_what_an_identity_resume_gets() {
    require_decoders();
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        quiet(c);
        segments_of(c, 4);
        c.replay.max_events = 4;
    })
    .await;
    let mut clients = Clients::new(&relay);
    let mut live = Group::open(&mut clients, "live", "/events/a", &[], &[Proto::H2], &ALL).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    step_through(&origin, "a", 1..=10, &mut [&mut live]).await;

    // The ring holds 7–10: a resume from 8 is replayed from it; one from 3 is caught up
    // from the origin (4–6), then the ring.
    let from_ring = [("last-event-id", "8")];
    let mut ring = Group::open(&mut clients, "ring", "/events/a", &from_ring, &BOTH, &ALL).await;
    let from_origin = [("last-event-id", "3")];
    let mut caught = Group::open(
        &mut clients,
        "catch-up",
        "/events/a",
        &from_origin,
        &BOTH,
        &ALL,
    )
    .await;
    ring.until_id(10).await;
    caught.until_id(10).await;
    for (group, first_id) in [(&ring, "id: 9\n"), (&caught, "id: 4\n")] {
        let text = group.streams[0].text();
        let first = text.find("id: ").expect("replayed events");
        assert!(
            text[first..].starts_with(first_id),
            "{}: {text}",
            group.streams[0].name
        );
    }
    assert!(
        relay
            .metrics
            .hub
            .catch_ups
            .get(CatchUpOutcome::Joined)
            .get()
            >= 1
    );
    step_through(
        &origin,
        "a",
        11..=20,
        &mut [&mut live, &mut ring, &mut caught],
    )
    .await;
    end_topic(&origin, "a");
    for group in [&mut live, &mut ring, &mut caught] {
        group.until_end().await;
    }
    relay.stop().await;
}

#[tokio::test(start_paused = true)]
#[ignore = "acceptance: needs python3 with zstandard (tests/decoders/requirements.txt); run with --include-ignored (CI does)"]
async fn heartbeats_on_an_idle_topic_decode_at_once_and_events_after_them_are_shared_again() {
    const BEAT: Duration = Duration::from_millis(1000);
    require_decoders();
    // Time moves only where this test advances it.
    let clock = support::hold_clock();
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        c.downstream.heartbeat_interval_ms = 1000;
        segments_of(c, 1000);
    })
    .await;
    let mut clients = Clients::new(&relay);
    let mut group = Group::open(&mut clients, "idle", "/events/a", &[], &BOTH, &ALL).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    group
        .until("the opening", |p| p.ends_with(b"retry: 2000\n\n"))
        .await;
    let beats = |p: &[u8]| {
        decoders::frames(&String::from_utf8_lossy(p))
            .iter()
            .filter(|f| *f == ":\n\n")
            .count()
    };
    let mut expected = 0;
    for round in 1..=3 {
        for _ in 0..2 {
            support::advance(BEAT).await;
            expected += 1;
            group
                .until(&format!("heartbeat {expected}"), |p| beats(p) == expected)
                .await;
        }
        // An event after heartbeats: every subscriber of a coding is in step again (a tick
        // starts a new segment), so they share its bytes.
        group.mark();
        publish(&origin, "a", round);
        group.until_id(round).await;
        for coding in ["gzip", "zstd"] {
            let streams = group.of(coding);
            let last = streams[0].marks.len() - 1;
            for other in &streams[1..] {
                assert_eq!(
                    other.step_bytes(last),
                    streams[0].step_bytes(last),
                    "{coding}: event {round} after heartbeats: {} and {} share its bytes",
                    other.name,
                    streams[0].name
                );
            }
        }
        // One tick passes with the event read: no heartbeat owed.
        support::advance(BEAT).await;
    }
    report(&group);
    drop(clock);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs python3 with zstandard (tests/decoders/requirements.txt); run with --include-ignored (CI does)"]
async fn a_gap_signal_decodes_like_the_identity_streams() {
    require_decoders();
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        quiet(c);
        c.replay.max_events = 2;
    })
    .await;
    let mut clients = Clients::new(&relay);
    let mut live = Group::open(&mut clients, "live", "/events/a", &[], &[Proto::H2], &ALL).await;
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    step_through(&origin, "a", 1..=5, &mut [&mut live]).await;
    // The origin ignores Last-Event-ID: a resume from 1 (not in the ring) cannot be caught up.
    origin.set_ignore_last_event_id(true);
    let from = [("last-event-id", "1")];
    let mut resumed = Group::open(&mut clients, "gap", "/events/a", &from, &BOTH, &ALL).await;
    eventually("the catch-up reached the origin", || {
        origin.requests("a").len() == 2
    })
    .await;
    step_through(&origin, "a", 6..=8, &mut [&mut live, &mut resumed]).await;
    let text = resumed.streams[0].text();
    assert!(
        text.contains("event: sse-relay-gap\n"),
        "the identity resume got the gap signal: {text}"
    );
    assert_eq!(relay.metrics.downstream.gaps.get(), 2 * ALL.len() as u64);
    end_topic(&origin, "a");
    live.until_end().await;
    resumed.until_end().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs python3 with zstandard (tests/decoders/requirements.txt); run with --include-ignored (CI does)"]
async fn a_request_streams_answer_and_its_resumes_decode_to_the_identity_streams() {
    const COMPLETIONS: &str = "/v1/chat/completions";
    require_decoders();
    let origin = AnswerOrigin::start().await;
    let upstream = origin.url(COMPLETIONS);
    let relay = TestRelay::start_with("http://127.0.0.1:9/sub/{topic}", |c| {
        quiet(c);
        c.stream_routes.push(StreamRouteConfig {
            path: COMPLETIONS.into(),
            upstream,
            resume_path: "/streams/{stream}".into(),
            protocol: Default::default(),
            on_disconnect: OnDisconnect::Detach,
            auth: Default::default(),
        });
    })
    .await;
    // The POST asks for zstd alone.
    let request = http::Request::post(format!("https://localhost{COMPLETIONS}"))
        .header("content-type", "application/json")
        .header("accept-encoding", ZSTD.accept.unwrap_or_default())
        .body(Full::new(Bytes::from_static(b"{\"stream\":true}")).boxed())
        .unwrap();
    let response = relay.h2().await.send_streaming(request).await;
    let mut started = Stream::open("POST/zstd".into(), response, true).await;
    check_headers(&started, &ZSTD);
    let location = started
        .header("content-location")
        .expect("a kept stream names its resume URL")
        .to_string();
    let stream = location.trim_start_matches("/streams/").to_string();
    let answer = origin.next_answer().await;
    let chunk = |n: usize| format!("data: {}\n\n", origin_frame(n).replace('\n', " "));
    for n in 1..=2 {
        answer.send(&chunk(n)).await;
    }
    let second = format!("{stream}.2");
    started
        .until("chunk 2", |p| last_id(p).as_deref() == Some(&second))
        .await;

    // Viewers of the whole answer, and resumes after its first chunk, of every kind.
    let mut clients = Clients::new(&relay);
    let mut whole = Group::open(&mut clients, "whole", &location, &[], &BOTH, &ALL).await;
    let after_first = [("last-event-id", format!("{stream}.1"))];
    let after_first: Vec<(&str, &str)> =
        after_first.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut resumed = Group::open(
        &mut clients,
        "resumed",
        &location,
        &after_first,
        &BOTH,
        &ALL,
    )
    .await;
    for n in 2..=12 {
        if n > 2 {
            answer.send(&chunk(n)).await;
        }
        let id = format!("{stream}.{n}");
        started
            .until(&id, |p| last_id(p).as_deref() == Some(&id))
            .await;
        whole.until_id(&id).await;
        resumed.until_id(&id).await;
    }
    answer.end();
    started.until_end().await;
    whole.until_end().await;
    resumed.until_end().await;
    let events = |s: &Stream| -> Vec<String> {
        s.frames()
            .into_iter()
            .filter(|f| f.starts_with("id: "))
            .collect()
    };
    assert_eq!(
        events(&started),
        events(&whole.streams[0]),
        "the POST's compressed answer carries the identity viewer's events byte for byte"
    );
    relay.stop().await;
}

/// Prints each compressed stream's size against the identity stream's.
fn report(group: &Group) {
    let identity = group.streams[0].plain.len();
    for stream in &group.streams {
        let wire: usize = stream.chunks.iter().map(Bytes::len).sum();
        println!(
            "{}: {wire} bytes on the wire for {identity} ({:?}){}",
            stream.name,
            stream.coding,
            stream
                .end
                .as_ref()
                .map(|e| format!(", {}", e.detail))
                .unwrap_or_default()
        );
    }
}
