//! The framing judged by the libraries' own decoders: every subscriber's stream, whatever
//! mix of shared parts and pieces of its own it got, decodes to exactly the identity bytes.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::*;

fn settings(events: u32) -> CompressionSettings {
    CompressionSettings {
        codings: [Some(Coding::Zstd), Some(Coding::Gzip)],
        segment: SegmentRule {
            events,
            bytes: 1 << 20,
            duration: Duration::from_secs(3600),
        },
        ..CompressionSettings::OFF
    }
}

fn frame(i: usize) -> Bytes {
    Bytes::from(format!(
        "id: {i}\ndata: {{\"symbol\":\"ACME\",\"price\":{}.{:02},\"volume\":{}}}\n\n",
        100 + i % 7,
        i % 100,
        i * 13
    ))
}

/// `n` frames of a topic with one subscriber of `coding`, each with its parts, segments of
/// `segment_events`.
fn topic(coding: Coding, segment_events: u32, n: usize) -> Vec<(Bytes, Option<Arc<Parts>>)> {
    let mut compressors = Compressors::new(settings(segment_events));
    compressors.join(coding);
    let now = Instant::now();
    (0..n)
        .map(|i| {
            let f = frame(i);
            let (parts, failure) = compressors.pack(&f, now);
            assert!(failure.is_none());
            (f, parts)
        })
        .collect()
}

fn decode(coding: Coding, stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        Coding::Gzip => {
            flate2::read::GzDecoder::new(stream)
                .read_to_end(&mut out)
                .expect("gzip decodes, trailer checked");
        }
        Coding::Zstd => {
            zstd::stream::read::Decoder::new(stream)
                .expect("decoder")
                .read_to_end(&mut out)
                .expect("zstd decodes");
        }
    }
    out
}

/// A subscriber reading frames `from..` of a topic, the topic's parts made by `compressors`.
struct Reader {
    coder: Coder,
    wire: Vec<u8>,
    plain: Vec<u8>,
    /// What the last call of `frames` sent.
    last: Bytes,
}

impl Reader {
    fn new(coding: Coding) -> Self {
        Self {
            coder: Coder::new(coding),
            wire: Vec::new(),
            plain: Vec::new(),
            last: Bytes::new(),
        }
    }
    fn own(&mut self, bytes: &[u8]) {
        let mut sent = Sent::default();
        let out = self.coder.own(bytes, &mut sent).unwrap();
        self.wire.extend_from_slice(&out);
        self.plain.extend_from_slice(bytes);
    }
    fn frames(&mut self, frames: &[(Bytes, Option<Arc<Parts>>)]) -> Sent {
        let mut sent = Sent::default();
        let out = self
            .coder
            .frames(
                frames.iter().map(|(f, p)| (f.as_ref(), p.as_deref())),
                &mut sent,
            )
            .unwrap();
        self.wire.extend_from_slice(&out);
        self.last = out;
        frames
            .iter()
            .for_each(|(f, _)| self.plain.extend_from_slice(f));
        sent
    }
    fn finish(mut self) -> (Vec<u8>, Vec<u8>) {
        let mut sent = Sent::default();
        let end = self.coder.finish(&mut sent);
        self.wire.extend_from_slice(&end);
        (self.wire, self.plain)
    }
}

#[test]
fn every_mix_of_shared_and_own_bytes_decodes_to_the_identity_stream() {
    for coding in Coding::ALL {
        let topic = topic(coding, 8, 40);
        // From the start; joining mid-segment; with own bytes (a heartbeat) mid-way; one
        // frame at a time and in batches.
        let mut first = Reader::new(coding);
        first.own(b": sse-relay\n\n");
        topic.chunks(1).for_each(|c| {
            first.frames(c);
        });
        let mut late = Reader::new(coding);
        late.own(b": sse-relay\n\n");
        topic[11..].chunks(5).for_each(|c| {
            late.frames(c);
        });
        let mut interrupted = Reader::new(coding);
        interrupted.frames(&topic[..13]);
        interrupted.own(b":\n\n");
        topic[13..].chunks(3).for_each(|c| {
            interrupted.frames(c);
        });
        for reader in [first, late, interrupted] {
            let (wire, plain) = reader.finish();
            assert_eq!(decode(coding, &wire), plain, "{coding:?}");
        }
    }
}

#[test]
fn a_subscriber_in_step_sends_the_shared_parts_and_one_that_joined_late_waits_for_a_boundary() {
    for coding in Coding::ALL {
        let topic = topic(coding, 4, 12);
        let starts: Vec<bool> = topic
            .iter()
            .map(|(_, p)| p.as_ref().unwrap().get(coding).unwrap().starts)
            .collect();
        assert_eq!(starts.iter().filter(|s| **s).count(), 3, "{starts:?}");
        let mut reader = Reader::new(coding);
        reader.frames(&topic[..1]);
        let sent = reader.frames(&topic[1..4]);
        assert_eq!(sent.own, 0, "in step: shared bytes only");
        let mut late = Reader::new(coding);
        let sent = late.frames(&topic[2..4]);
        assert_eq!(sent.shared, 0, "mid-segment: on its own");
        let sent = late.frames(&topic[4..6]);
        assert!(sent.shared > 0, "from the boundary on: shared");
        assert!(late.coder.is_shared());
    }
}

#[test]
fn a_cut_starts_a_segment_at_the_next_frame_and_a_coding_without_users_costs_nothing() {
    let mut compressors = Compressors::new(settings(1000));
    assert!(compressors.pack(&frame(0), Instant::now()).0.is_none());
    compressors.join(Coding::Gzip);
    let now = Instant::now();
    let first = compressors.pack(&frame(1), now).0.unwrap();
    let second = compressors.pack(&frame(2), now).0.unwrap();
    compressors.cut();
    let third = compressors.pack(&frame(3), now).0.unwrap();
    let part = |p: &Parts| p.get(Coding::Gzip).unwrap().clone();
    assert!(part(&first).starts && !part(&second).starts && part(&third).starts);
    assert_ne!(part(&second).segment, part(&third).segment);
    assert!(first.get(Coding::Zstd).is_none());
    compressors.leave(Coding::Gzip);
    assert!(!compressors.in_use());
    assert!(compressors.pack(&frame(4), now).0.is_none());
}

#[test]
fn shared_parts_shrink_a_stream_of_similar_events() {
    for coding in Coding::ALL {
        let mut compressors = Compressors::new(settings(256));
        compressors.join(coding);
        let now = Instant::now();
        let (mut plain, mut packed) = (0, 0);
        for i in 0..200 {
            let f = frame(i);
            plain += f.len();
            packed += compressors.pack(&f, now).0.unwrap().len();
        }
        assert!(packed * 2 < plain, "{coding:?}: {packed} of {plain}");
    }
}

#[test]
fn after_a_skip_the_next_part_of_the_same_segment_is_compressed_on_its_own() {
    for coding in Coding::ALL {
        let topic = topic(coding, 100, 10);
        let mut reader = Reader::new(coding);
        reader.frames(&topic[..3]);
        // A lag skip without any bytes of its own (no gap signal configured) jumps ahead.
        reader.coder.leave_shared();
        let sent = reader.frames(&topic[7..]);
        assert_eq!(
            sent.shared, 0,
            "{coding:?}: parts 7.. refer to 3..7, never sent"
        );
        let (wire, plain) = reader.finish();
        assert_eq!(decode(coding, &wire), plain, "{coding:?}");
    }
}

#[test]
fn a_join_brings_the_next_boundary_forward_to_a_quarter_of_a_segment() {
    let mut compressors = Compressors::new(settings(16));
    compressors.join(Coding::Gzip);
    let now = Instant::now();
    let starts = |n: usize, compressors: &mut Compressors| -> Vec<usize> {
        (0..n)
            .filter(|&i| {
                let (parts, _) = compressors.pack(&frame(i), now);
                parts.unwrap().get(Coding::Gzip).unwrap().starts
            })
            .collect()
    };
    assert_eq!(
        starts(20, &mut compressors),
        [0, 16],
        "no join: full segments"
    );
    // Frames 16..20 are in a segment; a join then ends it once it holds a quarter (4): at once.
    compressors.join(Coding::Gzip);
    assert_eq!(
        starts(20, &mut compressors),
        [0, 16],
        "the join's boundary, then full"
    );
    // The last segment holds 4 frames: a join ends it at once; a join right after that
    // boundary waits for the quarter.
    compressors.join(Coding::Gzip);
    assert_eq!(starts(1, &mut compressors), [0]);
    compressors.join(Coding::Gzip);
    assert_eq!(
        starts(8, &mut compressors),
        [3],
        "the segment fills its quarter first"
    );
}

#[test]
fn subscribers_waiting_for_a_boundary_share_one_piece_per_frame() {
    for coding in Coding::ALL {
        let topic = topic(coding, 16, 12);
        let mut early = Reader::new(coding);
        early.frames(&topic[..4]);
        // Two subscribers join mid-segment; each is handed frames 4.. one at a time.
        let (mut a, mut b) = (Reader::new(coding), Reader::new(coding));
        for (i, one) in topic[4..8].chunks(1).enumerate() {
            let sent_a = a.frames(one);
            let sent_b = b.frames(one);
            early.frames(one);
            assert_eq!(
                (sent_a.shared, sent_b.shared),
                (0, 0),
                "{coding:?}: not in step"
            );
            let piece = one[0].1.as_ref().unwrap().alone(coding, &one[0].0).unwrap();
            assert!(
                a.last.ends_with(&piece) && b.last.ends_with(&piece),
                "{coding:?}: frame {i} is the topic's piece"
            );
            if i > 0 {
                // (The first poll of a gzip stream joins its header to the piece.)
                assert_eq!(a.last.as_ptr(), piece.as_ptr(), "{coding:?}: not copied");
                assert_eq!(b.last.as_ptr(), piece.as_ptr(), "{coding:?}: made once");
            }
        }
        // Several frames at once (a reader behind) are compressed together, as before.
        let mut behind = Reader::new(coding);
        let sent = behind.frames(&topic[4..10]);
        assert_eq!(sent.shared, 0);
        let alone: usize = topic[4..10]
            .iter()
            .map(|(f, p)| p.as_ref().unwrap().alone(coding, f).unwrap().len())
            .sum();
        assert!(
            sent.own < alone as u64,
            "{coding:?}: one piece, smaller than six"
        );
        for reader in [early, a, b, behind] {
            let (wire, plain) = reader.finish();
            assert_eq!(decode(coding, &wire), plain, "{coding:?}");
        }
    }
}

#[test]
fn a_join_ends_a_long_segment_after_at_most_join_events() {
    let mut compressors = Compressors::new(settings(1024));
    compressors.join(Coding::Zstd);
    let now = Instant::now();
    let mut starts = Vec::new();
    for i in 0..200 {
        if i == 10 {
            compressors.join(Coding::Zstd);
        }
        let (parts, _) = compressors.pack(&frame(i), now);
        if parts.unwrap().get(Coding::Zstd).unwrap().starts {
            starts.push(i);
        }
    }
    // A quarter of 1024 would be 256 events: the join's boundary comes at JOIN_EVENTS.
    assert_eq!(starts, [0, shared::JOIN_EVENTS as usize]);
}

#[test]
fn a_join_ends_a_segment_at_a_quarter_of_its_bytes_or_of_its_time() {
    let rule = SegmentRule {
        events: 1024,
        bytes: 4000,
        duration: Duration::from_secs(40),
    };
    let settings = CompressionSettings {
        segment: rule,
        ..settings(1024)
    };
    // Bytes: frames of 500 bytes; a join at the third ends the segment once it holds 1000.
    let mut compressors = Compressors::new(settings);
    compressors.join(Coding::Gzip);
    let now = Instant::now();
    let big = Bytes::from(vec![b'x'; 500]);
    let mut starts = Vec::new();
    for i in 0..8 {
        if i == 2 {
            compressors.join(Coding::Gzip);
        }
        let (parts, _) = compressors.pack(&big, now);
        if parts.unwrap().get(Coding::Gzip).unwrap().starts {
            starts.push(i);
        }
    }
    assert_eq!(
        starts,
        [0, 2],
        "the segment held 1000 bytes when the join came"
    );
    // Time: small frames 3 s apart; after a join the boundary comes once the segment is 10 s
    // old (a quarter of 40 s), not at 40 s.
    let mut compressors = Compressors::new(settings);
    compressors.join(Coding::Gzip);
    let mut starts = Vec::new();
    for i in 0..8 {
        if i == 1 {
            compressors.join(Coding::Gzip);
        }
        let at = now + Duration::from_secs(3 * i as u64);
        let (parts, _) = compressors.pack(&frame(i), at);
        if parts.unwrap().get(Coding::Gzip).unwrap().starts {
            starts.push(i);
        }
    }
    assert_eq!(
        starts,
        [0, 4],
        "frame 4 comes 12 s after the segment started"
    );
}

#[test]
fn a_shared_zstd_compressor_stays_under_a_megabyte() {
    use zstd::zstd_safe::{CCtx, CParameter};
    let settings = settings(256);
    let mut context = CCtx::create();
    context
        .set_parameter(CParameter::CompressionLevel(settings.zstd_level))
        .unwrap();
    let mut encoder = zstd::stream::raw::Encoder::with_context(&mut context);
    flush::configure_zstd(&mut encoder, settings.segment.bytes).unwrap();
    let mut out = Vec::new();
    for i in 0..300 {
        flush::zstd_flushed(&mut encoder, &frame(i), &mut out).unwrap();
    }
    drop(encoder);
    let bytes = context.sizeof();
    assert!(bytes < 1 << 20, "{bytes} bytes");
    println!("a shared zstd compressor: {bytes} bytes");
}
