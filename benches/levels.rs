//! `cargo bench --bench levels`: what each compression level and segment length costs and
//! saves, through the relay's own shared compressor (`sse_relay::compress::Compressors`, the
//! code the ring calls for every appended frame) on the compression benchmark's three seeded
//! feeds, no network. For each feed, coding, level and segment length it prints the
//! compressed bytes as a share of identity and the time per event, the figures behind the
//! `[compression]` defaults (docs/compression.md, "Levels"). Times are the fastest of three
//! passes on one core; bytes are exact and the same every run.

use std::time::{Duration, Instant};

use fanout_bench::{Feed, FeedKind};
use sse_relay::compress::{Coding, CompressionSettings, Compressors, SegmentRule};

/// Events compressed per pass: ticks and deltas, and the far larger snapshots.
const SMALL_EVENTS: u64 = 4096;
const SNAPSHOT_EVENTS: u64 = 96;

/// The feed's first `n` events as the relay's frames (`id:` and `data:` lines), each with a
/// publish time 40 ms after the last plus a varying sub-millisecond part, as in the benchmark.
fn frames(kind: FeedKind, n: u64) -> Vec<Vec<u8>> {
    let mut feed = Feed::new(kind);
    (0..n)
        .map(|seq| {
            let sent = 1_796_600_000_000_000_000 + seq * 40_000_000 + (seq * 7_919) % 1_000_000;
            let data = Feed::event(seq, sent, &feed.next_rest());
            format!("id: {seq}\ndata: {data}\n\n").into_bytes()
        })
        .collect()
}

/// Compressed bytes of `frames` through one topic's compressor and the time per event (the
/// fastest of three passes).
fn run(frames: &[Vec<u8>], coding: Coding, level: i32, events: u32) -> (usize, Duration) {
    let settings = CompressionSettings {
        codings: [Some(coding), None],
        segment: SegmentRule {
            events,
            bytes: CompressionSettings::OFF.segment.bytes,
            duration: Duration::from_secs(3600),
        },
        gzip_level: level as u32,
        zstd_level: level,
    };
    let mut best = Duration::MAX;
    let mut bytes = 0;
    for _ in 0..3 {
        let mut compressors = Compressors::new(settings);
        compressors.join(coding);
        let now = tokio::time::Instant::now();
        bytes = 0;
        let started = Instant::now();
        for frame in frames {
            let (parts, failure) = compressors.pack(frame, now);
            assert!(failure.is_none(), "{failure:?}");
            bytes += parts
                .and_then(|p| p.get(coding).map(|p| p.bytes.len()))
                .unwrap_or(0);
        }
        best = best.min(started.elapsed() / frames.len() as u32);
    }
    (bytes, best)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let variants: [(Coding, i32, u32); 8] = [
        (Coding::Gzip, 6, 256),
        (Coding::Gzip, 9, 256),
        (Coding::Gzip, 9, 1024),
        (Coding::Zstd, 6, 256),
        (Coding::Zstd, 6, 1024),
        (Coding::Zstd, 12, 256),
        (Coding::Zstd, 12, 1024),
        (Coding::Zstd, 19, 1024),
    ];
    println!("| feed | coding | level | segment events | × identity | B/event | µs/event |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for kind in FeedKind::ALL {
        let n = match kind {
            FeedKind::Snapshots => SNAPSHOT_EVENTS,
            _ => SMALL_EVENTS,
        };
        let frames = frames(kind, n);
        let identity: usize = frames.iter().map(Vec::len).sum();
        for (coding, level, events) in variants {
            let (bytes, per_event) = run(&frames, coding, level, events);
            println!(
                "| {} ({} B) | {} | {level} | {events} | {:.3} | {:.1} | {:.1} |",
                kind.name(),
                identity / frames.len(),
                coding.token(),
                bytes as f64 / identity as f64,
                bytes as f64 / frames.len() as f64,
                per_event.as_secs_f64() * 1e6,
            );
        }
    }
}
