//! What keeps a broken stream from giving a good figure, and the per-message reference: the
//! events of a decoded stream cut into blocks, each sample stream's blocks compared byte for
//! byte with those of the identity stream (the witness) that subscribed to the same server in
//! the same run, and every event frame of the witness gzipped on its own, the way per-message
//! compression would send it. It reads captured bytes only; it measures nothing on the wire.

use std::io::Write as _;
use std::time::Instant;

use anyhow::{bail, Result};

/// The event blocks of a decoded event stream: the text before each blank line that holds a
/// field (comment-only blocks, e.g. heartbeats, are left out); an unfinished last block too.
pub fn event_blocks(stream: &[u8]) -> Vec<&[u8]> {
    let mut blocks = Vec::new();
    let mut rest = stream;
    while let Some(end) = rest.windows(2).position(|w| w == b"\n\n") {
        let block = &rest[..end];
        rest = &rest[end + 2..];
        if block.split(|&b| b == b'\n').any(|l| !l.starts_with(b":")) {
            blocks.push(block);
        }
    }
    blocks
}

/// Checks that `sample` decoded to exactly the events of `witness` (both subscribed before the
/// first event was published and read to after the last); returns the events compared.
///
/// # Errors
/// On any difference, naming the first differing event.
pub fn same_events(witness: &[u8], sample: &[u8]) -> Result<usize> {
    let (w, s) = (event_blocks(witness), event_blocks(sample));
    if let Some(i) = (0..w.len().min(s.len())).find(|&i| w[i] != s[i]) {
        bail!(
            "event {i} differs from the identity stream's: {:?} vs {:?}",
            shown(s[i]),
            shown(w[i])
        );
    }
    if w.len() != s.len() {
        bail!(
            "{} events decoded, the identity stream had {}",
            s.len(),
            w.len()
        );
    }
    Ok(w.len())
}

fn shown(block: &[u8]) -> String {
    String::from_utf8_lossy(&block[..block.len().min(160)]).into_owned()
}

/// The last `n` event frames (blocks with a `data:` line, with their blank line) of a stream.
pub fn last_frames(stream: &[u8], n: usize) -> Vec<Vec<u8>> {
    let events: Vec<&[u8]> = event_blocks(stream)
        .into_iter()
        .filter(|b| b.split(|&c| c == b'\n').any(|l| l.starts_with(b"data:")))
        .collect();
    events[events.len().saturating_sub(n)..]
        .iter()
        .map(|b| [*b, b"\n\n"].concat())
        .collect()
}

/// Each frame gzipped on its own at `level` (a gzip member each: header, deflate, trailer).
#[derive(Debug, Clone, Copy, Default)]
pub struct Standalone {
    /// Mean frame size, bytes.
    pub identity_bytes: f64,
    /// Mean gzip member size, bytes.
    pub gzip_bytes: f64,
    /// Mean time to gzip one frame here, µs (what a compressor per subscriber would spend per
    /// delivery).
    pub gzip_us: f64,
}

/// Gzips every frame on its own at `level`.
pub fn standalone_gzip(frames: &[Vec<u8>], level: u32) -> Result<Standalone> {
    let n = frames.len().max(1) as f64;
    let mut gzip = 0usize;
    let started = Instant::now();
    for frame in frames {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(frame)?;
        gzip += e.finish()?.len();
    }
    let elapsed = started.elapsed();
    Ok(Standalone {
        identity_bytes: frames.iter().map(Vec::len).sum::<usize>() as f64 / n,
        gzip_bytes: gzip as f64 / n,
        gzip_us: elapsed.as_secs_f64() * 1e6 / n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITNESS: &[u8] = b": sse-relay\nretry: 2000\n\nid: 1\ndata: a\n\n:\n\nid: 2\ndata: b\n\n";

    #[test]
    fn comments_are_not_events_and_fields_are() {
        let blocks = event_blocks(WITNESS);
        assert_eq!(
            blocks,
            vec![
                &b": sse-relay\nretry: 2000"[..],
                b"id: 1\ndata: a",
                b"id: 2\ndata: b"
            ]
        );
    }

    #[test]
    fn a_sample_must_decode_to_the_witness_events_exactly() {
        let heartbeat_elsewhere =
            b": sse-relay\nretry: 2000\n\n:\n\nid: 1\ndata: a\n\nid: 2\ndata: b\n\n";
        assert_eq!(same_events(WITNESS, heartbeat_elsewhere).unwrap(), 3);
        let changed = b": sse-relay\nretry: 2000\n\nid: 1\ndata: a\n\nid: 2\ndata: c\n\n";
        assert!(same_events(WITNESS, changed).is_err());
        let short = b": sse-relay\nretry: 2000\n\nid: 1\ndata: a\n\n";
        assert!(same_events(WITNESS, short).is_err());
    }

    #[test]
    fn the_last_frames_are_the_events_with_their_blank_line() {
        assert_eq!(
            last_frames(WITNESS, 1),
            vec![b"id: 2\ndata: b\n\n".to_vec()]
        );
        assert_eq!(
            last_frames(WITNESS, 5).len(),
            2,
            "the retry block is no event"
        );
    }

    #[test]
    fn standalone_gzip_makes_one_member_per_frame() {
        let frames = last_frames(WITNESS, 2);
        let s = standalone_gzip(&frames, 6).unwrap();
        assert_eq!(s.identity_bytes, 15.0);
        // A gzip member is at least 18 bytes of header and trailer.
        assert!(s.gzip_bytes > 18.0);
    }
}
