//! The cost of the status page's history: one sample of the relay's metrics (the counters read,
//! the fan-out latency histogram's buckets copied, the rates and quantiles worked out), which
//! the relay takes once a second on a task of its own. Its time per sample is the CPU share it
//! takes from fan-out (see benches/RESULTS.md).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use prometheus::Registry;
use sse_relay::admin::history::{History, Sources, CAPACITY};
use sse_relay::admin::metrics::AdminMetrics;
use sse_relay::downstream::DownstreamMetrics;
use sse_relay::hub::HubMetrics;
use sse_relay::server::ServerMetrics;
use sse_relay::upstream::UpstreamMetrics;

fn sources() -> Sources {
    let r = Registry::new();
    Sources {
        hub: Arc::new(HubMetrics::new(&r, 100).expect("hub metrics")),
        upstream: Arc::new(UpstreamMetrics::new(&r).expect("upstream metrics")),
        downstream: Arc::new(DownstreamMetrics::new(&r).expect("downstream metrics")),
        server: Arc::new(ServerMetrics::new(&r).expect("server metrics")),
        admin: Arc::new(AdminMetrics::new(&r).expect("admin metrics")),
        request_streams: None,
    }
}

fn history(c: &mut Criterion) {
    let sources = sources();
    let history = History::new(CAPACITY);
    for n in 0..10_000u32 {
        sources
            .downstream
            .fanout_latency
            .observe(f64::from(n % 500) * 1e-5);
    }
    let mut before = sources.read();
    let mut unix_ms = 0;
    c.bench_function(
        "history: one sample (read, rates, quantiles, into the ring)",
        |b| {
            b.iter(|| {
                sources.downstream.events_delivered.inc_by(1000);
                let now = sources.read();
                unix_ms += 1000;
                history.record(sources.sample(unix_ms, &before, &now, Duration::from_secs(1)));
                before = black_box(now);
            });
        },
    );
}

criterion_group!(benches, history);
criterion_main!(benches);
