use std::pin::Pin;

use async_compression::tokio::write as encode;
use futures_util::Stream;
use http::HeaderValue;
use http_body_util::StreamBody;
use hyper::body::Frame;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::*;

/// How long a read that should return at once may take before the test fails.
const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

type Chunks = Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, io::Error>> + Send>>;
type TestBody = StreamBody<Chunks>;

fn headers(values: &[&str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append(CONTENT_ENCODING, HeaderValue::from_str(value).unwrap());
    }
    headers
}

/// A body of the chunks sent on the returned sender, open until it is dropped.
fn channel_body() -> (mpsc::UnboundedSender<io::Result<Bytes>>, TestBody) {
    let (tx, rx) = mpsc::unbounded_channel::<io::Result<Bytes>>();
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((chunk.map(Frame::data), rx))
    });
    (tx, StreamBody::new(Box::pin(chunks)))
}

/// A body of `chunks`, then its end.
fn body_of(chunks: Vec<Vec<u8>>) -> TestBody {
    let frames = chunks.into_iter().map(|c| Ok(Frame::data(Bytes::from(c))));
    StreamBody::new(Box::pin(futures_util::stream::iter(frames)))
}

/// A compressor of one coding writing into a `Vec`, as an origin that flushes each event.
enum Compressor {
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
    fn new(coding: &str) -> Self {
        match coding {
            "gzip" => Self::Gzip(encode::GzipEncoder::new(Vec::new())),
            "deflate" => Self::Deflate(encode::ZlibEncoder::new(Vec::new())),
            "br" => Self::Brotli(Box::new(encode::BrotliEncoder::new(Vec::new()))),
            "zstd" => Self::Zstd(encode::ZstdEncoder::new(Vec::new())),
            other => panic!("no encoder for {other}"),
        }
    }

    /// Compresses `data` and flushes: the bytes that carry it.
    async fn flushed(&mut self, data: &[u8]) -> Vec<u8> {
        each!(self, e => {
            e.write_all(data).await.unwrap();
            e.flush().await.unwrap();
            std::mem::take(e.get_mut())
        })
    }

    /// Ends the compressed stream: its last bytes.
    async fn finish(mut self) -> Vec<u8> {
        each!(&mut self, e => {
            e.shutdown().await.unwrap();
            std::mem::take(e.get_mut())
        })
    }
}

/// `data` compressed by `coding`, finished.
async fn compressed(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut compressor = Compressor::new(coding);
    let mut out = compressor.flushed(data).await;
    out.extend(compressor.finish().await);
    out
}

/// Reads `body` to its end: the bytes, and the error it ended with.
async fn read_all(body: &mut EventBody<TestBody>) -> (Vec<u8>, Option<ReadError>) {
    let mut out = Vec::new();
    while let Some(next) = body.next().await {
        match next {
            Ok(piece) => {
                assert!(piece.len() <= DECODED_PIECE, "a piece of {}", piece.len());
                out.extend_from_slice(piece);
            }
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

#[test]
fn codings_are_listed_in_the_order_applied_without_identity() {
    let parse = |values: &[&str]| codings(&headers(values)).map_err(|e| e.to_string());
    assert_eq!(parse(&[]).unwrap(), []);
    assert_eq!(parse(&["identity"]).unwrap(), []);
    assert_eq!(parse(&["GZip"]).unwrap(), [Coding::Gzip]);
    assert_eq!(parse(&["x-gzip"]).unwrap(), [Coding::Gzip]);
    assert_eq!(
        parse(&["deflate, ,br"]).unwrap(),
        [Coding::Deflate, Coding::Brotli]
    );
    assert_eq!(
        parse(&["zstd", "identity, gzip"]).unwrap(),
        [Coding::Zstd, Coding::Gzip],
        "field lines are one list"
    );
    for unreadable in [&["compress"][..], &["gzip, foo"], &["gzip, br, zstd"]] {
        assert!(parse(unreadable).is_err(), "{unreadable:?}");
    }
    let mut binary = HeaderMap::new();
    binary.insert(
        CONTENT_ENCODING,
        HeaderValue::from_bytes(b"gz\xffip").unwrap(),
    );
    assert!(codings(&binary).is_err(), "a value that is not text");
}

#[tokio::test]
async fn an_identity_body_is_handed_on_frame_by_frame() {
    let chunks = vec![b"data: a\n".to_vec(), b"\n".to_vec()];
    let mut body = EventBody::new(&headers(&["identity"]), body_of(chunks)).unwrap();
    assert!(matches!(body.reading, Reading::Identity { .. }));
    assert_eq!(body.next().await.unwrap().unwrap(), b"data: a\n");
    assert_eq!(body.next().await.unwrap().unwrap(), b"\n");
    assert!(body.next().await.is_none());
}

/// Each flushed event is decoded from the bytes that carry it, while the body stays open.
#[tokio::test]
async fn a_flushed_event_is_decoded_before_more_input_comes() {
    for coding in ["gzip", "deflate", "br", "zstd"] {
        let (tx, chunks) = channel_body();
        let mut body = EventBody::new(&headers(&[coding]), chunks).unwrap();
        let mut compressor = Compressor::new(coding);
        for n in 0..3 {
            let event = format!("data: event {n}\n\n");
            let flushed = compressor.flushed(event.as_bytes()).await;
            tx.send(Ok(Bytes::from(flushed))).unwrap();
            // A decoder that waited for more input would wait for ever: the body stays open.
            let next = tokio::time::timeout(WAIT, body.next()).await;
            let piece = next.expect("decoded without more input").unwrap().unwrap();
            assert_eq!(piece, event.as_bytes(), "{coding}: event {n}");
        }
    }
}

#[tokio::test]
async fn a_finished_stream_ends_and_stacked_codings_are_undone_in_reverse() {
    let text = b"id: 1\ndata: stacked\n\n";
    for coding in ["gzip", "deflate", "br", "zstd"] {
        let mut body = EventBody::new(
            &headers(&[coding]),
            body_of(vec![compressed(coding, text).await]),
        )
        .unwrap();
        let (out, error) = read_all(&mut body).await;
        assert_eq!(
            (out.as_slice(), error.is_none()),
            (&text[..], true),
            "{coding}"
        );
    }
    // `gzip, br`: gzip was applied first, so br is undone first.
    let twice = compressed("br", &compressed("gzip", text).await).await;
    let mut body = EventBody::new(&headers(&["gzip, br"]), body_of(vec![twice])).unwrap();
    let (out, error) = read_all(&mut body).await;
    assert_eq!((out.as_slice(), error.is_none()), (&text[..], true));
}

/// A gzip bomb (32 MiB of zeros in about 32 KiB) comes out in pieces of at most
/// [`DECODED_PIECE`], never at once.
#[tokio::test]
async fn a_bomb_is_decoded_in_bounded_pieces() {
    const SIZE: usize = 32 << 20;
    let bomb = compressed("gzip", &vec![0; SIZE]).await;
    assert!(bomb.len() < SIZE / 500, "{} compressed bytes", bomb.len());
    let mut body = EventBody::new(&headers(&["gzip"]), body_of(vec![bomb])).unwrap();
    let (mut total, mut pieces) = (0, 0);
    while let Some(piece) = body.next().await {
        let piece = piece.unwrap();
        assert!(piece.len() <= DECODED_PIECE);
        total += piece.len();
        pieces += 1;
    }
    assert_eq!(total, SIZE);
    assert!(pieces >= SIZE / DECODED_PIECE);
}

/// A zstd frame that needs a window over 8 MiB is refused before its window is allocated
/// (RFC 9659 §3).
#[tokio::test]
async fn a_zstd_window_over_8_mib_is_refused() {
    use async_compression::zstd::CParameter;
    let mut e = encode::ZstdEncoder::with_quality_and_params(
        Vec::new(),
        async_compression::Level::Default,
        &[CParameter::window_log(24)],
    );
    e.write_all(b"data: wide\n\n").await.unwrap();
    e.shutdown().await.unwrap();
    let mut body = EventBody::new(&headers(&["zstd"]), body_of(vec![e.into_inner()])).unwrap();
    let (out, error) = read_all(&mut body).await;
    assert!(out.is_empty());
    assert!(matches!(
        error,
        Some(ReadError::Unreadable(Unreadable::Corrupt { .. }))
    ));
}

#[tokio::test]
async fn corrupt_bytes_are_unreadable_after_what_decoded() {
    let mut compressor = Compressor::new("gzip");
    let good = compressor.flushed(b"data: good\n\n").await;
    let mut chunks = vec![good, compressor.finish().await];
    chunks.push(b"data: not gzip\n\n".to_vec());
    let mut body = EventBody::new(&headers(&["gzip"]), body_of(chunks)).unwrap();
    let (out, error) = read_all(&mut body).await;
    assert_eq!(out, b"data: good\n\n");
    match error {
        Some(ReadError::Unreadable(e @ Unreadable::Corrupt { .. })) => {
            assert!(
                e.to_string().starts_with("the gzip stream does not decode"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_cut_or_broken_body_under_a_coding_is_a_broken_stream() {
    let mut compressor = Compressor::new("gzip");
    let unfinished = compressor.flushed(b"data: cut\n\n").await;
    let mut body = EventBody::new(&headers(&["gzip"]), body_of(vec![unfinished])).unwrap();
    let (out, error) = read_all(&mut body).await;
    assert_eq!(out, b"data: cut\n\n");
    assert!(matches!(error, Some(ReadError::Broke(_))), "{error:?}");

    let (tx, chunks) = channel_body();
    let mut body = EventBody::new(&headers(&["br"]), chunks).unwrap();
    tx.send(Err(io::Error::other("connection reset"))).unwrap();
    match body.next().await {
        Some(Err(ReadError::Broke(reason))) => assert_eq!(reason, "connection reset"),
        other => panic!("{:?}", other.map(|r| r.map(<[u8]>::to_vec))),
    }
}

#[tokio::test]
async fn bytes_in_another_coding_are_unreadable() {
    let text = b"data: plain\n\n";
    for (coding, bytes) in [
        ("gzip", text.to_vec()),
        ("gzip", compressed("br", text).await),
        ("br", text.to_vec()),
        ("zstd", compressed("gzip", text).await),
        ("deflate", compressed("gzip", text).await),
    ] {
        let mut body = EventBody::new(&headers(&[coding]), body_of(vec![bytes])).unwrap();
        let (out, error) = read_all(&mut body).await;
        assert!(out.is_empty(), "{coding}: nothing is parsed");
        let corrupt = matches!(
            error,
            Some(ReadError::Unreadable(Unreadable::Corrupt { .. }))
        );
        assert!(corrupt, "{coding}: {error:?}");
    }
}
