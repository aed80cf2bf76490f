//! Acceptance with curl, the way the README tells a person to try the relay:
//! `curl --http2 --cacert <dev cert> -N https://localhost:PORT/events/x` negotiates h2 by ALPN
//! and shows each event as soon as the origin sends it, while the stream stays open.
//!
//! The origin is a small hyper server in this file whose events the test pushes by hand.
//! Needs curl (with HTTP2); run with `cargo test -- --include-ignored`.

#[path = "acceptance/mod.rs"]
mod acceptance;

use std::convert::Infallible;
use std::io::Read;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread;

use acceptance::{
    require_program, wait_until, ChildGuard, RelayOptions, RelayProcess, TempDir, PREAMBLE, WAIT,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

#[test]
#[ignore = "acceptance: needs curl with HTTP/2 (nghttp2); run with --include-ignored (CI does)"]
fn curl_negotiates_h2_and_sees_each_event_while_the_stream_stays_open() {
    let curl = require_program("curl", "apt-get install curl");
    let features = Command::new(&curl).arg("-V").output().expect("curl -V");
    assert!(
        String::from_utf8_lossy(&features.stdout).contains("HTTP2"),
        "this curl lacks HTTP2 support (Debian's curl has it via libnghttp2)"
    );
    let dir = TempDir::new("curl");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let origin = runtime.block_on(Origin::start());
    let upstream = format!("http://127.0.0.1:{}/sub/{{topic}}", origin.port);
    // No heartbeat comments during the test, so curl's output can be compared exactly.
    let options = RelayOptions {
        extra_toml: "[downstream]\nheartbeat_interval_ms = 600000\n".into(),
        ..RelayOptions::default()
    };
    let mut relay = RelayProcess::start(dir.path(), &upstream, options);

    let url = format!("https://localhost:{}/events/x", relay.tls_port);
    let mut command = Command::new(&curl);
    command
        .args(["--http2", "--cacert"])
        .arg(&relay.cert)
        .args(["-N", "-s", "-v", "--max-time", "60", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut curl = ChildGuard::spawn("curl", &mut command, None);
    let stdout = collect(curl.child_mut().stdout.take().expect("curl stdout"));
    let stderr = collect(curl.child_mut().stderr.take().expect("curl stderr"));
    let seen = |buffer: &Arc<Mutex<Vec<u8>>>| {
        String::from_utf8_lossy(&buffer.lock().expect("buffer")).into_owned()
    };

    wait_until("the relay's preamble on curl's stdout", WAIT, || {
        curl.assert_running();
        seen(&stdout).starts_with(PREAMBLE).then_some(())
    });
    wait_until("the relay to subscribe to the origin", WAIT, || {
        (origin.subscriptions() > 0).then_some(())
    });

    let events = [
        "id: 1\nevent: greeting\ndata: hello from the origin\n\n",
        "id: 2\ndata: second\ndata: event\n\n",
    ];
    for event in events {
        origin.send(event);
        wait_until(&format!("curl to print {event:?}"), WAIT, || {
            seen(&stdout).contains(event).then_some(())
        });
        assert!(
            curl.exited().is_none(),
            "curl must still be streaming after {event:?}; stderr:\n{}",
            seen(&stderr)
        );
    }

    let verbose = seen(&stderr);
    assert!(
        verbose.contains("ALPN: server accepted h2")
            || verbose.contains("ALPN, server accepted to use h2"),
        "curl's verbose output does not show ALPN selecting h2:\n{verbose}"
    );
    assert!(
        verbose.contains("< HTTP/2 200"),
        "not an HTTP/2 200 answer:\n{verbose}"
    );
    assert!(
        verbose.contains("< content-type: text/event-stream"),
        "not text/event-stream:\n{verbose}"
    );
    let output = seen(&stdout);
    assert_eq!(
        output,
        format!("{PREAMBLE}{}{}", events[0], events[1]),
        "curl printed exactly the preamble and the two events, nothing buffered or extra"
    );
    assert_eq!(origin.subscriptions(), 1, "one upstream subscription");
    relay.assert_running();
    println!(
        "curl: ALPN h2, HTTP/2 200 text/event-stream, each event shown while the stream stayed open"
    );
}

/// Copies a pipe into a shared buffer on a thread, as it arrives.
fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().expect("buffer").extend_from_slice(&chunk[..n]);
        }
    });
    buffer
}

/// A minimal SSE origin: every `GET /sub/...` gets a `text/event-stream` that carries whatever
/// [`Origin::send`] is given, as soon as it is given.
struct Origin {
    port: u16,
    streams: Arc<Mutex<Vec<mpsc::UnboundedSender<Bytes>>>>,
    subscriptions: Arc<AtomicUsize>,
}

impl Origin {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the origin");
        let port = listener.local_addr().expect("origin address").port();
        let streams = Arc::new(Mutex::new(Vec::new()));
        let subscriptions = Arc::new(AtomicUsize::new(0));
        let (s, n) = (streams.clone(), subscriptions.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (s, n) = (s.clone(), n.clone());
                let service =
                    service_fn(move |request| std::future::ready(respond(&request, &s, &n)));
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service),
                );
            }
        });
        Self {
            port,
            streams,
            subscriptions,
        }
    }

    /// Upstream subscriptions opened so far.
    fn subscriptions(&self) -> usize {
        self.subscriptions.load(Ordering::SeqCst)
    }

    /// Writes `text` to every open stream.
    fn send(&self, text: &'static str) {
        let mut streams = self.streams.lock().expect("streams");
        streams.retain(|tx| tx.send(Bytes::from_static(text.as_bytes())).is_ok());
        assert!(!streams.is_empty(), "no upstream stream is open");
    }
}

fn respond(
    request: &Request<Incoming>,
    streams: &Mutex<Vec<mpsc::UnboundedSender<Bytes>>>,
    subscriptions: &AtomicUsize,
) -> Result<Response<Stream>, Infallible> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut response = Response::new(Stream(rx));
    if !request.uri().path().starts_with("/sub/") {
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Ok(response);
    }
    subscriptions.fetch_add(1, Ordering::SeqCst);
    let _ = tx.send(Bytes::from_static(b": origin\n\n"));
    streams.lock().expect("streams").push(tx);
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("text/event-stream"),
    );
    Ok(response)
}

/// A response body fed by a channel; it ends when the sender is dropped.
struct Stream(mpsc::UnboundedReceiver<Bytes>);

impl Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(Frame::data(data))))
    }
}
