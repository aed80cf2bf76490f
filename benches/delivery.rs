//! Hot-path costs of the hub: handing one event to many subscribers, and a subscriber that is
//! behind catching up (waiting events joined into batches, `topic::BATCH_BYTES`). Guards the
//! per-delivery work measured end to end by the fan-out benchmark (`benches/fanout/`, see RESULTS.md).

use std::hint::black_box;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sse_relay::hub::{Next, Subscription};

#[path = "fixtures/hub.rs"]
mod fixture;
use fixture::{hub, spec};

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
