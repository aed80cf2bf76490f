//! The tail without sockets: its lag policies, what it refuses, and how it reads frames.

use super::*;
use crate::hub::{CatchUpSettings, HubMetrics, HubSettings, RingLimits, TopicSpec};
use futures_util::StreamExt;
use std::time::Duration;

/// A hub whose rings hold 4 events.
fn hub() -> Hub {
    let registry = prometheus::Registry::new();
    let settings = HubSettings {
        ring: RingLimits {
            max_events: 4,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(60),
        },
        idle_grace: Duration::from_secs(60),
        origin_closed_ttl: Duration::ZERO,
        origin_error_ttl: Duration::ZERO,
        heartbeat_interval: Duration::from_secs(3600),
        max_buffered_bytes: 1 << 20,
        max_topics: 4,
        max_topics_per_client: 4,
        compression: crate::compress::CompressionSettings::OFF,
        catch_up: CatchUpSettings {
            enabled: false,
            timeout: Duration::from_secs(1),
            max_bytes: 1024,
            max_per_topic: 1,
            max_total: 1,
        },
    };
    Hub::new(settings, Arc::new(HubMetrics::new(&registry, 4).unwrap()))
}

fn spec(key: &str, shown: Option<&str>) -> TopicSpec {
    TopicSpec {
        key: key.into(),
        shown: shown.map(Into::into),
        label: "/t".into(),
        follow: Box::new(|_| Box::pin(std::future::pending())),
        replay: None,
        opener: None,
    }
}

fn metrics() -> Arc<AdminMetrics> {
    Arc::new(AdminMetrics::new(&prometheus::Registry::new()).unwrap())
}

fn settings(lag_policy: LagPolicy) -> TailSettings {
    TailSettings {
        private: false,
        lag_policy,
    }
}

fn text(bytes: Option<Bytes>) -> String {
    String::from_utf8(bytes.expect("a frame").to_vec()).unwrap()
}

fn publish(hub: &Hub, n: u32) {
    let frame = Bytes::from(format!("id: {n}\ndata: {n}\n\n"));
    hub.topics()[0].publish(Some(&n.to_string()), frame);
}

#[tokio::test]
async fn a_tail_that_falls_out_of_the_ring_ends_under_the_disconnect_policy() {
    let hub = hub();
    let _client = hub.subscribe(spec("k", None), None).unwrap();
    let metrics = metrics();
    let mut tail = open(
        [&hub],
        "k",
        settings(LagPolicy::Disconnect),
        metrics.clone(),
    )
    .unwrap();
    assert_eq!(metrics.tails.get(), 1);
    assert_eq!(
        text(tail.next().await),
        ": sse-relay tail\n\n",
        "no past yet"
    );
    for n in 1..=6 {
        publish(&hub, n);
    }
    assert!(text(tail.next().await).starts_with("event: lagged\ndata: {\"policy\":\"disconnect\"}"));
    assert_eq!(tail.next().await, None, "ended");
    assert_eq!(metrics.tails_lagged.get(), 1);
    drop(tail);
    assert_eq!(metrics.tails.get(), 0);
}

#[tokio::test]
async fn a_tail_that_falls_out_of_the_ring_skips_under_the_skip_policy() {
    let hub = hub();
    let _client = hub.subscribe(spec("k", None), None).unwrap();
    let mut tail = open([&hub], "k", settings(LagPolicy::Skip), metrics()).unwrap();
    tail.next().await;
    for n in 1..=6 {
        publish(&hub, n);
    }
    assert!(text(tail.next().await).starts_with("event: lagged"));
    assert_eq!(text(tail.next().await), "event: gap\ndata: {}\n\n");
    let shown = text(tail.next().await);
    let ids: Vec<&str> = shown
        .lines()
        .filter_map(|l| l.split("\"id\":\"").nth(1))
        .map(|rest| &rest[..1])
        .collect();
    assert_eq!(
        ids,
        ["3", "4", "5", "6"],
        "from the oldest held on: {shown}"
    );
}

#[tokio::test]
async fn a_per_user_topic_is_refused_unless_tail_private() {
    let hub = hub();
    let _client = hub
        .subscribe(spec("k alice", Some("k {jwt.sub:0123456789ab}")), None)
        .unwrap();
    let shown = "k {jwt.sub:0123456789ab}";
    let refused = open([&hub], shown, settings(LagPolicy::Disconnect), metrics());
    assert_eq!(refused.err(), Some(TailRefusal::Private));
    assert_eq!(
        open(
            [&hub],
            "k alice",
            settings(LagPolicy::Disconnect),
            metrics()
        )
        .err(),
        Some(TailRefusal::Unknown),
        "only the key as shown names a topic"
    );
    let allowed = TailSettings {
        private: true,
        lag_policy: LagPolicy::Disconnect,
    };
    assert!(open([&hub], shown, allowed, metrics()).is_ok());
}

#[test]
fn frames_split_after_each_blank_line_and_previews_keep_characters_whole() {
    let joined = b"id: 1\ndata: a\n\nretry: 5\n\nid: 2\ndata: b\n\n";
    let frames: Vec<&[u8]> = joined.split_inclusive_blank_line().collect();
    assert_eq!(
        frames,
        [
            &b"id: 1\ndata: a\n\n"[..],
            b"retry: 5\n\n",
            b"id: 2\ndata: b\n\n"
        ]
    );
    let long = "é".repeat(PREVIEW_BYTES);
    assert_eq!(preview(&long).len(), PREVIEW_BYTES);
    let odd = format!("x{long}");
    assert_eq!(
        preview(&odd).len(),
        PREVIEW_BYTES - 1,
        "not inside a character"
    );
    assert_eq!(preview("short"), "short");
}
