//! The connection layer's own tests: sniffing the protocol from the first bytes, and what the
//! connection's future holds.

use super::super::handler::EmptyAnswer;
use super::*;
use std::io;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// A stream with 8 KiB of ballast: a future that stores the stream is at least that large.
struct Ballast {
    _ballast: [u8; 8192],
    inner: DuplexStream,
}

impl AsyncRead for Ballast {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Ballast {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A short HTTP/1.1 request is sniffed at once: the bytes differ from the h2 preface at the
/// first one, so nothing waits for 24 bytes that will never come (the client stays open: a
/// reader that waited would meet the paused clock's timeout, not an end of stream).
#[tokio::test(start_paused = true)]
async fn http1_is_sniffed_from_its_first_bytes() {
    let (mut server, mut client) = tokio::io::duplex(1024);
    tokio::io::AsyncWriteExt::write_all(&mut client, b"GET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let sniffed = tokio::time::timeout(Duration::from_secs(5), sniff_protocol(&mut server));
    let (h2, read) = sniffed.await.expect("sniffed without more bytes").unwrap();
    assert!(!h2);
    assert_eq!(
        &read[..],
        b"GET / HTTP/1.1\r\n\r\n",
        "what was read is handed on"
    );
}

/// The h2 preface is recognized once all 24 bytes are in, however they are split.
#[tokio::test]
async fn the_h2_preface_is_sniffed_across_reads() {
    let (mut server, mut client) = tokio::io::duplex(1024);
    let reading = tokio::spawn(async move { sniff_protocol(&mut server).await.unwrap() });
    for part in H2_PREFACE.chunks(5) {
        tokio::io::AsyncWriteExt::write_all(&mut client, part)
            .await
            .unwrap();
        tokio::task::yield_now().await;
    }
    let (h2, read) = reading.await.unwrap();
    assert!(h2);
    assert_eq!(&read[..], H2_PREFACE);
}

/// A client that closes mid-preface is an error, not a guess.
#[tokio::test]
async fn a_stream_ending_before_the_protocol_is_known_is_an_error() {
    let (mut server, mut client) = tokio::io::duplex(1024);
    tokio::io::AsyncWriteExt::write_all(&mut client, &H2_PREFACE[..10])
        .await
        .unwrap();
    drop(client);
    let error = sniff_protocol(&mut server).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
}

/// The stream (for TLS, rustls's whole connection state) is stored once, in the boxed
/// connection: the future that drives it holds none of it (an `async fn` would keep it as
/// its argument besides).
#[tokio::test]
async fn the_connection_future_does_not_hold_the_stream() {
    let (inner, _client) = tokio::io::duplex(64);
    let io = Ballast {
        _ballast: [0; 8192],
        inner,
    };
    let builder = ConnectionBuilder {
        http1: http1::Builder::new(),
        http2: Http2Builder::new(
            &crate::server::H2Settings {
                max_pending_accept_reset_streams: 20,
                max_local_error_reset_streams: 1024,
                max_header_list_size: 16 * 1024,
                header_table_size: 0,
                keep_alive_interval: Some(Duration::from_secs(20)),
                keep_alive_timeout: Duration::from_secs(20),
                max_send_buf_size: 64 * 1024,
                initial_stream_window_size: 1 << 20,
                initial_connection_window_size: 1 << 20,
                max_frame_size: 16_384,
            },
            100,
        ),
        limits: ConnectionLimits {
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            max_streams_lifetime: 100,
            close_grace: Duration::from_secs(1),
        },
    };
    let metrics = Arc::new(ServerMetrics::new(&prometheus::Registry::new()).unwrap());
    let (_drain, drain) = watch::channel(false);
    let peer = Peer {
        addr: ([127, 0, 0, 1], 1).into(),
        tls: false,
    };
    let future = serve(
        io,
        Alpn::Undecided,
        peer,
        EmptyAnswer,
        &builder,
        drain,
        metrics,
    );
    let size = std::mem::size_of_val(&future);
    assert!(size < 4096, "the connection's future is {size} bytes");
}
