//! Compressing an event stream as an origin does (tests only): each frame compressed and
//! flushed at once (gzip's and deflate's sync flush, a brotli or zstd flush), so every event's
//! compressed bytes leave before the next event exists, and the compressed stream finished
//! when the frames end.

use std::io;

use async_compression::tokio::write as encode;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use hyper::body::Frame;
use tokio::io::AsyncWriteExt;

/// A compressor of one content coding writing into a `Vec`.
pub enum Compressor {
    Gzip(encode::GzipEncoder<Vec<u8>>),
    Deflate(encode::ZlibEncoder<Vec<u8>>),
    /// Boxed: a brotli encoder's state is large.
    Brotli(Box<encode::BrotliEncoder<Vec<u8>>>),
    Zstd(encode::ZstdEncoder<Vec<u8>>),
}

macro_rules! each {
    ($compressor:expr, $e:ident => $body:expr) => {
        match $compressor {
            Compressor::Gzip($e) => $body,
            Compressor::Deflate($e) => $body,
            Compressor::Brotli($e) => $body,
            Compressor::Zstd($e) => $body,
        }
    };
}

impl Compressor {
    /// A compressor of `coding` (`gzip`, `deflate`, `br`, `zstd`).
    pub fn new(coding: &str) -> Self {
        match coding {
            "gzip" => Self::Gzip(encode::GzipEncoder::new(Vec::new())),
            "deflate" => Self::Deflate(encode::ZlibEncoder::new(Vec::new())),
            "br" => Self::Brotli(Box::new(encode::BrotliEncoder::new(Vec::new()))),
            "zstd" => Self::Zstd(encode::ZstdEncoder::new(Vec::new())),
            other => panic!("no encoder for {other}"),
        }
    }

    /// Compresses `data` and flushes: the bytes that carry it.
    pub async fn flushed(&mut self, data: &[u8]) -> Vec<u8> {
        each!(self, e => {
            e.write_all(data).await.unwrap();
            e.flush().await.unwrap();
            std::mem::take(e.get_mut())
        })
    }

    /// Ends the compressed stream: its last bytes.
    pub async fn finish(mut self) -> Vec<u8> {
        each!(&mut self, e => {
            e.shutdown().await.unwrap();
            std::mem::take(e.get_mut())
        })
    }
}

/// `frames` compressed by `coding`, each flushed as it comes; an error passes as it is.
pub fn compress<S>(
    coding: &str,
    frames: S,
) -> impl Stream<Item = Result<Frame<Bytes>, io::Error>> + Send + 'static
where
    S: Stream<Item = Result<Frame<Bytes>, io::Error>> + Send + Unpin + 'static,
{
    let state = (frames, Some(Compressor::new(coding)));
    futures_util::stream::unfold(state, |(mut frames, mut compressor)| async move {
        let bytes = match frames.next().await {
            Some(Ok(frame)) => {
                let data = frame.into_data().unwrap_or_default();
                compressor.as_mut()?.flushed(&data).await
            }
            Some(Err(e)) => return Some((Err(e), (frames, compressor))),
            None => compressor.take()?.finish().await,
        };
        Some((Ok(Frame::data(Bytes::from(bytes))), (frames, compressor)))
    })
}
