//! Hot-path costs of the hub: handing one event to many subscribers (identity, and in gzip and
//! zstd: the topic's one compression plus each subscriber's framing of the shared part), and a
//! subscriber that is behind catching up (waiting events joined into batches,
//! `topic::BATCH_BYTES`). Guards the
//! per-delivery work measured end to end by the fan-out benchmark (`benches/fanout/`, see RESULTS.md).

use std::hint::black_box;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sse_relay::compress::{Coder, Coding, CompressionSettings, Sent};
use sse_relay::hub::{Next, Subscription};

#[path = "fixtures/hub.rs"]
mod fixture;
use fixture::{hub, hub_compressing, spec};

/// A typical encoded event: an id and a ~200-byte JSON payload.
fn event(seq: u64) -> Bytes {
    Bytes::from(format!(
        "id: {seq}\ndata: {{\"seq\":{seq},\"symbol\":\"ACME\",\"price\":101.25,\"pad\":\"{}\"}}\n\n",
        "x".repeat(140)
    ))
}

/// Polls until nothing is ready; returns the events handed over.
fn drain(sub: &mut Subscription, cx: &mut Context<'_>) -> u64 {
    let mut events = 0;
    while let Poll::Ready(Next::Frame(d)) = sub.poll_next(cx) {
        events += d.events;
        black_box(d.frame);
    }
    events
}

/// As [`drain`], each delivery framed by the subscriber's coder as its body does.
fn drain_compressed(sub: &mut Subscription, coder: &mut Coder, cx: &mut Context<'_>) -> u64 {
    let mut events = 0;
    while let Poll::Ready(Next::Frame(d)) = sub.poll_next(cx) {
        events += d.events;
        let frames = d
            .packed
            .as_slice()
            .iter()
            .map(|p| (p.frame.as_ref(), p.parts.as_deref()));
        black_box(
            coder
                .frames(frames, &mut Sent::default())
                .expect("compressed"),
        );
    }
    events
}

fn delivery(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = runtime.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("delivery");

    let hub = hub();
    let mut subs: Vec<_> = (0..1000)
        .map(|_| hub.subscribe(spec(), None).expect("subscribe"))
        .collect();
    let topic = subs[0].topic().clone();
    let mut seq = 0;
    group.throughput(Throughput::Elements(subs.len() as u64));
    group.bench_function("one_event_to_1000_subscribers", |b| {
        b.iter(|| {
            seq += 1;
            topic.publish(Some(&seq.to_string()), event(seq));
            let handed: u64 = subs.iter_mut().map(|s| drain(s, &mut cx)).sum();
            assert_eq!(handed, 1000);
        })
    });
    drop(subs);

    for coding in Coding::ALL {
        let hub = hub_compressing(CompressionSettings {
            codings: [Some(coding), None],
            ..CompressionSettings::OFF
        });
        let mut subs: Vec<_> = (0..1000)
            .map(|_| {
                let mut sub = hub.subscribe(spec(), None).expect("subscribe");
                sub.compress_in(coding);
                (sub, Coder::new(coding))
            })
            .collect();
        let topic = subs[0].0.topic().clone();
        let name = format!("one_event_to_1000_{}_subscribers", coding.token());
        group.bench_function(&name, |b| {
            b.iter(|| {
                seq += 1;
                topic.publish(Some(&seq.to_string()), event(seq));
                let handed: u64 = subs
                    .iter_mut()
                    .map(|(s, coder)| drain_compressed(s, coder, &mut cx))
                    .sum();
                assert_eq!(handed, 1000);
            })
        });
    }

    let hub = self::hub();
    let mut sub = hub.subscribe(spec(), None).expect("subscribe");
    let topic = sub.topic().clone();
    group.throughput(Throughput::Elements(256));
    group.bench_function("catch_up_256_waiting_events", |b| {
        b.iter(|| {
            for _ in 0..256 {
                seq += 1;
                topic.publish(Some(&seq.to_string()), event(seq));
            }
            assert_eq!(drain(&mut sub, &mut cx), 256);
        })
    });
    group.finish();
}

criterion_group!(benches, delivery);
criterion_main!(benches);
