//! Compression in the hub: each frame compressed once per coding in use, its part shared by
//! every subscriber of that coding; nothing compressed in a coding nobody uses; a heartbeat
//! tick starts a segment; the parts counted in the buffer gauge and freed with the ring.

use super::*;
use crate::compress::{Coding, CompressionSettings, Part, SegmentRule};

fn compressing() -> HubSettings {
    HubSettings {
        heartbeat_interval: Duration::from_secs(10),
        compression: CompressionSettings {
            codings: [Some(Coding::Zstd), Some(Coding::Gzip)],
            segment: SegmentRule {
                events: 1000,
                bytes: 1 << 20,
                duration: Duration::from_secs(3600),
            },
            ..CompressionSettings::OFF
        },
        ..settings(64)
    }
}

fn event(i: u32) -> Bytes {
    Bytes::from(format!(
        "id: {i}\ndata: {{\"n\":{i},\"text\":\"the same words\"}}\n\n"
    ))
}

/// The next delivery's frames with their parts in `coding`.
async fn packed(sub: &mut Subscription, coding: Coding) -> Vec<(Bytes, Option<Part>)> {
    match next(sub).await {
        Next::Frame(d) => d
            .packed
            .as_slice()
            .iter()
            .map(|p| {
                let part = p.parts.as_deref().and_then(|parts| parts.get(coding));
                (p.frame.clone(), part.cloned())
            })
            .collect(),
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[tokio::test]
async fn subscribers_of_a_coding_share_one_compressed_part_per_frame() {
    let hub = hub_with(compressing());
    let mut a = hub.subscribe(spec("k"), None).unwrap();
    let mut b = hub.subscribe(spec("k"), None).unwrap();
    let mut z = hub.subscribe(spec("k"), None).unwrap();
    let mut plain = hub.subscribe(spec("k"), None).unwrap();
    a.compress_in(Coding::Gzip);
    b.compress_in(Coding::Gzip);
    z.compress_in(Coding::Zstd);
    a.topic().publish(Some("1"), event(1));
    let (frame_a, part_a) = packed(&mut a, Coding::Gzip).await.remove(0);
    let (_, part_b) = packed(&mut b, Coding::Gzip).await.remove(0);
    let (_, part_z) = packed(&mut z, Coding::Zstd).await.remove(0);
    let (part_a, part_b, part_z) = (part_a.unwrap(), part_b.unwrap(), part_z.unwrap());
    assert_eq!(frame_a, event(1));
    assert_eq!(
        part_a.bytes.as_ptr(),
        part_b.bytes.as_ptr(),
        "one compression, shared"
    );
    assert!(part_a.starts && part_z.starts);
    assert_ne!(part_a.bytes, part_z.bytes, "one part per coding");
    // An identity subscriber gets the frame itself, no parts.
    match next(&mut plain).await {
        Next::Frame(d) => assert!(d.packed.is_empty() && d.frame == event(1)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_coding_nobody_uses_is_not_compressed() {
    let hub = hub_with(compressing());
    let mut gzip = hub.subscribe(spec("k"), None).unwrap();
    gzip.compress_in(Coding::Gzip);
    let topic = gzip.topic().clone();
    topic.publish(Some("1"), event(1));
    let (_, part) = packed(&mut gzip, Coding::Gzip).await.remove(0);
    assert!(part.is_some());
    let mut zstd = hub.subscribe(spec("k"), None).unwrap();
    zstd.compress_in(Coding::Zstd);
    drop(gzip);
    topic.publish(Some("2"), event(2));
    let (_, part) = packed(&mut zstd, Coding::Zstd).await.remove(0);
    assert!(
        part.is_some_and(|p| p.starts),
        "zstd starts with its first frame"
    );
    // The gzip subscriber left: a new one finds no gzip part on the next frame.
    let mut late = hub.subscribe(spec("k"), Some("1")).unwrap();
    late.compress_in(Coding::Gzip);
    let (_, part) = packed(&mut late, Coding::Gzip).await.remove(0);
    assert!(part.is_none(), "frame 2 was compressed in zstd only");
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_tick_starts_a_segment_at_the_next_frame() {
    let hub = hub_with(compressing());
    let mut sub = hub.subscribe(spec("k"), None).unwrap();
    sub.compress_in(Coding::Gzip);
    let topic = sub.topic().clone();
    for i in 1..=2 {
        topic.publish(Some(&i.to_string()), event(i));
    }
    let parts = packed(&mut sub, Coding::Gzip).await;
    let starts: Vec<_> = parts
        .iter()
        .map(|(_, p)| p.as_ref().unwrap().starts)
        .collect();
    assert_eq!(starts, [true, false]);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(next(&mut sub).await, Next::Heartbeat);
    topic.publish(Some("3"), event(3));
    let (_, part) = packed(&mut sub, Coding::Gzip).await.remove(0);
    let part = part.unwrap();
    assert!(part.starts, "the frame after a tick starts a segment");
    assert_ne!(part.segment, parts[0].1.as_ref().unwrap().segment);
}

#[tokio::test]
async fn compressed_parts_are_counted_in_the_buffer_and_freed_with_the_ring() {
    let hub = hub_with(compressing());
    let gauge = hub.metrics().buffered_bytes.clone();
    let mut sub = hub.subscribe(spec("k"), None).unwrap();
    let topic = sub.topic().clone();
    topic.publish(Some("1"), event(1));
    let identity_only = gauge.get();
    sub.compress_in(Coding::Zstd);
    topic.publish(Some("2"), event(2));
    let (_, part) = packed(&mut sub, Coding::Zstd).await.pop().unwrap();
    let added = gauge.get() - identity_only;
    assert_eq!(added as usize, event(2).len() + part.unwrap().bytes.len());
    drop(sub);
    drop(topic);
    eventually_gauge_zero(&hub).await;
}

/// Waits (bounded) until the topic retired and its ring's bytes left the gauge.
async fn eventually_gauge_zero(hub: &Hub) {
    for _ in 0..200 {
        if hub.topic_count() == 0 && hub.metrics().buffered_bytes.get() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "ring not freed: {} bytes left",
        hub.metrics().buffered_bytes.get()
    );
}
