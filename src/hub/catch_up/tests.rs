//! Unit tests of catch-up: a real hub, the origin's replay played by a closure that offers
//! events as the upstream would; time paused where the time bound matters.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::hub::tests::{frame, hub_with, next, settings};
use crate::hub::{
    CatchUp, CatchUpOutcome, Follow, Gap, Hub, Next, Replay, Subscription, TopicSpec,
};

/// The encoded event with id `i`, as the topic's ring holds it.
fn event(i: u32) -> Bytes {
    Bytes::from(format!("id: {i}\ndata: e{i}\n\n"))
}

fn never_ends() -> Follow {
    Box::new(|_| Box::pin(std::future::pending()))
}

/// An origin that replays the events with these ids (then stays open); `calls` counts
/// catch-up requests.
fn replaying(ids: Vec<u32>, calls: &Arc<AtomicUsize>) -> Replay {
    let calls = calls.clone();
    Arc::new(move |catch_up: Arc<CatchUp>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let ids = ids.clone();
        Box::pin(async move {
            for i in ids {
                if !catch_up.offer(Some(&i.to_string()), event(i)) {
                    return;
                }
            }
            std::future::pending::<()>().await;
        })
    })
}

fn spec(replay: &Replay) -> TopicSpec {
    TopicSpec {
        key: "k".into(),
        shown: None,
        label: "/k".into(),
        follow: never_ends(),
        replay: Some(replay.clone()),
        opener: None,
    }
}

/// A hub with a 4-event ring whose topic `k` is open (a live subscriber, returned) and holds
/// events 7–10.
fn hub_holding_7_to_10(replay: &Replay) -> (Hub, Subscription) {
    let hub = hub_with(settings(4));
    let live = hub.subscribe(spec(replay), None).unwrap();
    for i in 1..=10 {
        live.topic().publish(Some(&i.to_string()), event(i));
    }
    (hub, live)
}

/// Reads frames until `ids` have all arrived, joined; panics on anything else.
async fn read_events(sub: &mut Subscription, ids: std::ops::RangeInclusive<u32>) -> Bytes {
    let expected: Vec<u8> = ids.flat_map(|i| event(i).to_vec()).collect();
    let mut got = Vec::new();
    while got.len() < expected.len() {
        got.extend_from_slice(&frame(next(sub).await));
    }
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected)
    );
    Bytes::from(got)
}

fn outcome(hub: &Hub, outcome: CatchUpOutcome) -> u64 {
    hub.metrics().catch_ups.get(outcome).get()
}

#[tokio::test]
async fn a_resume_older_than_the_ring_gets_the_replay_then_the_ring_then_live() {
    let calls = Arc::default();
    let replay = replaying((4..=12).collect(), &calls);
    let (hub, live) = hub_holding_7_to_10(&replay);
    let mut resumed = hub.subscribe(spec(&replay), Some("3")).unwrap();
    read_events(&mut resumed, 4..=10).await;
    live.topic().publish(Some("11"), event(11));
    read_events(&mut resumed, 11..=11).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(outcome(&hub, CatchUpOutcome::Joined), 1);
    assert_eq!(
        hub.metrics().catch_ups_open.get(),
        0,
        "its slot is released"
    );
}

#[tokio::test]
async fn resumes_from_the_same_id_share_one_request() {
    let calls = Arc::default();
    let replay = replaying((4..=12).collect(), &calls);
    let (hub, _live) = hub_holding_7_to_10(&replay);
    let mut a = hub.subscribe(spec(&replay), Some("3")).unwrap();
    let mut b = hub.subscribe(spec(&replay), Some("3")).unwrap();
    read_events(&mut a, 4..=10).await;
    read_events(&mut b, 4..=10).await;
    let mut c = hub.subscribe(spec(&replay), Some("2")).unwrap();
    read_events(&mut c, 4..=10).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one request for 3, one for 2"
    );
}

/// The gap signal a subscriber that resumed from 3 gets before the ring's oldest event (7).
fn gap_from_3() -> Next {
    Next::Gap(Gap {
        last_event_id: Some("3".into()),
        next_event_id: Some("7".into()),
    })
}

#[tokio::test]
async fn an_origin_whose_first_event_is_in_the_ring_did_not_replay_gap() {
    let calls = Arc::default();
    let replay = replaying(vec![9, 10], &calls);
    let (hub, _live) = hub_holding_7_to_10(&replay);
    let mut resumed = hub.subscribe(spec(&replay), Some("3")).unwrap();
    assert_eq!(next(&mut resumed).await, gap_from_3());
    read_events(&mut resumed, 7..=10).await;
    assert_eq!(outcome(&hub, CatchUpOutcome::NoReplay), 1);
}

#[tokio::test]
async fn live_events_on_the_catch_up_are_not_taken_for_a_replay() {
    // The origin ignores Last-Event-ID and sends the next live event, 11, on the catch-up
    // before the topic's own subscription brings it: once the ring has 11, it was live.
    let calls = Arc::default();
    let replay = replaying(vec![11], &calls);
    let (hub, live) = hub_holding_7_to_10(&replay);
    let mut resumed = hub.subscribe(spec(&replay), Some("3")).unwrap();
    tokio::task::yield_now().await;
    live.topic().publish(Some("11"), event(11));
    assert_eq!(
        next(&mut resumed).await,
        Next::Gap(Gap {
            last_event_id: Some("3".into()),
            next_event_id: Some("8".into()),
        }),
        "the 4-event ring now starts at 8"
    );
    read_events(&mut resumed, 8..=11).await;
    assert_eq!(outcome(&hub, CatchUpOutcome::NoReplay), 1);
}

#[tokio::test]
async fn meeting_the_ring_with_an_event_newer_than_the_catch_up_is_no_replay() {
    // A per-connection event the ring never gets (12), then live ones (11 reaches the ring
    // only after the catch-up started): the origin did not replay from 3.
    let calls = Arc::new(AtomicUsize::new(0));
    let replay: Replay = {
        let calls = calls.clone();
        Arc::new(move |catch_up: Arc<CatchUp>| {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                catch_up.offer(Some("welcome"), event(0));
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
                catch_up.offer(Some("11"), event(11));
                std::future::pending::<()>().await;
            })
        })
    };
    let (hub, live) = hub_holding_7_to_10(&replay);
    let mut resumed = hub.subscribe(spec(&replay), Some("3")).unwrap();
    tokio::task::yield_now().await;
    live.topic().publish(Some("11"), event(11));
    assert!(matches!(next(&mut resumed).await, Next::Gap(_)));
    read_events(&mut resumed, 8..=11).await;
    assert_eq!(outcome(&hub, CatchUpOutcome::NoReplay), 1);
}

#[tokio::test]
async fn a_failing_origin_gives_the_gap() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let replay: Replay = Arc::new(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    });
    let (hub, _live) = hub_holding_7_to_10(&replay);
    let mut resumed = hub.subscribe(spec(&replay), Some("3")).unwrap();
    assert_eq!(next(&mut resumed).await, gap_from_3());
    read_events(&mut resumed, 7..=10).await;
    assert_eq!(outcome(&hub, CatchUpOutcome::Failed), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_catch_up_that_never_meets_the_ring_ends_at_its_time_bound() {
    let calls = Arc::default();
    let replay = replaying(vec![4, 5], &calls);
    let (hub, _live) = hub_holding_7_to_10(&replay);
    let mut resumed = hub.subscribe(spec(&replay), Some("3")).unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(next(&mut resumed).await, gap_from_3());
    assert_eq!(started.elapsed(), settings(4).catch_up.timeout);
    read_events(&mut resumed, 7..=10).await;
    assert_eq!(outcome(&hub, CatchUpOutcome::Failed), 1);
}

#[tokio::test]
async fn a_replay_over_the_byte_bound_gives_the_gap() {
    let max = settings(4).catch_up.max_bytes;
    let replay: Replay = Arc::new(move |catch_up: Arc<CatchUp>| {
        Box::pin(async move {
            let big = Bytes::from(vec![b'x'; max / 2 + 1]);
            while catch_up.offer(None, big.clone()) {}
        })
    });
    let (hub, _live) = hub_holding_7_to_10(&replay);
    let mut resumed = hub.subscribe(spec(&replay), Some("3")).unwrap();
    assert_eq!(next(&mut resumed).await, gap_from_3());
    assert_eq!(outcome(&hub, CatchUpOutcome::Failed), 1);
}

#[tokio::test]
async fn catch_ups_are_capped_per_topic_and_in_total() {
    // The tests' settings: two per topic, three in all.
    let calls = Arc::default();
    let replay = replaying(vec![], &calls);
    let (hub, _live) = hub_holding_7_to_10(&replay);
    let _a = hub.subscribe(spec(&replay), Some("a")).unwrap();
    let _b = hub.subscribe(spec(&replay), Some("b")).unwrap();
    let mut c = hub.subscribe(spec(&replay), Some("c")).unwrap();
    assert!(
        matches!(next(&mut c).await, Next::Gap(_)),
        "over the per-topic cap"
    );
    let other = |key: &str| TopicSpec {
        key: key.into(),
        shown: None,
        label: format!("/{key}"),
        follow: never_ends(),
        replay: Some(replay.clone()),
        opener: None,
    };
    let open_other = hub.subscribe(other("k2"), None).unwrap();
    open_other.topic().publish(Some("1"), event(1));
    let _d = hub.subscribe(other("k2"), Some("d")).unwrap();
    let mut e = hub.subscribe(other("k2"), Some("e")).unwrap();
    assert!(
        matches!(next(&mut e).await, Next::Gap(_)),
        "over the total cap"
    );
    assert_eq!(outcome(&hub, CatchUpOutcome::Capped), 2);
    assert_eq!(hub.metrics().catch_ups_open.get(), 3);
    tokio::task::yield_now().await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the three started have asked"
    );
}

#[tokio::test]
async fn the_id_the_topic_was_opened_with_needs_no_catch_up() {
    let calls = Arc::default();
    let replay = replaying(vec![], &calls);
    let hub = hub_with(settings(4));
    let first = hub.subscribe(spec(&replay), Some("3")).unwrap();
    first.topic().publish(Some("4"), event(4));
    let mut second = hub.subscribe(spec(&replay), Some("3")).unwrap();
    read_events(&mut second, 4..=4).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// A topic whose upstream has just opened without an id (its first subscriber had none) and
/// whose ring is still empty, with a second subscriber resuming from 5: what a relay of a
/// cluster meets when another relay moves a topic's upstream to it.
fn hub_opening_empty(replay: &Replay) -> (Hub, Subscription, Subscription) {
    let hub = hub_with(settings(16));
    let live = hub.subscribe(spec(replay), None).unwrap();
    let resumed = hub.subscribe(spec(replay), Some("5")).unwrap();
    (hub, live, resumed)
}

#[tokio::test]
async fn a_resume_id_the_ring_comes_to_hold_resumes_right_after_it_not_from_the_oldest() {
    // The topic's own subscription delivers 1–8 (an origin that sends its backlog to a new
    // subscriber) before the catch-up's first event, 6, which the ring then holds: the
    // subscriber had 5, so it gets 6–8, no gap and not 1–5 again.
    let calls = Arc::default();
    let replay = replaying((6..=8).collect(), &calls);
    let (hub, live, mut resumed) = hub_opening_empty(&replay);
    for i in 1..=8 {
        live.topic().publish(Some(&i.to_string()), event(i));
    }
    read_events(&mut resumed, 6..=8).await;
    live.topic().publish(Some("9"), event(9));
    read_events(&mut resumed, 9..=9).await;
    assert_eq!(outcome(&hub, CatchUpOutcome::Ring), 1);
    assert_eq!(outcome(&hub, CatchUpOutcome::NoReplay), 0);
}

#[tokio::test(start_paused = true)]
async fn a_resume_id_reaching_the_ring_decides_the_catch_up_without_waiting_for_the_origin() {
    // The origin never answers the catch-up; the ring gets 1–8 on the topic's own
    // subscription: the subscriber resumes after 5 at once, not at the time bound.
    let replay: Replay = Arc::new(|_| Box::pin(std::future::pending()));
    let (hub, live, mut resumed) = hub_opening_empty(&replay);
    let started = tokio::time::Instant::now();
    tokio::task::yield_now().await;
    for i in 1..=8 {
        live.topic().publish(Some(&i.to_string()), event(i));
    }
    read_events(&mut resumed, 6..=8).await;
    assert_eq!(started.elapsed(), std::time::Duration::ZERO);
    assert_eq!(outcome(&hub, CatchUpOutcome::Ring), 1);
}
