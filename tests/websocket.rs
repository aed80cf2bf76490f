//! WebSocket passthrough: an HTTP/1.1 `Upgrade: websocket` on a non-SSE path is tunnelled to
//! the passthrough origin (bytes both ways, closes passed on, counted), a refusal reaches the
//! client as the origin gave it, and the drain closes tunnels that are still open.

mod support;

use futures_util::{SinkExt, StreamExt};
use sse_relay::edge::TunnelOutcome;
use support::websocket::{connect, Client, CLOSE_ME, ORIGIN_BYE};
use support::{eventually, http_get, sample, TestOrigin, TestRelay, WAIT};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error, Message};

/// A relay whose passthrough origin is `origin` (its `/ws/...` endpoints included).
async fn relay_for(
    origin: &TestOrigin,
    configure: impl FnOnce(&mut sse_relay::config::Config),
) -> TestRelay {
    let passthrough = format!("http://{}", origin.addr);
    TestRelay::start(origin, |c| {
        c.passthrough.upstream = Some(passthrough);
        configure(c);
    })
    .await
}

async fn open(relay: &TestRelay) -> Client {
    connect(relay.addr, &relay.cert, "/ws/echo")
        .await
        .expect("the WebSocket handshake through the relay succeeds")
}

/// The next message, within the wait (`None`: the connection ended).
async fn next(client: &mut Client) -> Option<Result<Message, Error>> {
    tokio::time::timeout(WAIT, client.next())
        .await
        .expect("a message or the end within the wait")
}

async fn echoed(client: &mut Client, message: Message) {
    client.send(message.clone()).await.expect("send");
    let back = next(client)
        .await
        .expect("connection open")
        .expect("a message");
    assert_eq!(back, message);
}

/// Reads until the connection ends (a close frame, then the end), within the wait.
async fn until_end(client: &mut Client) -> Vec<Message> {
    let mut seen = Vec::new();
    while let Some(Ok(message)) = next(client).await {
        seen.push(message);
    }
    seen
}

/// Waits until the origin's echo endpoint has ended its side of the connection.
async fn origin_side_ended(origin: &TestOrigin) {
    eventually("the origin's side ends", || {
        origin.websocket_log().last().map(String::as_str) == Some("ended")
    })
    .await;
}

/// Waits until `n` tunnels are open.
async fn tunnels_open(relay: &TestRelay, n: i64) {
    let open = &relay.metrics.edge.websocket_tunnels_open;
    eventually(&format!("{n} tunnels open"), || open.get() == n).await;
}

async fn scrape(relay: &TestRelay) -> String {
    http_get(relay.admin_addr, "/metrics").await.1
}

#[tokio::test]
async fn text_and_binary_messages_echo_through_the_relay() {
    let origin = TestOrigin::start().await;
    let relay = relay_for(&origin, |_| {}).await;
    let mut client = open(&relay).await;
    echoed(&mut client, Message::text("hello through the relay")).await;
    echoed(&mut client, Message::binary(vec![0u8, 1, 2, 254, 255])).await;
    // Larger than any one read or TLS record: it crosses the tunnel in many pieces.
    let big: Vec<u8> = (0..512 * 1024).map(|i| (i % 251) as u8).collect();
    echoed(&mut client, Message::binary(big)).await;
    assert_eq!(origin.websocket_log(), ["handshake"]);
    relay.stop().await;
}

#[tokio::test]
async fn an_origin_close_reaches_the_client() {
    let origin = TestOrigin::start().await;
    let relay = relay_for(&origin, |_| {}).await;
    let mut client = open(&relay).await;
    client.send(Message::text(CLOSE_ME)).await.unwrap();
    let seen = until_end(&mut client).await;
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: ORIGIN_BYE.into(),
    };
    assert_eq!(seen, [Message::Close(Some(frame))]);
    // The client's reply reached the origin, whose side then closed its connection: the
    // client's connection is closed after it (TLS close_notify, an end of stream).
    origin_side_ended(&origin).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, client.get_mut().read_to_end(&mut rest));
    read.await.expect("the end within the wait").unwrap();
    assert!(rest.is_empty(), "no bytes after the close handshake");
    // The client closes its side too, as RFC 6455 §7.1.1 has it after the server's close.
    drop(client);
    tunnels_open(&relay, 0).await;
    relay.stop().await;
}

#[tokio::test]
async fn a_client_close_reaches_the_origin() {
    let origin = TestOrigin::start().await;
    let relay = relay_for(&origin, |_| {}).await;
    let mut client = open(&relay).await;
    echoed(&mut client, Message::text("before leaving")).await;
    let frame = CloseFrame {
        code: CloseCode::Away,
        reason: "client leaves".into(),
    };
    client.close(Some(frame)).await.unwrap();
    eventually("the origin sees the client's close", || {
        origin
            .websocket_log()
            .contains(&"closed by client: 1001 client leaves".to_string())
    })
    .await;
    // The origin's close reply comes back, then the connection ends.
    until_end(&mut client).await;
    origin_side_ended(&origin).await;
    drop(client);
    tunnels_open(&relay, 0).await;
    relay.stop().await;
}

#[tokio::test]
async fn an_origin_refusal_reaches_the_client_as_its_status() {
    let origin = TestOrigin::start().await;
    let relay = relay_for(&origin, |_| {}).await;
    let refused = connect(relay.addr, &relay.cert, "/ws/refuse").await;
    let Err(Error::Http(response)) = refused else {
        panic!("expected the origin's HTTP answer, got {refused:?}");
    };
    assert_eq!(response.status(), 403);
    let body = response.body().as_deref().unwrap_or_default();
    assert_eq!(String::from_utf8_lossy(body), "no websockets here\n");
    let tunnels = &relay.metrics.edge.websocket_tunnels;
    assert_eq!(tunnels.get(TunnelOutcome::Refused).get(), 1);
    assert_eq!(tunnels.get(TunnelOutcome::Opened).get(), 0);
    let metrics = scrape(&relay).await;
    let refused = sample(
        &metrics,
        "sse_relay_websocket_tunnels_total{outcome=\"refused\"}",
    );
    assert_eq!(refused, Some(1.0), "{metrics}");
    relay.stop().await;
}

#[tokio::test]
async fn tunnels_are_counted_while_open_and_their_connections_with_them() {
    let origin = TestOrigin::start().await;
    let relay = relay_for(&origin, |_| {}).await;
    let mut first = open(&relay).await;
    let mut second = open(&relay).await;
    // Each has echoed, so both of its sides have switched protocols.
    echoed(&mut first, Message::text("one")).await;
    echoed(&mut second, Message::text("two")).await;
    let metrics = scrape(&relay).await;
    let opened = "sse_relay_websocket_tunnels_total{outcome=\"opened\"}";
    assert_eq!(sample(&metrics, opened), Some(2.0), "{metrics}");
    assert_eq!(
        sample(&metrics, "sse_relay_websocket_tunnels_open"),
        Some(2.0)
    );
    let failed = "sse_relay_websocket_tunnels_total{outcome=\"failed\"}";
    assert_eq!(sample(&metrics, failed), Some(0.0));
    let http1 = &relay.metrics.server.connections_open.http1;
    assert_eq!(http1.get(), 2, "an upgraded connection stays counted");

    first.close(None).await.unwrap();
    until_end(&mut first).await;
    drop(first);
    tunnels_open(&relay, 1).await;
    eventually("one connection left", || http1.get() == 1).await;
    second.close(None).await.unwrap();
    until_end(&mut second).await;
    drop(second);
    tunnels_open(&relay, 0).await;
    eventually("no connection left", || http1.get() == 0).await;
    let metrics = scrape(&relay).await;
    assert_eq!(sample(&metrics, opened), Some(2.0), "{metrics}");
    relay.stop().await;
}

#[tokio::test]
async fn the_drain_closes_an_open_tunnel() {
    let origin = TestOrigin::start().await;
    // A drain deadline past the test's wait: only the drain's own close can end the tunnel
    // in time (the deadline would let the relay go, and the tunnel with it).
    let mut relay = relay_for(&origin, |c| c.server.drain_timeout_ms = 60_000).await;
    let mut client = open(&relay).await;
    echoed(&mut client, Message::text("still here")).await;
    relay.signal_shutdown();
    // The tunnel never ends by itself: the drain ends it, both ways.
    let after = until_end(&mut client).await;
    assert!(after.is_empty(), "no message after the drain: {after:?}");
    origin_side_ended(&origin).await;
    assert_eq!(relay.metrics.edge.websocket_tunnels_open.get(), 0);
    relay.stop().await;
}
