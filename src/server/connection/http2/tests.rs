//! The h2 connection's own tests: keep-alive PINGs over an in-memory stream, on tokio's paused
//! clock (it jumps to the next timer whenever every task waits).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

use super::*;
use crate::server::handler::EmptyAnswer;
use crate::server::metrics::ServerMetrics;

const INTERVAL: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(3);

/// An h2 connection with keep-alive every [`INTERVAL`], [`TIMEOUT`] to answer, over one end of
/// an in-memory stream; the client's end is returned beside it.
fn connection() -> (Http2Connection<DuplexStream, EmptyAnswer>, DuplexStream) {
    let (server, client) = tokio::io::duplex(64 * 1024);
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
    let builder = Http2Builder::new(&settings, 100);
    let connection = Http2Connection::new(server, &builder, EmptyAnswer, peer, state);
    (connection, client)
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
