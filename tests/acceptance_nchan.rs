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
    let (_dir, nginx, mut relay, runtime) = nchan_behind_the_relay("nchan");

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

const CATCH_UP_TOPIC: &str = "acceptance-catch-up";
/// Messages published before the resume: far more than the relay's default 1024-event ring.
const PUBLISHED: usize = 3000;
/// The client resumes after this many (the 100th message's id).
const RESUME_AFTER: usize = 100;

#[test]
#[ignore = "acceptance: needs nginx + libnginx-mod-nchan; run with --include-ignored (CI does)"]
fn a_resume_from_the_100th_of_3000_is_caught_up_from_nchan_exactly_once_then_live() {
    let (_dir, nginx, mut relay, runtime) = nchan_behind_the_relay("nchan-catch-up");
    let _context = runtime.enter();
    let port = relay.tls_port;
    let connector = tls_connector(&relay.cert);
    let sender = runtime.block_on(connect_h2(&connector, port));

    // A live subscriber keeps the topic open (its ring holds the newest 1024 events) and reads
    // everything as it is published.
    let mut live = runtime.block_on(EventStream::open(
        sender.clone(),
        port,
        CATCH_UP_TOPIC,
        None,
    ));
    runtime.block_on(live.read_text(PREAMBLE.len()));
    nginx.wait_for_subscribers(CATCH_UP_TOPIC, 1);
    let live = runtime.spawn(async move { live.read_events(PUBLISHED).await });
    let mut expected: Vec<SseEvent> = (1..=PUBLISHED)
        .map(|i| publish(&nginx, CATCH_UP_TOPIC, format!("message {i}")))
        .collect();
    let seen_live = runtime
        .block_on(tokio::time::timeout(WAIT, live))
        .expect("the live subscriber did not get all 3000 in time")
        .expect("live reader task");
    assert_eq!(
        seen_live, expected,
        "the live subscriber got all 3000 in order"
    );

    // The client resumes from the 100th: 101–3000 exactly once, in order, no gap signal.
    let resume_id = expected[RESUME_AFTER - 1].id.clone().expect("id");
    let mut resumed = runtime.block_on(EventStream::open(
        sender.clone(),
        port,
        CATCH_UP_TOPIC,
        Some(&resume_id),
    ));
    let missed = PUBLISHED - RESUME_AFTER;
    let caught_up = runtime
        .block_on(tokio::time::timeout(WAIT, resumed.read_events(missed)))
        .expect("the resumed subscriber did not get 2900 events in time");
    assert_eq!(caught_up.len(), missed, "nothing more, nothing less");
    assert_eq!(caught_up[..], expected[RESUME_AFTER..], "101-3000 in order");

    // Then live ones.
    expected.extend((1..=3).map(|i| publish(&nginx, CATCH_UP_TOPIC, format!("live {i}"))));
    let all = runtime
        .block_on(tokio::time::timeout(WAIT, resumed.read_events(missed + 3)))
        .expect("the resumed subscriber did not get the live events in time");
    assert_eq!(all[..], expected[RESUME_AFTER..], "then live, exactly once");
    // The catch-up's one-off request is gone: nchan is back to the relay's one subscription.
    nginx.wait_for_subscribers(CATCH_UP_TOPIC, 1);
    relay.assert_running();
    println!(
        "resumed from message {RESUME_AFTER} of {PUBLISHED} (relay ring 1024): got {missed} \
         caught-up events exactly once, in order, then 3 live ones"
    );
}

/// nginx + nchan in a temp dir named after `test`, the relay binary in front of it with the
/// default config, and a runtime for the clients.
fn nchan_behind_the_relay(test: &str) -> (TempDir, Nginx, RelayProcess, tokio::runtime::Runtime) {
    let dir = TempDir::new(test);
    let nginx = Nginx::start(dir.path());
    let relay = RelayProcess::start(
        dir.path(),
        &nginx.upstream_template(),
        RelayOptions::default(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    (dir, nginx, relay, runtime)
}

/// Publishes `data` to `topic`; returns the event subscribers should get (with nchan's id).
fn publish(nginx: &Nginx, topic: &str, data: String) -> SseEvent {
    let info = nginx.publish(topic, &data);
    let id = acceptance::json_string(&info, "last_message_id").expect("nchan message id");
    SseEvent {
        id: Some(id),
        event: None,
        data,
    }
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
    sender: SendRequest<Empty<Bytes>>,
    port: u16,
    opened: oneshot::Sender<()>,
) -> Vec<SseEvent> {
    let mut stream = EventStream::open(sender, port, TOPIC, None).await;
    stream.read_text(PREAMBLE.len()).await;
    assert!(
        stream.text.starts_with(PREAMBLE),
        "stream began with {:?}",
        stream.text
    );
    let _ = opened.send(());
    stream.read_events(MESSAGES).await
}

/// One subscriber's stream through the relay, as text read so far.
struct EventStream {
    body: hyper::body::Incoming,
    text: String,
}

impl EventStream {
    /// Sends the GET for `topic` (resuming after `last_event_id`) and checks the answer.
    async fn open(
        mut sender: SendRequest<Empty<Bytes>>,
        port: u16,
        topic: &str,
        last_event_id: Option<&str>,
    ) -> Self {
        sender.ready().await.expect("h2 connection ready");
        let mut request = Request::get(format!("https://localhost:{port}/events/{topic}"))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let request = request.body(Empty::new()).expect("request");
        let response = sender
            .send_request(request)
            .await
            .expect("response headers");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            body: response.into_body(),
            text: String::new(),
        }
    }

    /// Reads until at least `bytes` of text have arrived.
    async fn read_text(&mut self, bytes: usize) {
        while self.text.len() < bytes {
            let frame = self
                .body
                .frame()
                .await
                .unwrap_or_else(|| panic!("stream ended early after {:?}", self.text))
                .expect("stream broke");
            if let Ok(data) = frame.into_data() {
                let data = std::str::from_utf8(&data).expect("UTF-8 event stream");
                self.text.push_str(data);
            }
        }
    }

    /// Reads until `n` events have arrived since the stream opened; returns them all.
    async fn read_events(&mut self, n: usize) -> Vec<SseEvent> {
        loop {
            let events = parse_events(&self.text);
            if events.len() >= n {
                return events;
            }
            let more = self.text.len() + 1;
            self.read_text(more).await;
        }
    }
}
