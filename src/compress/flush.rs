//! The two libraries' calls the relay's compressors share: a frame compressed and flushed at
//! once, so its bytes decode the moment they arrive (deflate's sync flush, zstd's block end),
//! and the zstd parameters of every frame the relay makes. Used by a topic's shared compressors
//! ([`super::shared`]) and the per-thread scratch ones ([`super::own`]); it holds no state and
//! knows nothing of segments or subscribers.

use std::io;

use flate2::{Compress, FlushCompress};
use zstd::stream::raw::{Encoder, InBuffer, Operation, OutBuffer};

/// The zstd parameters of the relay's frames: no checksum (a subscriber's frame may end with a
/// block of its own, RFC 8878 §3.1.1: the checksum would have to be its own too), no content
/// size (unknown while streaming), a window no larger than a segment needs and at most 64 KiB
/// (far below the 8 MB browsers' decoders accept, RFC 8878 §7.2), match tables of 2^15
/// entries (level 3's own tables and a 256 KiB window cost 1.8 MB per compressor, these about
/// 0.63 MB, `compress::tests::a_shared_zstd_compressor_stays_under_a_megabyte`), and matches
/// from 4 bytes where the higher levels' own tables ask for 5 or more: JSON events repeat
/// short runs (`","`, `":"` with a digit), and on 185-byte ticks flushed one by one level 12
/// sends 2 % fewer bytes with them, in the same time and memory (3-byte matches would cost
/// 0.3 MB more for the same bytes).
pub(super) fn configure_zstd(encoder: &mut Encoder<'_>, segment_bytes: usize) -> io::Result<()> {
    use zstd::stream::raw::CParameter;
    let window_log = segment_bytes
        .next_power_of_two()
        .trailing_zeros()
        .clamp(10, 16);
    encoder.set_parameter(CParameter::ChecksumFlag(false))?;
    encoder.set_parameter(CParameter::ContentSizeFlag(false))?;
    encoder.set_parameter(CParameter::WindowLog(window_log))?;
    encoder.set_parameter(CParameter::HashLog(15))?;
    encoder.set_parameter(CParameter::ChainLog(15))?;
    encoder.set_parameter(CParameter::MinMatch(4))?;
    Ok(())
}

/// Compresses `input` with `compress` and flushes it (RFC 1951 §3.2.4: a sync flush ends with
/// an empty stored block, byte-aligned), appending to `out`.
pub(super) fn deflate_flushed(
    compress: &mut Compress,
    input: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let start = compress.total_in();
    out.reserve(input.len() / 2 + 64);
    loop {
        let consumed = (compress.total_in() - start) as usize;
        compress
            .compress_vec(&input[consumed..], out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        let all_in = (compress.total_in() - start) as usize == input.len();
        if all_in && out.len() < out.capacity() {
            return Ok(());
        }
        out.reserve(out.capacity().max(64));
    }
}

/// Compresses `input` with `encoder` and flushes it (RFC 8878 §3.1.1.2: the block ends, the
/// frame stays open), appending to `out`.
pub(super) fn zstd_flushed(
    encoder: &mut Encoder<'_>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut input = InBuffer::around(input);
    out.reserve(input.src.len() / 2 + 64);
    while input.pos() < input.src.len() {
        let pos = out.len();
        let mut output = OutBuffer::around_pos(out, pos);
        encoder.run(&mut input, &mut output)?;
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
    }
    loop {
        let pos = out.len();
        let remaining = encoder.flush(&mut OutBuffer::around_pos(out, pos))?;
        if remaining == 0 {
            return Ok(());
        }
        out.reserve(remaining.max(64));
    }
}
