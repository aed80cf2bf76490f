//! Reading an origin's event stream body as the bytes the SSE parser takes: the body's own
//! frames when it carries no content coding, else the body decoded by its `Content-Encoding`
//! (RFC 9110 §8.4: the codings listed in the order they were applied, undone in reverse) with
//! the decoders of `async-compression`, in pieces of at most [`DECODED_PIECE`] bytes. Both the
//! topic's subscription ([`super::attempt`]) and catch-ups ([`super::replay`]) read through it;
//! [`ACCEPT_ENCODING`] is what their requests ([`super::request`]) offer.
//!
//! A decoded piece is handed on as soon as the decoder has it: an origin that flushes its
//! compressor after each event (gzip's sync flush, a zstd or brotli flush) has each event
//! parsed before its stream goes on. Memory stays bounded whatever the origin sends: the
//! decoder writes into one buffer of [`DECODED_PIECE`] bytes and keeps only its window
//! (32 KiB for gzip and deflate, RFC 1951 §2; at most 16 MiB for brotli, RFC 7932 §9.1; at
//! most 8 MiB for zstd, RFC 9659 §3, a larger window is refused), and the parser caps an event
//! at `max_event_bytes`; each piece spends the task's cooperative budget, so a decompression
//! bomb costs its topic CPU time, not other tasks their turn.
//!
//! This module never parses events and never judges a status or a media type: it only turns a
//! body into bytes, and tells a broken stream from one it cannot read.

use std::io;

use bytes::Bytes;
use http::header::CONTENT_ENCODING;
use http::HeaderMap;
use http_body::Body;
use http_body_util::BodyExt;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, BufReader};
use tokio_util::io::StreamReader;

use crate::ops::error_chain;

/// The `Accept-Encoding` the relay sends (RFC 9110 §12.5.3): the codings it decodes, as a
/// browser offers them, so an origin that compresses answers the relay as it answers browsers.
/// `identity` is always acceptable without being named.
pub const ACCEPT_ENCODING: &str = "gzip, deflate, br, zstd";

/// Largest piece of decoded bytes handed to the parser at once, bytes; also the buffer between
/// two stacked codings.
pub const DECODED_PIECE: usize = 16 * 1024;

/// Most content codings one response may stack (besides `identity`); more is unreadable. An
/// origin compresses once; twice is a misconfigured proxy in between, and each coding costs a
/// decoder window.
pub const MAX_CODINGS: usize = 2;

/// A content coding the relay decodes (RFC 9110 §8.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    /// `gzip` (RFC 1952), also spelled `x-gzip` (RFC 9110 §8.4.1.3); several members are read
    /// one after another.
    Gzip,
    /// `deflate`: a zlib stream (RFC 1950), RFC 9110 §8.4.1.2.
    Deflate,
    /// `br`: Brotli (RFC 7932).
    Brotli,
    /// `zstd`: Zstandard (RFC 8878), with a window of at most 8 MiB (RFC 9659 §3); several
    /// frames are read one after another.
    Zstd,
}

impl Coding {
    /// The coding a `Content-Encoding` token names, `Ok(None)` for `identity`; tokens are
    /// case-insensitive (RFC 9110 §8.4.1).
    fn parse(token: &str) -> Result<Option<Self>, ()> {
        match token.to_ascii_lowercase().as_str() {
            "identity" => Ok(None),
            "gzip" | "x-gzip" => Ok(Some(Self::Gzip)),
            "deflate" => Ok(Some(Self::Deflate)),
            "br" => Ok(Some(Self::Brotli)),
            "zstd" => Ok(Some(Self::Zstd)),
            _ => Err(()),
        }
    }

    /// A reader of `inner` with this coding undone.
    fn decoder(self, inner: Layer) -> Box<dyn AsyncRead + Send + Unpin> {
        use async_compression::tokio::bufread as codec;
        match self {
            Self::Gzip => {
                let mut decoder = codec::GzipDecoder::new(inner);
                decoder.multiple_members(true);
                Box::new(decoder)
            }
            Self::Deflate => Box::new(codec::ZlibDecoder::new(inner)),
            Self::Brotli => Box::new(codec::BrotliDecoder::new(inner)),
            Self::Zstd => {
                let mut decoder = codec::ZstdDecoder::new_for_http(inner);
                decoder.multiple_members(true);
                Box::new(decoder)
            }
        }
    }
}

/// One layer of a body being decoded: the compressed bytes the next decoder reads.
type Layer = Box<dyn AsyncBufRead + Send + Unpin>;

/// Why a response body cannot be read as an event stream.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    /// Its `Content-Encoding` names a coding the relay does not decode (`compress`, an unknown
    /// token), more than [`MAX_CODINGS`], or is not text.
    #[error("Content-Encoding {0:?} is not one the relay decodes")]
    Coding(String),
    /// Its bytes do not decode by its `Content-Encoding`.
    #[error("the {codings} stream does not decode: {error}")]
    Corrupt {
        /// The response's `Content-Encoding`.
        codings: String,
        /// The decoder's error.
        error: String,
    },
}

/// Why reading a body stopped before its end.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The stream broke, or ended in the middle of its compressed stream.
    Broke(String),
    /// Its bytes do not decode ([`Unreadable::Corrupt`]).
    Unreadable(Unreadable),
}

/// The body of an event stream, read as the bytes it carries.
pub(super) struct EventBody<B> {
    reading: Reading<B>,
}

enum Reading<B> {
    /// No content coding: the body's frames as they come, uncopied.
    Identity { body: B, chunk: Bytes },
    /// Decoded into `piece`, at most [`DECODED_PIECE`] bytes at a time.
    Decoded {
        reader: Box<dyn AsyncRead + Send + Unpin>,
        piece: Box<[u8]>,
        codings: String,
    },
}

/// A broken body under a decoder, told apart from the decoder's own errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BodyBroke(String);

impl<B> EventBody<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + 'static,
{
    /// Reads `body` by the `Content-Encoding` of `headers` (absent or `identity`: as it is).
    ///
    /// # Errors
    /// [`Unreadable::Coding`] for a coding the relay does not decode.
    pub fn new(headers: &HeaderMap, body: B) -> Result<Self, Unreadable> {
        let codings = codings(headers)?;
        // The first coding listed was applied first, so it is undone last (RFC 9110 §8.4).
        let Some((&first, later)) = codings.split_first() else {
            let chunk = Bytes::new();
            return Ok(Self {
                reading: Reading::Identity { body, chunk },
            });
        };
        let body = body.map_err(|e| io::Error::other(BodyBroke(error_chain(&e))));
        let mut layer: Layer = Box::new(StreamReader::new(body.into_data_stream()));
        for &coding in later.iter().rev() {
            let decoded = BufReader::with_capacity(DECODED_PIECE, coding.decoder(layer));
            layer = Box::new(decoded);
        }
        Ok(Self {
            reading: Reading::Decoded {
                reader: first.decoder(layer),
                piece: vec![0; DECODED_PIECE].into_boxed_slice(),
                codings: listed(headers),
            },
        })
    }

    /// The next bytes of the event stream, `None` at its end. Not cancel-safe: a cancelled
    /// read may lose bytes it had decoded, so a body whose read timed out is dropped.
    pub async fn next(&mut self) -> Option<Result<&[u8], ReadError>> {
        match &mut self.reading {
            Reading::Identity { body, chunk } => {
                let data = loop {
                    match body.frame().await? {
                        Ok(frame) => match frame.into_data() {
                            Ok(data) => break data,
                            Err(_) => continue,
                        },
                        Err(e) => return Some(Err(ReadError::Broke(error_chain(&e)))),
                    }
                };
                *chunk = data;
                Some(Ok(chunk))
            }
            Reading::Decoded {
                reader,
                piece,
                codings,
            } => match reader.read(piece).await {
                Ok(0) => None,
                Ok(n) => {
                    tokio::task::coop::consume_budget().await;
                    Some(Ok(&piece[..n]))
                }
                Err(e) => Some(Err(read_error(&e, codings))),
            },
        }
    }
}

/// The codings of a response, in the order they were applied, without `identity`: every
/// `Content-Encoding` field line, each a comma-separated list whose empty elements are ignored
/// (RFC 9110 §5.6.1.2).
///
/// # Errors
/// [`Unreadable::Coding`] for a value that is not text, a coding the relay does not decode, or
/// more than [`MAX_CODINGS`].
fn codings(headers: &HeaderMap) -> Result<Vec<Coding>, Unreadable> {
    let unreadable = || Unreadable::Coding(listed(headers));
    let mut codings = Vec::new();
    for value in headers.get_all(CONTENT_ENCODING) {
        let value = value.to_str().map_err(|_| unreadable())?;
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if let Some(coding) = Coding::parse(token).map_err(|()| unreadable())? {
                codings.push(coding);
            }
        }
    }
    if codings.len() > MAX_CODINGS {
        return Err(unreadable());
    }
    Ok(codings)
}

/// The `Content-Encoding` field lines of `headers`, joined for a log line.
fn listed(headers: &HeaderMap) -> String {
    let values: Vec<_> = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    values.join(", ")
}

/// What a decoder's read `error` means: the body under it broke or ended too soon, or its
/// bytes do not decode.
fn read_error(error: &io::Error, codings: &str) -> ReadError {
    if let Some(broke) = error.get_ref().and_then(|e| e.downcast_ref::<BodyBroke>()) {
        return ReadError::Broke(broke.0.clone());
    }
    if error.kind() == io::ErrorKind::UnexpectedEof {
        return ReadError::Broke(format!("the {codings} stream ended before its end"));
    }
    ReadError::Unreadable(Unreadable::Corrupt {
        codings: codings.to_string(),
        error: error_chain(error),
    })
}

#[cfg(test)]
mod tests;
