//! The origin's `retry:` in the hub: one shared frame for the start of every stream, a change
//! delivered in order with the events, and nothing else moved by it (ids, resumes, the overlap
//! guard, the gap signal, the counts).

use super::*;

/// A `retry:` frame as the upstream encodes it.
fn retry(ms: u64) -> Bytes {
    Bytes::from(format!("retry: {ms}\n\n"))
}

/// Polls `sub` once: what it has to read now, if anything.
fn poll(sub: &mut Subscription) -> std::task::Poll<Next> {
    let waker = std::task::Waker::noop();
    sub.poll_next(&mut std::task::Context::from_waker(waker))
}

/// What `sub` has to read now (publishing is synchronous: a published frame is ready at once).
fn ready(sub: &mut Subscription) -> Next {
    match poll(sub) {
        std::task::Poll::Ready(next) => next,
        std::task::Poll::Pending => panic!("nothing to read"),
    }
}

/// True when `sub` has nothing to read now.
fn idle(sub: &mut Subscription) -> bool {
    poll(sub).is_pending()
}

#[tokio::test]
async fn the_origins_retry_is_one_shared_frame_and_a_change_reaches_live_subscribers() {
    let hub = hub(8);
    let mut early = hub.subscribe(spec("k"), None).unwrap();
    let topic = early.topic().clone();
    assert_eq!(
        topic.retry(),
        None,
        "no `retry:` until the origin sends one"
    );
    let frame_3000 = retry(3000);
    topic.publish_retry(frame_3000.clone());
    // A live subscriber gets the change without any event after it: no event in it.
    let Next::Frame(change) = ready(&mut early) else {
        panic!("expected the change")
    };
    assert_eq!(
        (change.frame.as_ptr(), change.events),
        (frame_3000.as_ptr(), 0)
    );
    // One joining later starts with the same shared frame, and nothing from the ring.
    let mut late = hub.subscribe(spec("k"), None).unwrap();
    assert_eq!(topic.retry().map(|f| f.as_ptr()), Some(frame_3000.as_ptr()));
    assert!(idle(&mut late));
    // The same value again (a reconnected origin says it again) changes nothing.
    topic.publish_retry(retry(3000));
    assert!(idle(&mut early) && idle(&mut late));
    topic.publish_retry(retry(5000));
    topic.publish(Some("1"), Bytes::from("e1"));
    assert_eq!(frame(ready(&mut early)), "retry: 5000\n\ne1", "in order");
    assert_eq!(frame(ready(&mut late)), "retry: 5000\n\ne1");
    assert_eq!(topic.retry(), Some(retry(5000)));
}

#[tokio::test]
async fn a_retry_change_moves_no_id_no_resume_no_count_and_no_overlap_guard() {
    let hub = hub(8);
    let sub = hub.subscribe(spec("k"), None).unwrap();
    let topic = sub.topic().clone();
    topic.publish(Some("1"), Bytes::from("e1"));
    topic.publish_retry(retry(3000));
    topic.publish(Some("2"), Bytes::from("e2"));
    topic.publish_retry(retry(4000));
    // A resume after 1 gets the change and 2 (one event), after 2 only the last change.
    let mut after_1 = hub.subscribe(spec("k"), Some("1")).unwrap();
    let Next::Frame(d) = ready(&mut after_1) else {
        panic!("expected the frames after 1")
    };
    assert_eq!(d.frame, "retry: 3000\n\ne2retry: 4000\n\n");
    assert_eq!(d.events, 1, "a `retry:` change is not an event");
    let mut after_2 = hub.subscribe(spec("k"), Some("2")).unwrap();
    assert_eq!(frame(ready(&mut after_2)), "retry: 4000\n\n");
    let snapshot = topic.snapshot();
    assert_eq!(
        (snapshot.ring_events, snapshot.events_received),
        (2, 2),
        "events only"
    );
    assert_eq!(snapshot.last_event_id.as_deref(), Some("2"));
    // A new source's overlap: its `retry:` change does not end the guard.
    topic.expect_overlap();
    topic.publish_retry(retry(6000));
    topic.publish(Some("2"), Bytes::from("e2"));
    assert_eq!(hub.metrics().duplicates_dropped.get(), 1);
    assert_eq!(frame(ready(&mut after_2)), "retry: 6000\n\n");
}

#[tokio::test]
async fn the_gap_signal_names_the_next_event_past_a_retry_change() {
    let hub = hub(8);
    let sub = hub.subscribe(spec("k"), None).unwrap();
    sub.topic().publish_retry(retry(3000));
    sub.topic().publish(Some("7"), Bytes::from("e7"));
    // An id the ring never held, and no catch-up (the spec has no replay): the gap, then all.
    let mut resumed = hub.subscribe(spec("k"), Some("unknown")).unwrap();
    assert_eq!(
        ready(&mut resumed),
        Next::Gap(Gap {
            last_event_id: Some("unknown".into()),
            next_event_id: Some(Arc::from("7")),
        })
    );
    assert_eq!(frame(ready(&mut resumed)), "retry: 3000\n\ne7");
}

#[tokio::test]
async fn a_retry_change_takes_a_place_in_the_ring_and_lag_is_unchanged() {
    let hub = hub(2);
    let mut slow = hub.subscribe(spec("k"), None).unwrap();
    let topic = slow.topic().clone();
    topic.publish(Some("1"), Bytes::from("e1"));
    topic.publish_retry(retry(3000));
    topic.publish(Some("2"), Bytes::from("e2"));
    assert_eq!(ready(&mut slow), Next::Lagged);
    slow.skip_to_oldest();
    assert!(matches!(ready(&mut slow), Next::Gap(_)));
    assert_eq!(frame(ready(&mut slow)), "retry: 3000\n\ne2");
    assert_eq!(
        topic.retry(),
        Some(retry(3000)),
        "kept after its frame left"
    );
}
