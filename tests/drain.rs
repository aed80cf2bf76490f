//! Drain, don't drop: on shutdown readiness fails at once while streams keep flowing for the
//! drain delay; then streams end spread over the drain window, each after a `retry:` hint, and
//! their clients resume on another replica without losing an event.

mod support;

use std::time::Duration;

use sse_relay::config::Config;
use support::{eventually, http_get, TestOrigin, TestRelay};

/// A drain with a delay and a window short enough for a test in real time.
fn drain(c: &mut Config) {
    c.server.drain_delay_ms = 300;
    c.server.drain_window_ms = 600;
    c.server.drain_timeout_ms = 5000;
}

#[tokio::test(start_paused = true)]
async fn readiness_fails_first_then_streams_end_spread_over_the_window() {
    const DELAY: Duration = Duration::from_millis(300);
    // The relay ends streams in 64 steps over the window: a window of 64 of these.
    const STEP: Duration = Duration::from_millis(100);
    const STREAMS: i64 = 20;
    // Time moves only where this test advances it.
    let clock = support::hold_clock();
    let origin = TestOrigin::start().await;
    let mut relay = TestRelay::start(&origin, |c| {
        c.server.drain_delay_ms = DELAY.as_millis() as u64;
        c.server.drain_window_ms = 64 * STEP.as_millis() as u64;
        c.server.drain_timeout_ms = 10_000;
    })
    .await;
    let mut conn = relay.h2().await;
    let mut readers = Vec::new();
    for _ in 0..STREAMS {
        readers.push(conn.subscribe("/events/a", &[]).await);
    }
    eventually("subscribed upstream", || origin.open("a") == 1).await;
    relay.signal_shutdown();
    eventually("readiness off", || relay.metrics.hub.draining.get() == 1).await;
    assert_eq!(http_get(relay.admin_addr, "/readyz").await.0, 503);
    // Still serving during the drain delay.
    origin.publish("a", "1", "during delay");
    for r in &mut readers {
        assert_eq!(r.data(1).await, ["during delay"]);
    }
    assert_eq!(
        relay.metrics.hub.subscribers.get(),
        STREAMS,
        "none ended in the delay"
    );

    // Past the delay, one step of the window at a time, until the first streams have ended.
    support::advance(DELAY).await;
    let mut steps = 0;
    while relay.metrics.hub.subscribers.get() == STREAMS {
        assert!(steps < 64, "no stream ended within the window");
        support::advance(STEP).await;
        support::settle().await;
        steps += 1;
    }
    // With the clock standing here, an event published now reaches the streams still open
    // and not the ones already ended: both kinds exist, so the ends are spread out.
    origin.publish("a", "2", "after the first ends");
    let outcomes: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            tokio::spawn(async move {
                let open = match r.next_event().await {
                    Some(e) => {
                        assert_eq!(e.data.as_deref(), Some("after the first ends"));
                        true
                    }
                    None => false,
                };
                (open, r)
            })
        })
        .collect();
    let mut readers = Vec::new();
    for outcome in outcomes {
        readers.push(outcome.await.unwrap());
    }
    let still_open = readers.iter().filter(|(open, _)| *open).count();
    assert!(
        still_open > 0 && still_open < readers.len(),
        "some streams ended while others stayed open: {still_open} of {} open",
        readers.len()
    );

    // Let time run: the rest end too, each after the retry hint.
    drop(clock);
    for (_, r) in &mut readers {
        r.until_end().await;
        assert!(String::from_utf8_lossy(&r.raw).ends_with("retry: 2000\n\n"));
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_clients_resume_on_another_relay_without_loss() {
    let origin = TestOrigin::start().await;
    let mut draining = TestRelay::start(&origin, drain).await;
    let other = TestRelay::start(&origin, |_| {}).await;
    // The other replica already serves the topic (as in a fleet), so its ring covers resumes.
    let _warm = other.h2().await.subscribe("/events/a", &[]).await;
    let mut conn = draining.h2().await;
    let mut readers = Vec::new();
    for _ in 0..10 {
        readers.push(conn.subscribe("/events/a", &[]).await);
    }
    eventually("both relays subscribed", || origin.open("a") == 2).await;

    const TOTAL: u32 = 60;
    let publisher = {
        let origin = origin.clone();
        tokio::spawn(async move {
            for i in 1..=TOTAL {
                origin.publish("a", &i.to_string(), &format!("e{i}"));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    draining.signal_shutdown();

    let clients: Vec<_> = readers
        .into_iter()
        .map(|mut first| {
            let (addr, cert) = (other.addr, other.cert.clone());
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut last_id = None;
                while let Some(e) = first.next_event().await {
                    last_id = e.id.clone().or(last_id);
                    got.push(e.data.unwrap());
                }
                let mut conn = support::H2Client::connect(addr, &cert, None).await;
                let header = last_id.expect("saw events before the drain");
                let mut resumed = conn
                    .subscribe("/events/a", &[("last-event-id", &header)])
                    .await;
                while got.len() < TOTAL as usize {
                    got.push(
                        resumed
                            .next_event()
                            .await
                            .expect("stream open")
                            .data
                            .unwrap(),
                    );
                }
                got
            })
        })
        .collect();
    let expected: Vec<String> = (1..=TOTAL).map(|i| format!("e{i}")).collect();
    for client in clients {
        assert_eq!(
            client.await.unwrap(),
            expected,
            "no gap, no duplicate across replicas"
        );
    }
    publisher.await.unwrap();
    draining.stop().await;
    other.stop().await;
}
