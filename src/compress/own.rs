//! Bytes a subscriber gets on its own (its stream's opening, a replayed backlog, a gap signal,
//! a heartbeat, the relay's farewell `retry:`, events until it reaches a segment boundary),
//! compressed standalone: a deflate piece from a reset compressor ending in a sync flush
//! (RFC 1951 §3.2.4), or a whole zstd frame (RFC 8878 §3.1.1). A piece refers to nothing
//! before it, so it may follow any piece or the end of a shared run.
//!
//! The compressors are scratch ones, one per worker thread and coding, reset for each piece:
//! a subscriber never holds one (memory per subscriber stays a few bytes, however many are on
//! their own at once). Their level is the fastest (1): these bytes are compressed once per
//! subscriber, not once per topic.

use std::cell::RefCell;
use std::io;

use bytes::Bytes;
use flate2::{Compress, Compression};
use zstd::stream::raw::{Encoder, InBuffer, Operation, OutBuffer};

use super::flush::{configure_zstd, deflate_flushed};
use super::Coding;

/// Level of the scratch compressors: the fastest of each library.
const OWN_LEVEL: u32 = 1;

/// Window of the scratch zstd compressor: pieces are one poll's bytes (a batch is at most
/// [`crate::hub::BATCH_BYTES`]-sized, an event at most `max_event_bytes`).
const OWN_ZSTD_WINDOW_BYTES: usize = 1 << 17;

thread_local! {
    static DEFLATE: RefCell<Option<Compress>> = const { RefCell::new(None) };
    static ZSTD: RefCell<Option<Encoder<'static>>> = const { RefCell::new(None) };
}

/// `plain` compressed on its own in `coding`: a piece that decodes without any bytes before
/// it. Appended to `out`.
///
/// # Errors
/// The compression library's (not expected: the input is any bytes).
pub fn compress(coding: Coding, plain: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    match coding {
        Coding::Gzip => DEFLATE.with(|cell| {
            let mut cell = cell.borrow_mut();
            let compress = match cell.as_mut() {
                Some(compress) => {
                    compress.reset();
                    compress
                }
                None => cell.insert(Compress::new(Compression::new(OWN_LEVEL), false)),
            };
            deflate_flushed(compress, plain, out)
        }),
        Coding::Zstd => ZSTD.with(|cell| {
            let mut cell = cell.borrow_mut();
            let encoder = match cell.as_mut() {
                Some(encoder) => {
                    encoder.reinit()?;
                    encoder
                }
                None => {
                    let mut encoder = Encoder::new(OWN_LEVEL as i32)?;
                    configure_zstd(&mut encoder, OWN_ZSTD_WINDOW_BYTES)?;
                    cell.insert(encoder)
                }
            };
            zstd_frame(encoder, plain, out)
        }),
    }
}

/// `plain` as one whole zstd frame (the frame's last block included), appended to `out`.
fn zstd_frame(encoder: &mut Encoder<'static>, plain: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let mut input = InBuffer::around(plain);
    out.reserve(plain.len() / 2 + 64);
    while input.pos() < plain.len() {
        let pos = out.len();
        encoder.run(&mut input, &mut OutBuffer::around_pos(out, pos))?;
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
    }
    loop {
        let pos = out.len();
        let remaining = encoder.finish(&mut OutBuffer::around_pos(out, pos), true)?;
        if remaining == 0 {
            return Ok(());
        }
        out.reserve(remaining.max(64));
    }
}

/// `plain` compressed on its own, as one buffer.
///
/// # Errors
/// As [`compress`].
pub fn piece(coding: Coding, plain: &[u8]) -> io::Result<Bytes> {
    let mut out = Vec::new();
    compress(coding, plain, &mut out)?;
    Ok(Bytes::from(out))
}
