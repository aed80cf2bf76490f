//! The content coding a subscriber asks for (`Accept-Encoding`) and the decoder that turns its
//! stream's body back into the event stream (RFC 9110 §8.4): identity passes the bytes through
//! untouched, gzip and zstd are decoded incrementally, frame by frame, by flate2's and zstd's
//! decoders, so an event is parsed as soon as the compressed block that carries it has arrived.
//! A stream that does not decode is an error, never skipped over.

use std::borrow::Cow;
use std::io::{self, Write};

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

/// One stream's incremental decoder.
pub enum Decoder {
    /// Bytes pass through.
    Identity,
    /// A gzip member, decoded as its deflate blocks arrive.
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    /// zstd frames (one after another), decoded as their blocks arrive.
    Zstd(Box<zstd::stream::write::Decoder<'static, Vec<u8>>>),
}

impl Decoder {
    /// A decoder for a stream sent in `coding`.
    ///
    /// # Errors
    /// When zstd's decoder cannot be set up.
    pub fn new(coding: Coding) -> io::Result<Self> {
        Ok(match coding {
            Coding::Identity => Self::Identity,
            Coding::Gzip => Self::Gzip(Box::new(flate2::write::GzDecoder::new(Vec::new()))),
            Coding::Zstd => Self::Zstd(Box::new(zstd::stream::write::Decoder::new(Vec::new())?)),
        })
    }

    /// Feeds one piece of the body; returns every byte of the event stream it completes (what
    /// the decoder can produce from the input so far, flushed).
    ///
    /// # Errors
    /// When the bytes are not a valid stream of the coding.
    pub fn feed<'a>(&mut self, data: &'a [u8]) -> io::Result<Cow<'a, [u8]>> {
        match self {
            Self::Identity => Ok(Cow::Borrowed(data)),
            Self::Gzip(d) => {
                d.write_all(data)?;
                d.flush()?;
                Ok(Cow::Owned(std::mem::take(d.get_mut())))
            }
            Self::Zstd(d) => {
                d.write_all(data)?;
                d.flush()?;
                Ok(Cow::Owned(std::mem::take(d.get_mut())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let mut out = decoder.feed(a).unwrap().into_owned();
            out.extend_from_slice(&decoder.feed(b).unwrap());
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
    fn corrupt_bytes_are_an_error() {
        let mut gzip = Decoder::new(Coding::Gzip).unwrap();
        assert!(gzip.feed(b"not a gzip stream at all").is_err());
        let mut zstd = Decoder::new(Coding::Zstd).unwrap();
        assert!(zstd.feed(b"not a zstd stream at all").is_err());
    }

    #[test]
    fn identity_passes_bytes_through() {
        let mut d = Decoder::new(Coding::Identity).unwrap();
        assert_eq!(&*d.feed(b"data: x\n\n").unwrap(), b"data: x\n\n");
    }
}
