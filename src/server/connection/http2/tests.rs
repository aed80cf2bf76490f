//! The h2 connection's own tests: keep-alive PINGs over an in-memory stream, on tokio's paused
//! clock (it jumps to the next timer whenever every task waits).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::time::Instant;

use super::*;
use crate::server::handler::EmptyAnswer;
use crate::server::metrics::ServerMetrics;
use bytes::Bytes;

const INTERVAL: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(3);

/// An h2 connection with keep-alive every [`INTERVAL`], [`TIMEOUT`] to answer, over `io`,
/// answered by `handler`.
fn serving<IO: AsyncRead + AsyncWrite + Unpin, H>(io: IO, handler: H) -> Http2Connection<IO, H> {
    let settings = crate::server::H2Settings {
        max_pending_accept_reset_streams: 20,
        max_local_error_reset_streams: 1024,
        max_header_list_size: 16 * 1024,
        header_table_size: 0,
        keep_alive_interval: Some(INTERVAL),
        keep_alive_timeout: TIMEOUT,
        max_send_buf_size: 64 * 1024,
        initial_stream_window_size: 1 << 20,
        initial_connection_window_size: 1 << 20,
        max_frame_size: 16_384,
    };
    let metrics = Arc::new(ServerMetrics::new(&prometheus::Registry::new()).unwrap());
    let peer = Peer {
        addr: ([127, 0, 0, 1], 1).into(),
        tls: false,
    };
    let state = Arc::new(ConnectionState::new(metrics));
    Http2Connection::new(io, &Http2Builder::new(&settings, 100), handler, peer, state)
}

/// [`serving`] with empty answers over one end of an in-memory stream; the client's end is
/// returned beside it.
fn connection() -> (Http2Connection<DuplexStream, EmptyAnswer>, DuplexStream) {
    let (server, client) = tokio::io::duplex(64 * 1024);
    (serving(server, EmptyAnswer), client)
}

/// The frame types (RFC 9113 §6) in `bytes`, a run of whole frames.
fn frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let length =
            usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = &bytes[(9 + length).min(bytes.len())..];
    }
    types
}

/// A client that sends its preface and never reads gets a PING after the interval, and the
/// connection is closed once the timeout passes without the answer (GOAWAY, then the end).
#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_a_ping_unanswered_is_closed_after_the_timeout() {
    let (connection, mut client) = connection();
    // The client preface and an empty SETTINGS frame (RFC 9113 §3.4).
    client.write_all(super::super::H2_PREFACE).await.unwrap();
    client
        .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(60), connection).await;
    assert!(ended.is_ok(), "the connection was still open after 60 s");
    let took = started.elapsed();
    assert!(
        took >= INTERVAL + TIMEOUT && took < INTERVAL + TIMEOUT + Duration::from_secs(1),
        "closed after {took:?}"
    );
    let mut sent = Vec::new();
    client.read_to_end(&mut sent).await.unwrap();
    let types = frame_types(&sent);
    assert!(types.contains(&6), "a PING was sent: frames {types:?}");
    assert_eq!(types.last(), Some(&7), "GOAWAY last: frames {types:?}");
}

/// A client that answers the PINGs (h2's client does, while its connection is polled) keeps
/// an idle connection open.
#[tokio::test(start_paused = true)]
async fn a_client_that_answers_pings_keeps_the_connection() {
    let (connection, client) = connection();
    let serving = tokio::spawn(connection);
    let (_send, client_connection) = ::h2::client::handshake(client).await.unwrap();
    let client_task = tokio::spawn(client_connection);
    tokio::time::sleep(10 * (INTERVAL + TIMEOUT)).await;
    assert!(
        !serving.is_finished(),
        "the server closed a live connection"
    );
    assert!(!client_task.is_finished(), "the client's connection ended");
}

/// Every response carries `date` (RFC 9110 §6.6.1), as hyper's did: our handlers do not set it.
#[tokio::test]
async fn responses_carry_a_date() {
    let (connection, client) = connection();
    tokio::spawn(connection);
    let (mut send, client_connection) = ::h2::client::handshake(client).await.unwrap();
    tokio::spawn(client_connection);
    let request = http::Request::get("http://relay.test/").body(()).unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    let date = response.headers().get(http::header::DATE).expect("a date");
    let date = httpdate::parse_http_date(date.to_str().unwrap()).expect("an HTTP date");
    let off = std::time::SystemTime::now()
        .duration_since(date)
        .unwrap_or_default();
    assert!(off < Duration::from_secs(5), "date {date:?} is {off:?} old");
}

/// Writes to the wrapped stream, counted.
struct CountedWrites {
    inner: DuplexStream,
    writes: Arc<std::sync::atomic::AtomicUsize>,
}

impl AsyncRead for CountedWrites {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedWrites {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A body of what its channel sends, counting the times it is polled.
struct ChannelBody {
    frames: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    polls: Arc<std::sync::atomic::AtomicUsize>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.frames
            .poll_recv(cx)
            .map(|data| data.map(|data| Ok(http_body::Frame::data(data))))
    }
}

/// Answers every request with a [`ChannelBody`], whose sender it lists; all bodies count their
/// polls in `polls`.
#[derive(Clone, Default)]
struct ChannelAnswer {
    senders: Arc<std::sync::Mutex<Vec<tokio::sync::mpsc::UnboundedSender<Bytes>>>>,
    polls: Arc<std::sync::atomic::AtomicUsize>,
}

impl Handler for ChannelAnswer {
    type Body = ChannelBody;
    type Error = std::convert::Infallible;

    async fn handle(
        self,
        _request: http::Request<RequestBody>,
        _peer: Peer,
    ) -> http::Response<ChannelBody> {
        let (send, frames) = tokio::sync::mpsc::unbounded_channel();
        self.senders.lock().unwrap().push(send);
        http::Response::new(ChannelBody {
            frames,
            polls: self.polls.clone(),
        })
    }
}

/// Lets every task woken so far run first: this task wakes itself, so the scheduler queues it
/// behind them (`tokio::task::yield_now` would wait for the I/O driver instead).
async fn behind_the_woken() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut yielded, true) {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// Streams of one connection woken one by one, as a topic event wakes them from the publishing
/// thread, go out in one write or a few, not one each: the connection yields while each round
/// hands h2 more frames (without it, this test sees one write per stream).
#[tokio::test]
async fn frames_of_streams_woken_one_by_one_share_a_write() {
    const STREAMS: usize = 8;
    let (server, client) = tokio::io::duplex(1 << 20);
    let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let answer = ChannelAnswer::default();
    let io = CountedWrites {
        inner: server,
        writes: writes.clone(),
    };
    tokio::spawn(serving(io, answer.clone()));
    let (mut send, client_connection) = ::h2::client::handshake(client).await.unwrap();
    tokio::spawn(client_connection);
    let mut bodies = Vec::new();
    for _ in 0..STREAMS {
        let request = http::Request::get("http://relay.test/").body(()).unwrap();
        let (response, _) = send.send_request(request, true).unwrap();
        bodies.push(response);
    }
    let mut streams = Vec::new();
    for response in bodies {
        streams.push(response.await.unwrap().into_body());
    }
    let senders = answer.senders.lock().unwrap().clone();
    assert_eq!(senders.len(), STREAMS);
    let before = writes.load(Ordering::Relaxed);
    // One frame per stream, each stream woken in turn with a yield between (the connection's
    // task runs in between, as on the other core); a task of its own, queued like the
    // connection's (the test's own future is polled apart from the queue).
    tokio::spawn(async move {
        for sender in &senders {
            sender.send(Bytes::from_static(b"data: x\n\n")).unwrap();
            behind_the_woken().await;
        }
    })
    .await
    .unwrap();
    for stream in &mut streams {
        let data = stream.data().await.expect("a frame").unwrap();
        assert_eq!(&data[..], b"data: x\n\n");
    }
    let used = writes.load(Ordering::Relaxed) - before;
    assert!(used <= 2, "{used} writes for {STREAMS} streams' frames");
}

/// A frame costs its stream one poll: the body hands it over, then says Pending, twice polled
/// in all. h2 wakes the stream's stored waker when the frame's `reserve_capacity` assigns it
/// capacity, during that very poll; without [`stream`]'s `forget_waker` that wake polls the
/// stream once more for nothing (three body polls per frame).
#[tokio::test]
async fn a_frame_polls_its_stream_once() {
    const FRAMES: usize = 10;
    let (server, client) = tokio::io::duplex(1 << 20);
    let answer = ChannelAnswer::default();
    tokio::spawn(serving(server, answer.clone()));
    let (mut send, client_connection) = ::h2::client::handshake(client).await.unwrap();
    tokio::spawn(client_connection);
    let request = http::Request::get("http://relay.test/").body(()).unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    let mut body = response.await.unwrap().into_body();
    let sender = answer.senders.lock().unwrap()[0].clone();
    let before = answer.polls.load(Ordering::Relaxed);
    for _ in 0..FRAMES {
        sender.send(Bytes::from_static(b"data: x\n\n")).unwrap();
        let data = body.data().await.expect("a frame").unwrap();
        assert_eq!(&data[..], b"data: x\n\n");
    }
    let polls = answer.polls.load(Ordering::Relaxed) - before;
    assert!(
        polls <= 2 * FRAMES + 1,
        "{polls} body polls for {FRAMES} frames"
    );
}
