//! Acceptance against nchan, our reference origin: fifty subscribers on a few TLS h2
//! connections to the real `sse-relay` binary cost nchan exactly one subscriber, and every
//! subscriber receives every message nchan publishes, in order, with nchan's ids unchanged.
//!
//! Needs nginx and libnginx-mod-nchan; run with `cargo test -- --include-ignored`.

#[path = "acceptance/mod.rs"]
mod acceptance;

use std::sync::Arc;
use std::time::Duration;

use acceptance::{
    parse_events, Nginx, RelayOptions, RelayProcess, SseEvent, TempDir, PREAMBLE, WAIT,
};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

const TOPIC: &str = "acceptance-nchan";
const CONNECTIONS: usize = 5;
const STREAMS_PER_CONNECTION: usize = 10;
const MESSAGES: usize = 10;

#[test]
#[ignore = "acceptance: needs nginx + libnginx-mod-nchan; run with --include-ignored (CI does)"]
fn fifty_h2_subscribers_cost_nchan_one_subscriber_and_all_get_every_message() {
    let dir = TempDir::new("nchan");
    let nginx = Nginx::start(dir.path());
    let mut relay = RelayProcess::start(
        dir.path(),
        &nginx.upstream_template(),
        RelayOptions::default(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    // 50 streams on 5 TLS connections; each stream's headers and preamble have arrived, so the
    // relay has registered all 50 subscribers before anything is published.
    let readers = runtime.block_on(async {
        tokio::time::timeout(WAIT, open_streams(relay.tls_port, &relay.cert))
            .await
            .expect("opening 50 h2 streams timed out")
    });
    let subscribers = readers.len();
    assert_eq!(subscribers, CONNECTIONS * STREAMS_PER_CONNECTION);

    nginx.wait_for_subscribers(TOPIC, 1);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            nginx.subscribers(TOPIC),
            Some(1),
            "nchan must see exactly one subscriber (the relay) while {subscribers} are attached"
        );
    }

    let sent: Vec<String> = (0..MESSAGES)
        .map(|i| match i {
            4 => "two\nlines".to_string(),
            _ => format!("message {i} from nchan"),
        })
        .collect();
    let mut ids = Vec::new();
    for message in &sent {
        let info = nginx.publish(TOPIC, message);
        assert_eq!(
            acceptance::json_number(&info, "subscribers"),
            Some(1),
            "nchan's channel info after publishing: {info}"
        );
        ids.push(acceptance::json_string(&info, "last_message_id").expect("nchan message id"));
    }

    let received = runtime.block_on(async {
        let mut all = Vec::new();
        for reader in readers {
            let events = tokio::time::timeout(WAIT, reader)
                .await
                .expect("a subscriber did not receive every message in time")
                .expect("reader task");
            all.push(events);
        }
        all
    });
    let expected: Vec<SseEvent> = sent
        .iter()
        .zip(&ids)
        .map(|(data, id)| SseEvent {
            id: Some(id.clone()),
            event: None,
            data: data.clone(),
        })
        .collect();
    for (i, events) in received.iter().enumerate() {
        assert_eq!(events, &expected, "subscriber {i} got a different sequence");
    }
    assert_eq!(
        nginx.subscribers(TOPIC),
        Some(1),
        "still one upstream subscriber"
    );
    relay.assert_running();
    println!(
        "{subscribers} h2 subscribers on {CONNECTIONS} TLS connections: nchan saw 1 subscriber; \
         all {subscribers} received {MESSAGES}/{MESSAGES} messages in order with nchan's ids"
    );
}

/// Opens every stream; returns one task per stream that yields its first `MESSAGES` events.
async fn open_streams(port: u16, cert: &std::path::Path) -> Vec<JoinHandle<Vec<SseEvent>>> {
    let connector = tls_connector(cert);
    let mut readers = Vec::new();
    for _ in 0..CONNECTIONS {
        let sender = connect_h2(&connector, port).await;
        let mut ready = Vec::new();
        for _ in 0..STREAMS_PER_CONNECTION {
            let (tx, rx) = oneshot::channel();
            readers.push(tokio::spawn(read_stream(sender.clone(), port, tx)));
            ready.push(rx);
        }
        for rx in ready {
            rx.await.expect("stream opened and sent its preamble");
        }
    }
    readers
}

fn tls_connector(cert: &std::path::Path) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(cert).expect("read the relay's dev certificate");
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(cert.expect("PEM certificate"))
            .expect("dev certificate is a valid root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn connect_h2(connector: &TlsConnector, port: u16) -> SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the relay");
    let name = ServerName::try_from("localhost").expect("server name");
    let tls = connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the relay (verified against its dev certificate)");
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN must select h2"
    );
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    sender
}

/// One subscriber: sends the GET, checks the answer, reports `opened` once the preamble has
/// arrived, then reads until `MESSAGES` events have arrived.
async fn read_stream(
    mut sender: SendRequest<Empty<Bytes>>,
    port: u16,
    opened: oneshot::Sender<()>,
) -> Vec<SseEvent> {
    sender.ready().await.expect("h2 connection ready");
    let request = Request::get(format!("https://localhost:{port}/events/{TOPIC}"))
        .header("accept", "text/event-stream")
        .body(Empty::new())
        .expect("request");
    let response = sender
        .send_request(request)
        .await
        .expect("response headers");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut text = String::new();
    let mut opened = Some(opened);
    loop {
        let events = parse_events(&text);
        if events.len() >= MESSAGES {
            return events;
        }
        let frame = body
            .frame()
            .await
            .unwrap_or_else(|| panic!("stream ended early after {text:?}"))
            .expect("stream broke");
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).expect("UTF-8 event stream"));
        }
        if opened.is_some() && text.len() >= PREAMBLE.len() {
            assert!(text.starts_with(PREAMBLE), "stream began with {text:?}");
            let _ = opened.take().map(|tx| tx.send(()));
        }
    }
}
