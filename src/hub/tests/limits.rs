//! The hub's bounds: new subscribers shed over the buffer budget, new topics refused past the
//! topic cap, a client's budget and the descriptors, while open topics still take subscribers.

use super::*;

#[tokio::test]
async fn new_subscribers_are_shed_over_the_buffer_budget() {
    let hub = hub(1000);
    let first = hub.subscribe(spec("k"), None).unwrap();
    for _ in 0..5 {
        first
            .topic()
            .publish(None, Bytes::from(vec![b'x'; 300 * 1024]));
    }
    assert_eq!(
        hub.subscribe(spec("k2"), None).err(),
        Some(Refused::OverBudget)
    );
    drop(first);
}

#[tokio::test]
async fn new_topics_past_the_cap_are_refused_existing_ones_still_join() {
    let hub = hub(8);
    let _held: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|k| hub.subscribe(spec(k), None).unwrap())
        .collect();
    assert_eq!(
        hub.subscribe(spec("d"), None).err(),
        Some(Refused::TooManyTopics)
    );
    assert!(
        hub.subscribe(spec("a"), None).is_ok(),
        "existing topics still join"
    );
}

/// A spec for topic `key` charged to `opener`.
fn opened_by(key: &str, opener: &str) -> TopicSpec {
    TopicSpec {
        opener: Some(Opener::new(opener)),
        ..spec(key)
    }
}

#[tokio::test(start_paused = true)]
async fn one_client_holds_its_topic_budget_and_another_still_opens_topics() {
    let hub = hub_with(HubSettings {
        max_topics: 4,
        max_topics_per_client: 2,
        ..settings(8)
    });
    let mine: Vec<_> = ["a", "b"]
        .iter()
        .map(|k| hub.subscribe(opened_by(k, "ip 192.0.2.1"), None).unwrap())
        .collect();
    assert_eq!(
        hub.subscribe(opened_by("c", "ip 192.0.2.1"), None).err(),
        Some(Refused::ClientBudget)
    );
    assert!(
        hub.subscribe(opened_by("a", "ip 192.0.2.1"), None).is_ok(),
        "joining an open topic costs no budget"
    );
    assert!(
        hub.subscribe(opened_by("c", "ip 192.0.2.2"), None).is_ok(),
        "another client opens a new topic"
    );
    let refused = hub
        .metrics()
        .topics_refused
        .get(TopicRefusal::ClientBudget)
        .get();
    assert_eq!(refused, 1);
    drop(mine);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        hub.subscribe(opened_by("d", "ip 192.0.2.1"), None).is_ok(),
        "closed topics give the budget back"
    );
}

#[tokio::test]
async fn new_topics_stop_short_of_the_descriptors_while_open_ones_still_join() {
    let metrics = Arc::new(HubMetrics::new(&prometheus::Registry::new(), 10).unwrap());
    let descriptors = Descriptors::new(22);
    let _connections: Vec<_> = (0..19).map(|_| descriptors.hold()).collect();
    let hub = Hub::with_descriptors(settings(8), metrics, descriptors.clone());
    let _a = hub.subscribe(spec("a"), None).unwrap();
    assert_eq!(
        hub.subscribe(spec("b"), None).err(),
        Some(Refused::Descriptors),
        "22 less a reserve of 2 is 20: 19 connections and one topic"
    );
    assert!(
        hub.subscribe(spec("a"), None).is_ok(),
        "open topics still join"
    );
    assert_eq!(
        descriptors.held(),
        20,
        "one descriptor per topic, not per subscriber"
    );
    let refused = hub
        .metrics()
        .topics_refused
        .get(TopicRefusal::Descriptors)
        .get();
    assert_eq!(refused, 1);
}
