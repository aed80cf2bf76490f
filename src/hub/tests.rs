//! Unit tests of the hub: no sockets, time paused where timers matter.

mod compression;
mod limits;
mod retry;
mod watch;

use super::*;
use bytes::Bytes;
use std::future::poll_fn;
use std::sync::atomic::AtomicUsize;

fn hub(max_events: usize) -> Hub {
    hub_with(settings(max_events))
}

pub(super) fn hub_with(settings: HubSettings) -> Hub {
    let metrics = Arc::new(HubMetrics::new(&prometheus::Registry::new(), 10).unwrap());
    Hub::new(settings, metrics)
}

/// The tests' settings: a ring of `max_events`, 50 ms idle grace, no answer memory.
pub(super) fn settings(max_events: usize) -> HubSettings {
    HubSettings {
        ring: RingLimits {
            max_events,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(60),
        },
        idle_grace: Duration::from_millis(50),
        origin_closed_ttl: Duration::ZERO,
        origin_error_ttl: Duration::ZERO,
        heartbeat_interval: Duration::from_secs(3600),
        max_buffered_bytes: 512 * 1024,
        max_topics: 3,
        max_topics_per_client: 3,
        catch_up: CATCH_UP,
        compression: crate::compress::CompressionSettings::OFF,
    }
}

/// Catch-up on, 5 s to meet the ring, two per topic, three in all.
const CATCH_UP: CatchUpSettings = CatchUpSettings {
    enabled: true,
    timeout: Duration::from_secs(5),
    max_bytes: 64 * 1024,
    max_per_topic: 2,
    max_total: 3,
};

/// A spec for topic `key` whose upstream never ends; `opened` counts upstreams started.
fn counted(key: &str, opened: &Arc<AtomicUsize>) -> TopicSpec {
    let opened = opened.clone();
    TopicSpec {
        key: key.to_string(),
        shown: None,
        label: format!("/{key}"),
        follow: Box::new(move |_| {
            opened.fetch_add(1, Ordering::SeqCst);
            Box::pin(std::future::pending())
        }),
        replay: None,
        opener: None,
    }
}

fn spec(key: &str) -> TopicSpec {
    counted(key, &Arc::default())
}

pub(super) async fn next(sub: &mut Subscription) -> Next {
    poll_fn(|cx| sub.poll_next(cx)).await
}

pub(super) fn frame(next: Next) -> Bytes {
    match next {
        Next::Frame(d) => d.frame,
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[tokio::test]
async fn one_topic_opened_for_many_subscribers() {
    let opened = Arc::new(AtomicUsize::new(0));
    let hub = hub(8);
    let subs: Vec<_> = (0..10)
        .map(|_| hub.subscribe(counted("k", &opened), None).unwrap())
        .collect();
    assert_eq!(opened.load(Ordering::SeqCst), 1);
    assert_eq!(subs[0].topic().subscriber_count(), 10);
}

#[tokio::test]
async fn subscribers_share_the_same_frame_buffer() {
    let hub = hub(8);
    let mut a = hub.subscribe(spec("k"), None).unwrap();
    let mut b = hub.subscribe(spec("k"), None).unwrap();
    a.topic()
        .publish(Some("1"), Bytes::from_static(b"id: 1\ndata: x\n\n"));
    let (fa, fb) = (frame(next(&mut a).await), frame(next(&mut b).await));
    assert_eq!(
        fa.as_ptr(),
        fb.as_ptr(),
        "one buffer, no per-subscriber copy"
    );
}

#[tokio::test]
async fn resume_starts_after_the_last_event_id() {
    let hub = hub(8);
    let first = hub.subscribe(spec("k"), None).unwrap();
    for i in 1..=4 {
        first
            .topic()
            .publish(Some(&i.to_string()), Bytes::from(format!("{i}")));
    }
    let mut resumed = hub.subscribe(spec("k"), Some("2")).unwrap();
    let d = next(&mut resumed).await;
    assert!(
        matches!(&d, Next::Frame(d) if d.frame == "34" && d.events == 2 && d.behind == 0),
        "{d:?}"
    );
}

#[tokio::test]
async fn after_a_move_the_new_sources_overlap_is_dropped_until_its_first_new_event() {
    let hub = hub(8);
    let mut sub = hub.subscribe(spec("k"), None).unwrap();
    let topic = sub.topic().clone();
    let publish = |i: u32| topic.publish(Some(&i.to_string()), Bytes::from(format!("{i}")));
    (1..=4).for_each(publish);
    assert_eq!(frame(next(&mut sub).await), "1234");
    // The new source resumes from further back (2) and sends 2–4 again, then 5; once 5 has
    // passed, an id the ring holds is the origin's own business again.
    topic.expect_overlap();
    (2..=5).for_each(publish);
    publish(3);
    assert_eq!(frame(next(&mut sub).await), "53");
    assert_eq!(hub.metrics().duplicates_dropped.get(), 3);
    // An event without an id also ends the overlap (nothing to compare it with).
    topic.expect_overlap();
    topic.publish(None, Bytes::from("n"));
    publish(4);
    assert_eq!(frame(next(&mut sub).await), "n4");
    // An id the ring holds with other data is a new event (an origin that reuses ids): it
    // passes and ends the overlap.
    topic.expect_overlap();
    topic.publish(Some("5"), Bytes::from("5b"));
    publish(5);
    assert_eq!(frame(next(&mut sub).await), "5b5");
    assert_eq!(hub.metrics().duplicates_dropped.get(), 3);
}

#[tokio::test]
async fn waiting_events_go_out_joined_up_to_the_batch_size() {
    let hub = hub(64);
    let mut sub = hub.subscribe(spec("k"), None).unwrap();
    let event = |c: u8| Bytes::from(vec![c; BATCH_BYTES / 3]);
    for c in [b'a', b'b', b'c', b'd'] {
        sub.topic().publish(None, event(c));
    }
    // Three fit one batch, in order; the fourth comes next, alone and shared (no copy).
    let Next::Frame(first) = next(&mut sub).await else {
        panic!("expected a batch")
    };
    assert_eq!((first.events, first.behind), (3, 1));
    assert_eq!(
        first.frame,
        [event(b'a'), event(b'b'), event(b'c')].concat()
    );
    let Next::Frame(second) = next(&mut sub).await else {
        panic!("expected the last event")
    };
    assert_eq!((second.events, second.behind), (1, 0));
    assert_eq!(second.frame, event(b'd'));
    let big = Bytes::from(vec![b'z'; BATCH_BYTES * 2]);
    sub.topic().publish(None, big.clone());
    sub.topic().publish(None, event(b'e'));
    let Next::Frame(alone) = next(&mut sub).await else {
        panic!("expected the big event")
    };
    assert_eq!(alone.events, 1, "an event over the batch size goes alone");
    assert_eq!(alone.frame.as_ptr(), big.as_ptr(), "shared, not copied");
}

#[tokio::test]
async fn slow_subscriber_falls_out_of_the_ring() {
    let hub = hub(2);
    let mut slow = hub.subscribe(spec("k"), None).unwrap();
    for i in 0..5 {
        slow.topic().publish(None, Bytes::from(format!("{i}")));
    }
    assert_eq!(next(&mut slow).await, Next::Lagged);
}

#[tokio::test]
async fn a_lag_skip_reports_the_gap_before_the_oldest_event() {
    let hub = hub(2);
    let mut slow = hub.subscribe(spec("k"), None).unwrap();
    for i in 0..5 {
        let id = i.to_string();
        slow.topic().publish(Some(&id), Bytes::from(format!("{i}")));
    }
    assert_eq!(next(&mut slow).await, Next::Lagged);
    slow.skip_to_oldest();
    assert_eq!(
        next(&mut slow).await,
        Next::Gap(Gap {
            last_event_id: None,
            next_event_id: Some(Arc::from("3")),
        })
    );
    assert_eq!(
        frame(next(&mut slow).await),
        "34",
        "then the buffered events, joined"
    );
}

/// Lets spawned tasks (the supervisor) run until they wait again.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn topic_retires_after_grace_unless_a_subscriber_returns() {
    let opened = Arc::new(AtomicUsize::new(0));
    let hub = hub(8);
    let sub = hub.subscribe(counted("k", &opened), None).unwrap();
    let topic = sub.topic().clone();
    drop(sub);
    let again = hub.subscribe(counted("k", &opened), None).unwrap();
    tokio::time::advance(Duration::from_millis(200)).await;
    settle().await;
    assert_eq!(hub.topic_count(), 1, "kept while a subscriber is attached");
    assert!(!topic.is_closed());
    drop(again);
    settle().await;
    tokio::time::advance(Duration::from_millis(60)).await;
    settle().await;
    assert_eq!(hub.topic_count(), 0, "retired after the grace");
    assert!(topic.is_closed());
    assert_eq!(opened.load(Ordering::SeqCst), 1, "one upstream for both");
}

#[tokio::test(start_paused = true)]
async fn idle_grace_counts_from_the_last_leave() {
    let hub = hub(8);
    let first = hub.subscribe(spec("k"), None).unwrap();
    let topic = first.topic().clone();
    drop(first);
    settle().await;
    tokio::time::advance(Duration::from_millis(40)).await;
    settle().await;
    // A visitor comes and goes 40 ms into the 50 ms grace: the grace restarts at its leave.
    drop(hub.subscribe(spec("k"), None).unwrap());
    settle().await;
    tokio::time::advance(Duration::from_millis(40)).await;
    settle().await;
    assert!(
        !topic.is_closed(),
        "80 ms after the first leave, 40 after the last"
    );
    tokio::time::advance(Duration::from_millis(20)).await;
    settle().await;
    assert!(topic.is_closed(), "50 ms after the last leave");
}

#[tokio::test]
async fn origin_closed_ends_streams_and_is_remembered() {
    let metrics = Arc::new(HubMetrics::new(&prometheus::Registry::new(), 10).unwrap());
    let settings = HubSettings {
        ring: RingLimits {
            max_events: 8,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(60),
        },
        idle_grace: Duration::from_secs(5),
        origin_closed_ttl: Duration::from_secs(60),
        origin_error_ttl: Duration::ZERO,
        heartbeat_interval: Duration::from_secs(3600),
        max_buffered_bytes: 1 << 20,
        max_topics: 3,
        max_topics_per_client: 3,
        catch_up: CATCH_UP,
        compression: crate::compress::CompressionSettings::OFF,
    };
    let hub = Hub::new(settings, metrics);
    let (close, closed) = tokio::sync::oneshot::channel::<()>();
    let spec = TopicSpec {
        key: "k".into(),
        shown: None,
        label: "/k".into(),
        follow: Box::new(move |_| {
            Box::pin(async move {
                let _ = closed.await;
                UpstreamEnd::OriginClosed
            })
        }),
        replay: None,
        opener: None,
    };
    let mut sub = hub.subscribe(spec, None).unwrap();
    close.send(()).unwrap();
    assert_eq!(
        next(&mut sub).await,
        Next::Closed(CloseReason::OriginClosed)
    );
    assert_eq!(hub.topic_count(), 0);
    assert_eq!(
        hub.subscribe(counted("k", &Arc::default()), None).err(),
        Some(Refused::Origin(Arc::new(OriginAnswer::no_content()))),
        "new subscribers are told 204 without a new upstream"
    );
}

#[tokio::test]
async fn drain_ends_every_stream_and_refuses_new_ones() {
    let hub = hub(8);
    let mut subs: Vec<_> = (0..50)
        .map(|_| hub.subscribe(spec("k"), None).unwrap())
        .collect();
    hub.drain(Duration::from_millis(64)).await;
    assert_eq!(
        hub.subscribe(spec("k"), None).err(),
        Some(Refused::Draining)
    );
    for s in &mut subs {
        assert_eq!(next(s).await, Next::Closed(CloseReason::Draining));
    }
    assert_eq!(hub.topic_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_is_every_waiting_subscribers_answer_and_is_remembered_for_its_ttl() {
    let hub = hub_with(HubSettings {
        origin_error_ttl: Duration::from_secs(10),
        ..settings(8)
    });
    let not_found = Arc::new(OriginAnswer {
        status: http::StatusCode::NOT_FOUND,
        content_type: None,
        body: Bytes::from_static(b"no such topic"),
    });
    let (refuse, refused) = tokio::sync::oneshot::channel::<()>();
    let answer = not_found.clone();
    let spec = TopicSpec {
        key: "k".into(),
        shown: None,
        label: "/k".into(),
        follow: Box::new(move |_| {
            Box::pin(async move {
                let _ = refused.await;
                UpstreamEnd::Refused(answer)
            })
        }),
        replay: None,
        opener: None,
    };
    let first = hub.subscribe(spec, None).unwrap();
    let second = hub.subscribe(counted("k", &Arc::default()), None).unwrap();
    let (a, b) = (first.verdict(), second.verdict());
    refuse.send(()).unwrap();
    assert_eq!(a.await, Verdict::Final(not_found.clone()));
    assert_eq!(b.await, Verdict::Final(not_found.clone()));
    let opened = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        hub.subscribe(counted("k", &opened), None).err(),
        Some(Refused::Origin(not_found)),
        "within the ttl, the answer stands without a new upstream"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    let again = hub.subscribe(counted("k", &opened), None).unwrap();
    assert_eq!(
        opened.load(Ordering::SeqCst),
        1,
        "after it, the origin is asked again"
    );
    again.topic().answer_with_stream();
    assert_eq!(again.verdict().await, Verdict::Stream);
}

#[tokio::test(start_paused = true)]
async fn a_topics_key_counts_in_the_buffer_budget_while_it_is_open() {
    let hub = hub(8);
    let gauge = hub.registry.metrics.buffered_bytes.clone();
    let (a, b) = ("a".repeat(300 * 1024), "b".repeat(300 * 1024));
    let first = hub.subscribe(spec(&a), None).unwrap();
    assert_eq!(
        gauge.get(),
        a.len() as i64,
        "the key's bytes, the ring empty"
    );
    let second = hub.subscribe(spec(&b), None).unwrap();
    assert_eq!(
        hub.subscribe(spec("c"), None).err(),
        Some(Refused::OverBudget),
        "two long keys spend the 512 KiB budget"
    );
    drop((first, second));
    settle().await;
    tokio::time::advance(Duration::from_millis(60)).await;
    settle().await;
    assert_eq!(hub.topic_count(), 0, "retired after the grace");
    assert_eq!(gauge.get(), 0, "a closed topic's key is no longer counted");
}
