//! Hot-path costs of the SSE codec: parsing upstream bytes and encoding one event.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sse_relay::sse::{encode, Event, Item, Parser};
use std::hint::black_box;

const STREAM_BYTES: usize = 1 << 20;
const CHUNK_BYTES: usize = 16 << 10;

/// A typical ~200-byte JSON payload.
fn json_payload(seq: usize) -> String {
    format!(
        r#"{{"seq":{seq},"symbol":"YHOO","price":41.25,"change":0.12,"volume":1839200,"exchange":"NASDAQ","ts":"2024-05-01T12:34:56.789Z","tags":["equity","tech"],"note":"typical quote update payload"}}"#
    )
}

fn typical_event(seq: usize) -> Event {
    Event {
        id: Some(seq.to_string()),
        event_type: Some("quote".to_owned()),
        data: Some(json_payload(seq)),
    }
}

/// About 1 MiB of encoded typical events, with an occasional keep-alive comment.
fn typical_stream() -> Vec<u8> {
    let mut stream = Vec::with_capacity(STREAM_BYTES + 512);
    let mut seq = 0;
    while stream.len() < STREAM_BYTES {
        stream.extend_from_slice(&encode(&typical_event(seq)));
        if seq % 50 == 0 {
            stream.extend_from_slice(b": keep-alive\n\n");
        }
        seq += 1;
    }
    stream.truncate(STREAM_BYTES);
    stream
}

fn parse_stream(c: &mut Criterion) {
    let stream = typical_stream();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("1MiB_in_16KiB_chunks", |b| {
        let mut out: Vec<Item> = Vec::with_capacity(8192);
        b.iter(|| {
            let mut parser = Parser::new(64 << 10);
            out.clear();
            for chunk in stream.chunks(CHUNK_BYTES) {
                parser.feed(black_box(chunk), &mut out);
            }
            parser.finish();
            black_box(out.len())
        });
    });
    group.finish();
}

fn encode_event(c: &mut Criterion) {
    let event = typical_event(123_456);
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("typical_json_event", |b| {
        b.iter(|| encode(black_box(&event)));
    });
    group.finish();
}

criterion_group!(benches, parse_stream, encode_event);
criterion_main!(benches);
