//! The sampler under paused time: a sample a second, each a second after the previous one,
//! counting what the counters added in its second; the ring bounded, in order, and right after
//! it wrapped around.

use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use tokio::sync::watch;

use super::*;
use crate::admin::metrics::AdminMetrics;
use crate::downstream::DownstreamMetrics;
use crate::hub::HubMetrics;
use crate::server::ServerMetrics;
use crate::upstream::{Failure, UpstreamMetrics};

fn sources() -> Sources {
    let r = Registry::new();
    Sources {
        hub: Arc::new(HubMetrics::new(&r, 10).unwrap()),
        upstream: Arc::new(UpstreamMetrics::new(&r).unwrap()),
        downstream: Arc::new(DownstreamMetrics::new(&r).unwrap()),
        server: Arc::new(ServerMetrics::new(&r).unwrap()),
        admin: Arc::new(AdminMetrics::new(&r).unwrap()),
        request_streams: None,
    }
}

/// A history of `capacity` sampled from `sources` on a task of its own, and its stop switch.
fn started(sources: &Sources, capacity: usize) -> (History, watch::Sender<bool>) {
    let (stop, stopped) = watch::channel(false);
    let history = History::new(capacity);
    tokio::spawn(history.clone().sample(sources.clone(), stopped));
    (history, stop)
}

/// Lets one second pass and waits for the sample it brings.
async fn one_second(follow: &mut watch::Receiver<u64>) {
    tokio::time::advance(SAMPLE_EVERY).await;
    follow.changed().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_sample_a_second_with_what_each_second_added() {
    let sources = sources();
    let (history, _stop) = started(&sources, CAPACITY);
    let mut follow = history.follow();
    tokio::task::yield_now().await;
    for second in 1..=5u64 {
        sources.downstream.events_delivered.inc_by(100 * second);
        sources.upstream.events_received.inc_by(second);
        sources.upstream.failures.inc(Failure::Stream);
        sources.hub.subscribers.set(second as i64);
        sources
            .downstream
            .fanout_latency
            .observe(0.001 * second as f64);
        one_second(&mut follow).await;
    }
    let (samples, next) = history.since(0);
    assert_eq!(next, 5);
    let deliveries: Vec<f32> = samples.iter().map(|s| s.deliveries).collect();
    assert_eq!(deliveries, [100.0, 200.0, 300.0, 400.0, 500.0]);
    let events_in: Vec<f32> = samples.iter().map(|s| s.events_in).collect();
    assert_eq!(events_in, [1.0, 2.0, 3.0, 4.0, 5.0]);
    let subscribers: Vec<u32> = samples.iter().map(|s| s.subscribers).collect();
    assert_eq!(subscribers, [1, 2, 3, 4, 5]);
    let stream = Sample::FAILURE_REASONS
        .iter()
        .position(|r| *r == "stream")
        .unwrap();
    assert!(samples.iter().all(|s| s.upstream_failures[stream] == 1.0));
    for pair in samples.windows(2) {
        assert_eq!(pair[1].unix_ms - pair[0].unix_ms, 1000, "a second apart");
    }
    // One observation a second: its second's quantiles lie in its bucket, not in the sum of
    // all seconds so far.
    let p50 = samples[4].fanout_p50_ms.unwrap();
    assert!(
        (3.2..=6.4).contains(&p50),
        "5 ms falls in (3.2, 6.4] ms: {p50}"
    );
    assert!(samples[0].fanout_p99_ms.unwrap() <= 1.6);
}

#[tokio::test(start_paused = true)]
async fn the_ring_stays_bounded_and_ordered_after_it_wraps_around() {
    let sources = sources();
    let (history, stop) = started(&sources, 10);
    let mut follow = history.follow();
    tokio::task::yield_now().await;
    for second in 1..=25u64 {
        sources.upstream.events_received.inc_by(second);
        one_second(&mut follow).await;
    }
    let (samples, next) = history.since(0);
    assert_eq!(next, 25, "25 samples taken");
    assert_eq!(samples.len(), 10, "the newest 10 kept");
    let events_in: Vec<f32> = samples.iter().map(|s| s.events_in).collect();
    let newest: Vec<f32> = (16..=25).map(|n| n as f32).collect();
    assert_eq!(events_in, newest, "oldest first, the 15 oldest pushed out");
    assert!(samples
        .windows(2)
        .all(|p| p[0].unix_ms + 1000 == p[1].unix_ms));
    assert_eq!(
        history.since(23).0.len(),
        2,
        "a follower gets only what is new"
    );

    stop.send_replace(true);
    tokio::time::advance(Duration::from_secs(5)).await;
    tokio::task::yield_now().await;
    assert_eq!(history.since(0).1, 25, "no sample after the stop");
}

#[tokio::test(start_paused = true)]
async fn the_stream_starts_with_the_whole_history_then_sends_each_new_sample() {
    use futures_util::StreamExt;
    let sources = sources();
    let (history, _stop) = started(&sources, CAPACITY);
    let mut follow = history.follow();
    tokio::task::yield_now().await;
    one_second(&mut follow).await;
    one_second(&mut follow).await;
    let (_keep, stopped) = watch::channel(false);
    let mut stream = Box::pin(history.stream(stopped));
    let first = String::from_utf8(stream.next().await.unwrap().to_vec()).unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(first.strip_prefix("event: history\ndata: ").unwrap().trim()).unwrap();
    assert_eq!(doc["samples"].as_array().unwrap().len(), 2);
    assert_eq!(doc["interval_ms"], 1000);
    assert_eq!(doc["capacity"], CAPACITY);
    sources.downstream.events_delivered.inc_by(7);
    tokio::time::advance(SAMPLE_EVERY).await;
    let next = String::from_utf8(stream.next().await.unwrap().to_vec()).unwrap();
    let sample: serde_json::Value =
        serde_json::from_str(next.strip_prefix("event: sample\ndata: ").unwrap().trim()).unwrap();
    assert_eq!(sample["deliveries"], 7.0);
    assert_eq!(sample["request_streams_open"], serde_json::Value::Null);
}
