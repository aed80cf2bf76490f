//! Compressed streams of subscribers that fall out of the replay ring, judged by real decoders
//! (`tests/decoders/decode.py`: Python's zlib, the `zstandard` package): a stream whose small
//! h2 window is not read stalls, its cursor leaves the ring, and the lag policy either skips it
//! to the oldest event with a gap signal (`skip`) or ends it with the relay's `retry:` hint
//! (`disconnect`, whose end must be whole: gzip's trailer valid, zstd's frame ended).
//!
//! A stalled stream's position differs by design from an identity stream's (compressed, more
//! events fit its window), so it is judged frame by frame against a healthy identity stream
//! of the topic: the same opening, each event byte for byte, every jump announced by a gap
//! signal naming both sides. Healthy subscribers of every coding read along and must decode
//! to the identity stream byte for byte.
//!
//! Needs python3 with `pip install -r tests/decoders/requirements.txt`; run with
//! `cargo test --test acceptance_compression_lag -- --include-ignored`.

mod support;

#[path = "decoders/mod.rs"]
mod decoders;

use bytes::Bytes;
use decoders::group::{check_headers, noise, Group, ALL, GZIP, IDENTITY, ZSTD};
use decoders::judge::{judge, Judged};
use decoders::{require_decoders, Clients, Proto, Stream};
use sse_relay::config::Config;
use sse_relay::downstream::LagPolicy;
use support::origin::Canned;
use support::{eventually, H2Client, TestOrigin, TestRelay};

/// Events published while the stalled streams are not read.
const EVENTS: usize = 60;

/// A relay with an 8-event ring and `policy`, no heartbeats.
async fn relay(origin: &TestOrigin, policy: LagPolicy) -> TestRelay {
    TestRelay::start(origin, |c: &mut Config| {
        c.downstream.heartbeat_interval_ms = 600_000;
        c.downstream.lag_policy = policy;
        c.replay.max_events = 8;
        support::fast_backoff(c);
    })
    .await
}

/// Healthy subscribers of every kind and, for identity, gzip and zstd, a subscriber on a
/// connection of its own whose 4 KiB stream window fills and is not read; then
/// [`EVENTS`] events of 600 noisy characters (so a compressed window fills too), each read by
/// the healthy ones before the next. The stalled streams' connections are returned to be
/// kept open.
async fn stall(origin: &TestOrigin, relay: &TestRelay) -> (Group, Vec<Stream>, Vec<H2Client>) {
    let mut clients = Clients::new(relay);
    let mut healthy = Group::open(
        &mut clients,
        "healthy",
        "/events/a",
        &[],
        &[Proto::H2],
        &ALL,
    )
    .await;
    let (mut stalled, mut conns) = (Vec::new(), Vec::new());
    for ask in [IDENTITY, GZIP, ZSTD] {
        let mut conn = H2Client::connect(relay.addr, &relay.cert, Some(4096)).await;
        let headers: Vec<(&str, &str)> = ask
            .accept
            .map(|a| ("accept-encoding", a))
            .into_iter()
            .collect();
        let response = conn.get("/events/a", &headers).await;
        let stream = Stream::open(format!("stalled/{}", ask.name), response, false).await;
        check_headers(&stream, &ask);
        stalled.push(stream);
        conns.push(conn);
    }
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    for i in 1..=EVENTS {
        let frame = format!("id: {i}\ndata: {}\n\n", noise(i, 600));
        origin.publish_raw("a", Some(&i.to_string()), Bytes::from(frame));
        healthy.until_id(i).await;
    }
    (healthy, stalled, conns)
}

/// The origin closes the topic: the relay ends its streams.
fn end_topic(origin: &TestOrigin) {
    origin.answer("a", Canned::status(204, ""));
    origin.cut("a", "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs python3 with zstandard (tests/decoders/requirements.txt); run with --include-ignored (CI does)"]
async fn a_skip_lag_decodes_to_the_identity_events_with_the_gap_announced() {
    require_decoders();
    let origin = TestOrigin::start().await;
    let relay = relay(&origin, LagPolicy::Skip).await;
    let (mut healthy, mut stalled, _conns) = stall(&origin, &relay).await;
    for stream in &mut stalled {
        stream
            .until(&format!("event {EVENTS}"), |p| {
                decoders::group::last_id(p).as_deref() == Some(&EVENTS.to_string())
            })
            .await;
    }
    end_topic(&origin);
    healthy.until_end().await;
    for stream in &mut stalled {
        stream.until_end().await;
        let judged: Judged = judge(stream, &healthy.streams[0]);
        println!("{}: {judged:?}", stream.name);
        assert!(
            !judged.gaps.is_empty(),
            "{}: it lagged and skipped",
            stream.name
        );
        assert_eq!(judged.ids.first(), Some(&1), "{}", stream.name);
        assert_eq!(judged.ids.last(), Some(&(EVENTS as u64)), "{}", stream.name);
    }
    assert!(relay.metrics.downstream.subscribers_lagged.get() >= 3);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs python3 with zstandard (tests/decoders/requirements.txt); run with --include-ignored (CI does)"]
async fn a_lag_disconnect_ends_the_stream_whole_after_the_relays_hint() {
    require_decoders();
    let origin = TestOrigin::start().await;
    let relay = relay(&origin, LagPolicy::Disconnect).await;
    let (mut healthy, mut stalled, _conns) = stall(&origin, &relay).await;
    for stream in &mut stalled {
        stream.until_end().await;
        let judged = judge(stream, &healthy.streams[0]);
        println!("{}: {judged:?}", stream.name);
        let name = &stream.name;
        assert!(judged.gaps.is_empty(), "{name}: no gap before the end");
        assert!(judged.ends_with_retry, "{name}: the relay's hint last");
        assert_eq!(judged.retries, 1, "{name}");
        let got = judged.ids.len() as u64;
        assert!(
            got > 0 && got < EVENTS as u64,
            "{name}: a prefix: {:?}",
            judged.ids
        );
        assert_eq!(
            judged.ids,
            (1..=got).collect::<Vec<_>>(),
            "{name}: in order"
        );
    }
    assert_eq!(relay.metrics.downstream.subscribers_lagged.get(), 3);
    end_topic(&origin);
    healthy.until_end().await;
    relay.stop().await;
}
