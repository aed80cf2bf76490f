//! The content coding a subscriber asks for (`Accept-Encoding`) and the decoder that turns its
//! stream's body back into the event stream (RFC 9110 §8.4): identity passes the bytes through
//! untouched, gzip and zstd are decoded incrementally, frame by frame, by flate2's and zstd's
//! decoders, so an event is parsed as soon as the compressed block that carries it has arrived.
//! A stream that does not decode is an error, never skipped over.

use std::io;

/// A content coding the client asks for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum Coding {
    /// No `Accept-Encoding`: the stream as it is.
    #[default]
    Identity,
    /// `Accept-Encoding: gzip` (RFC 1952).
    Gzip,
    /// `Accept-Encoding: zstd` (RFC 8878).
    Zstd,
}

impl Coding {
    /// The token sent in `Accept-Encoding` and expected back in `Content-Encoding`.
    pub fn token(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some("gzip"),
            Self::Zstd => Some("zstd"),
        }
    }
}

/// One stream's incremental decoder. Each decodes into a buffer of its own that it reuses,
/// so a piece of body costs the decoder's work and no allocation once the buffer is grown.
pub enum Decoder {
    /// Bytes pass through.
    Identity,
    /// A gzip member, decoded as its deflate blocks arrive.
    Gzip(Box<Gzip>),
    /// zstd frames (one after another), decoded as their blocks arrive.
    Zstd(Box<Zstd>),
}

impl Decoder {
    /// A decoder for a stream sent in `coding`.
    ///
    /// # Errors
    /// When zstd's decoder cannot be set up.
    pub fn new(coding: Coding) -> io::Result<Self> {
        Ok(match coding {
            Coding::Identity => Self::Identity,
            Coding::Gzip => Self::Gzip(Box::default()),
            Coding::Zstd => Self::Zstd(Box::new(Zstd {
                raw: zstd::stream::raw::Decoder::new()?,
                out: Vec::new(),
            })),
        })
    }

    /// Feeds one piece of the body; returns every byte of the event stream it completes (what
    /// the decoder can produce from the input so far, flushed).
    ///
    /// # Errors
    /// When the bytes are not a valid stream of the coding.
    pub fn feed<'a>(&'a mut self, data: &'a [u8]) -> io::Result<&'a [u8]> {
        match self {
            Self::Identity => Ok(data),
            Self::Gzip(d) => d.feed(data),
            Self::Zstd(d) => d.feed(data),
        }
    }
}

/// Room made in the output buffer before each decoding step, bytes.
const STEP: usize = 32 * 1024;

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A gzip member (RFC 1952): its header read here, its deflate blocks (RFC 1951) inflated by
/// flate2 with a sync flush, so every complete block's bytes come out at once.
pub struct Gzip {
    /// The header's bytes while it is incomplete.
    header: Vec<u8>,
    header_done: bool,
    inflate: flate2::Decompress,
    /// Bytes after the deflate stream's end (the trailer: CRC-32 and length, 8 bytes).
    trailer: usize,
    out: Vec<u8>,
}

impl Default for Gzip {
    fn default() -> Self {
        Self {
            header: Vec::new(),
            header_done: false,
            inflate: flate2::Decompress::new(false),
            trailer: 0,
            out: Vec::new(),
        }
    }
}

impl Gzip {
    fn feed(&mut self, data: &[u8]) -> io::Result<&[u8]> {
        self.out.clear();
        if self.header_done {
            self.inflate_all(data)?;
            return Ok(&self.out);
        }
        self.header.extend_from_slice(data);
        let Some(len) = header_len(&self.header)? else {
            return Ok(&self.out);
        };
        self.header_done = true;
        let rest = std::mem::take(&mut self.header);
        self.inflate_all(&rest[len..])?;
        Ok(&self.out)
    }

    fn inflate_all(&mut self, mut input: &[u8]) -> io::Result<()> {
        while !input.is_empty() && self.trailer == 0 {
            self.out.reserve(STEP);
            let before = self.inflate.total_in();
            let status = self
                .inflate
                .decompress_vec(input, &mut self.out, flate2::FlushDecompress::Sync)
                .map_err(invalid)?;
            let used = (self.inflate.total_in() - before) as usize;
            input = &input[used..];
            if status == flate2::Status::StreamEnd {
                self.trailer = 1;
            } else if used == 0 && self.out.len() < self.out.capacity() {
                break; // what is left waits for more input
            }
        }
        // After the last block: the 8-byte trailer, then nothing.
        self.trailer += input.len();
        if self.trailer > 1 + 8 {
            return Err(invalid("bytes after the gzip member's trailer"));
        }
        Ok(())
    }
}

/// The length of the gzip header at the start of `b` (RFC 1952 §2.3), or `None` while it is
/// incomplete.
fn header_len(b: &[u8]) -> io::Result<Option<usize>> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if b.len() < 10 {
        return Ok(None);
    }
    if b[..3] != [0x1f, 0x8b, 8] {
        return Err(invalid("not a gzip header"));
    }
    let flags = b[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let Some(len) = b.get(at..at + 2) else {
            return Ok(None);
        };
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            match b.get(at..).and_then(|r| r.iter().position(|&c| c == 0)) {
                Some(end) => at += end + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    Ok((b.len() >= at).then_some(at))
}

/// zstd frames (RFC 8878), one after another, decoded by zstd's streaming decoder, which
/// gives out every complete block's bytes.
pub struct Zstd {
    raw: zstd::stream::raw::Decoder<'static>,
    out: Vec<u8>,
}

impl Zstd {
    fn feed(&mut self, data: &[u8]) -> io::Result<&[u8]> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        self.out.clear();
        let mut input = InBuffer::around(data);
        loop {
            self.out.reserve(STEP);
            let pos = self.out.len();
            let mut output = OutBuffer::around_pos(&mut self.out, pos);
            self.raw.run(&mut input, &mut output)?;
            let full = output.pos() == output.capacity();
            if input.pos() == data.len() && !full {
                return Ok(&self.out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn events(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("id: {i}\ndata: {{\"seq\":{i},\"sent\":{}}}\n\n", i * 1000))
            .collect()
    }

    /// Feeds each compressed piece in two halves and checks that the event it carries is out
    /// by the end of the piece, nothing more, nothing less.
    fn each_piece_decodes_to_its_event(coding: Coding, pieces: &[Vec<u8>], events: &[String]) {
        let mut decoder = Decoder::new(coding).unwrap();
        for (piece, event) in pieces.iter().zip(events) {
            let (a, b) = piece.split_at(piece.len() / 2);
            let mut out = decoder.feed(a).unwrap().to_vec();
            out.extend_from_slice(decoder.feed(b).unwrap());
            assert_eq!(String::from_utf8(out).unwrap(), *event, "{coding:?}");
        }
    }

    #[test]
    fn a_sync_flushed_gzip_stream_decodes_event_by_event() {
        let events = events(5);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut pieces = Vec::new();
        for e in &events {
            encoder.write_all(e.as_bytes()).unwrap();
            encoder.flush().unwrap(); // a sync flush
            pieces.push(std::mem::take(encoder.get_mut()));
        }
        each_piece_decodes_to_its_event(Coding::Gzip, &pieces, &events);
    }

    #[test]
    fn flushed_zstd_blocks_decode_event_by_event_across_frames() {
        let events = events(6);
        let mut pieces = Vec::new();
        // Two frames of three events each, as a relay's segments would be.
        for frame in events.chunks(3) {
            let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            for (i, e) in frame.iter().enumerate() {
                encoder.write_all(e.as_bytes()).unwrap();
                if i + 1 == frame.len() {
                    pieces.push(encoder.finish().unwrap());
                    break;
                }
                encoder.flush().unwrap();
                pieces.push(std::mem::take(encoder.get_mut()));
            }
        }
        each_piece_decodes_to_its_event(Coding::Zstd, &pieces, &events);
    }

    #[test]
    fn a_gzip_header_with_every_optional_field_is_read_in_any_split() {
        // FEXTRA, FNAME, FCOMMENT and FHCRC, then an empty deflate block's sync flush.
        let mut stream = vec![0x1f, 0x8b, 8, 2 | 4 | 8 | 16, 0, 0, 0, 0, 0, 3, 3, 0];
        stream.extend_from_slice(b"abc");
        stream.extend_from_slice(b"name\0comment\0");
        stream.extend_from_slice(&[0xAA, 0xBB]);
        let header = stream.len();
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(b"data: x\n\n").unwrap();
        encoder.flush().unwrap();
        stream.extend_from_slice(encoder.get_ref());
        for split in [1, 5, 11, header - 1, header, header + 1] {
            let mut d = Decoder::new(Coding::Gzip).unwrap();
            let mut out = d.feed(&stream[..split]).unwrap().to_vec();
            out.extend_from_slice(d.feed(&stream[split..]).unwrap());
            assert_eq!(out, b"data: x\n\n", "split at {split}");
        }
    }

    #[test]
    fn output_larger_than_a_step_comes_out_whole() {
        let big = "data: ".to_string() + &"x".repeat(3 * STEP) + "\n\n";
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.write_all(big.as_bytes()).unwrap();
        encoder.flush().unwrap();
        let mut d = Decoder::new(Coding::Zstd).unwrap();
        assert_eq!(d.feed(encoder.get_ref()).unwrap(), big.as_bytes());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(big.as_bytes()).unwrap();
        gz.flush().unwrap();
        let mut d = Decoder::new(Coding::Gzip).unwrap();
        assert_eq!(d.feed(gz.get_ref()).unwrap(), big.as_bytes());
    }

    #[test]
    fn corrupt_bytes_are_an_error() {
        let mut gzip = Decoder::new(Coding::Gzip).unwrap();
        assert!(gzip.feed(b"not a gzip stream at all").is_err());
        let mut zstd = Decoder::new(Coding::Zstd).unwrap();
        assert!(zstd.feed(b"not a zstd stream at all").is_err());
    }

    #[test]
    fn identity_passes_bytes_through() {
        let mut d = Decoder::new(Coding::Identity).unwrap();
        assert_eq!(d.feed(b"data: x\n\n").unwrap(), b"data: x\n\n");
    }
}
