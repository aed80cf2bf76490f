//! A slow subscriber hurts only itself: a stream whose h2 window is exhausted does not delay
//! the others, falls out of the replay ring, and is ended by the lag policy so its client
//! resumes with `Last-Event-ID`, then catches up from the origin what the ring no longer has.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sse_relay::hub::CatchUpOutcome;
use support::{eventually, H2Client, TestOrigin, TestRelay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_stream_does_not_delay_others_and_is_ended_by_lag_policy() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        c.replay.max_events = 16;
        c.downstream.heartbeat_interval_ms = 600_000;
    })
    .await;
    // One connection, a small stream window: a stream whose body is not read stalls after
    // 4 KiB, while its neighbours on the same connection keep flowing.
    let mut conn = H2Client::connect(relay.addr, &relay.cert, Some(4096)).await;
    let mut stalled = conn.subscribe("/events/a", &[]).await;
    let mut healthy = Vec::new();
    for _ in 0..3 {
        healthy.push(conn.subscribe("/events/a", &[]).await);
    }
    eventually("subscribed upstream", || origin.open("a") == 1).await;

    let payload = "x".repeat(200);
    let total = 200;
    let expected: Vec<String> = (1..=total).map(|i| format!("{i} {payload}")).collect();
    // Healthy readers read as events come; the publisher goes in steps of 8 events (half the
    // ring), waiting for the healthy ones, never for the stalled one.
    let progress = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = healthy
        .into_iter()
        .map(|mut r| {
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..total {
                    got.push(
                        r.next_event()
                            .await
                            .expect("healthy stream stays open")
                            .data
                            .unwrap(),
                    );
                    progress.fetch_add(1, Ordering::SeqCst);
                }
                got
            })
        })
        .collect();
    for (i, data) in expected.iter().enumerate() {
        origin.publish("a", &(i + 1).to_string(), data);
        if (i + 1) % 8 == 0 {
            let want = 3 * (i + 1);
            eventually("healthy readers keep up", || {
                progress.load(Ordering::SeqCst) >= want
            })
            .await;
        }
    }
    for r in readers {
        assert_eq!(
            r.await.unwrap(),
            expected,
            "healthy subscribers get everything"
        );
    }
    assert_eq!(
        relay.metrics.downstream.subscribers_lagged.get(),
        0,
        "not yet polled"
    );

    // The stalled client reads again: it gets what fitted in its window, then its stream ends
    // (it fell out of the 16-event ring), with a retry hint, and no gap before the end.
    let mut got = Vec::new();
    while let Some(event) = stalled.next_event().await {
        got.push(event.data.unwrap());
    }
    assert!(stalled.ended);
    assert!(
        !got.is_empty() && got.len() < total,
        "got {} events",
        got.len()
    );
    assert_eq!(got[..], expected[..got.len()], "a prefix, in order, no gap");
    assert!(String::from_utf8_lossy(&stalled.raw).ends_with("retry: 2000\n\n"));
    assert_eq!(relay.metrics.downstream.subscribers_lagged.get(), 1);

    // Its client resumes with the last id it saw. That event has left the 16-event ring, so
    // the relay asks the origin to catch it up (a replay miss, one joined catch-up): it gets
    // every event after it, in order, exactly once, then the ring's.
    let last_seen = got.len().to_string();
    let mut resumed = conn
        .subscribe("/events/a", &[("last-event-id", &last_seen)])
        .await;
    assert_eq!(
        resumed.data(total - got.len()).await,
        expected[got.len()..].to_vec()
    );
    assert_eq!(relay.metrics.hub.replay_misses.get(), 1);
    let joined = relay.metrics.hub.catch_ups.get(CatchUpOutcome::Joined);
    assert_eq!(joined.get(), 1);
    assert_eq!(relay.metrics.downstream.gaps.get(), 0);
    relay.stop().await;
}
