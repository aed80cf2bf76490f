//! A watcher (the admin listener's tail): it is shown the ring's recent past, then reads like
//! any subscriber, and is never counted among the topic's subscribers.

use super::*;

fn poll(sub: &mut Subscription) -> std::task::Poll<Next> {
    let waker = std::task::Waker::noop();
    sub.poll_next(&mut std::task::Context::from_waker(waker))
}

fn event(n: u32) -> Bytes {
    Bytes::from(format!("id: {n}\ndata: {n}\n\n"))
}

#[tokio::test(start_paused = true)]
async fn a_watcher_gets_the_recent_past_then_live_events_and_is_not_a_subscriber() {
    let hub = hub(8);
    let client = hub.subscribe(spec("k"), None).unwrap();
    let topic = client.topic().clone();
    for n in 1..=5 {
        topic.publish(Some(&n.to_string()), event(n));
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    topic.publish_retry(Bytes::from_static(b"retry: 500\n\n"));

    let (recent, mut watcher) = Subscription::watch(&topic, 3);
    let frames: Vec<Bytes> = recent.iter().map(|r| r.frame.clone()).collect();
    assert_eq!(
        frames,
        [event(3), event(4), event(5)],
        "the newest 3, oldest first"
    );
    let now = tokio::time::Instant::now();
    let ages: Vec<u64> = recent
        .iter()
        .map(|r| (now - r.received_at).as_secs())
        .collect();
    assert_eq!(ages, [3, 2, 1], "each with when it arrived");
    assert_eq!(topic.subscriber_count(), 1, "a watcher is not a subscriber");
    assert_eq!(hub.metrics().subscribers.get(), 1);
    assert!(
        poll(&mut watcher).is_pending(),
        "nothing after the recent past yet"
    );

    topic.publish(Some("6"), event(6));
    assert_eq!(frame(next(&mut watcher).await), event(6));

    // The last client leaves: the watcher does not keep the topic open.
    drop(client);
    assert_eq!(topic.subscriber_count(), 0);
    tokio::time::advance(Duration::from_millis(60)).await;
    assert!(matches!(
        next(&mut watcher).await,
        Next::Closed(CloseReason::Retired)
    ));
    drop(watcher);
    assert_eq!(
        hub.metrics().subscribers.get(),
        0,
        "its drop counts no one out"
    );
}

#[tokio::test]
async fn a_watcher_that_falls_out_of_the_ring_lags_like_a_subscriber() {
    let hub = hub(4);
    let _client = hub.subscribe(spec("k"), None).unwrap();
    let topic = _client.topic().clone();
    let (recent, mut watcher) = Subscription::watch(&topic, 10);
    assert!(recent.is_empty(), "an empty ring has no past");
    for n in 1..=6 {
        topic.publish(Some(&n.to_string()), event(n));
    }
    assert_eq!(next(&mut watcher).await, Next::Lagged);
}
