//! Test harness: a relay started in-process on 127.0.0.1:0 with a generated certificate, an
//! in-process origin ([`origin::TestOrigin`]), and real TLS clients (h2 and HTTP/1.1) that
//! read event streams.
#![allow(dead_code)]

pub mod answers;
pub mod browser;
pub mod chat;
pub mod encoding;
pub mod origin;
pub mod pki;
pub mod raw;
pub mod websocket;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use sse_relay::app::{App, Metrics};
use sse_relay::config::{Config, ForwardAuthConfig, JwtConfig, RouteConfig, Settings};
use sse_relay::sse::{Event, Item, Parser};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

pub use origin::TestOrigin;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A relay running in this process.
pub struct TestRelay {
    pub addr: SocketAddr,
    pub plain_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub cert: PathBuf,
    pub metrics: Metrics,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// A fresh temporary directory for this test.
pub fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir =
        std::env::temp_dir().join(format!("sse-relay-test-{}-{name}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The config every test relay starts from: TLS on `127.0.0.1:0` with a dev certificate in a
/// fresh temporary directory, the admin listener on `127.0.0.1:0`, a quick drain
/// (`drain_delay_ms = 0`, `drain_window_ms = 100`; a test that drains on purpose sets its own)
/// and one route `/events/{topic}` → `upstream`; every other key at its default.
pub fn test_config(upstream: &str) -> Config {
    let mut config = Config::default();
    let s = &mut config.server;
    s.listen = loopback();
    s.dev_cert_dir = Some(temp_dir("relay"));
    s.drain_delay_ms = 0;
    s.drain_window_ms = 100;
    config.admin.listen = loopback();
    config.routes.push(RouteConfig {
        path: "/events/{topic}".into(),
        upstream: upstream.into(),
        ..RouteConfig::default()
    });
    config
}

/// A loopback port free now (for a relay started as its own process, which must be told its
/// port before it binds).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("can bind 127.0.0.1:0")
        .port()
}

/// A child process (the relay binary), killed and reaped when dropped.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `127.0.0.1:0`: a free loopback port.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// `[auth.jwt]` pinned to `algorithms`, every other key at its default (what a config file that
/// names only `algorithms` gives); set the key file, `issuer`, `audience` on the result.
pub fn jwt_config(algorithms: &[&str]) -> JwtConfig {
    serde_json::from_value(serde_json::json!({ "algorithms": algorithms }))
        .expect("algorithms is the only required [auth.jwt] key")
}

/// `[auth.forward]` asking `url`, every other key at its default (what a config file that names
/// only `url` gives).
pub fn forward_auth_config(url: &str) -> ForwardAuthConfig {
    serde_json::from_value(serde_json::json!({ "url": url }))
        .expect("url is the only required [auth.forward] key")
}

/// The one step from a test's [`Config`] to a bound relay: the config must pass the checks a
/// config file passes, then [`App::bind`].
async fn bind(config: Config) -> App {
    let settings = match Settings::try_from(config) {
        Ok(settings) => settings,
        Err(issue) => panic!("test config is invalid: {issue}"),
    };
    App::bind(settings).await.expect("relay binds")
}

impl TestRelay {
    /// Starts a relay in front of `origin` (see [`TestRelay::start_with`]).
    pub async fn start(origin: &TestOrigin, configure: impl FnOnce(&mut Config)) -> TestRelay {
        Self::start_with(&origin.template(), configure).await
    }

    /// Starts a relay with one route `/events/{topic}` → `upstream` (a URL template) on the
    /// config of [`test_config`], after `configure` has changed what the test needs; settings
    /// of that route (`auth`, `query_params`) are on `config.routes[0]`.
    pub async fn start_with(upstream: &str, configure: impl FnOnce(&mut Config)) -> TestRelay {
        let mut config = test_config(upstream);
        configure(&mut config);
        Self::from_app(bind(config).await)
    }

    fn from_app(app: App) -> TestRelay {
        let addr = app.tls_addr();
        let plain_addr = app.plaintext_addr();
        let admin_addr = app.admin_addr();
        let cert = app.dev_cert_path().map(Path::to_owned).unwrap_or_default();
        let metrics = app.metrics().clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        TestRelay {
            addr,
            plain_addr,
            admin_addr,
            cert,
            metrics,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Sends the shutdown signal (SIGTERM's equivalent) without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Sends the shutdown signal and waits for the drain to finish.
    pub async fn stop(mut self) {
        self.signal_shutdown();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("drain finishes")
                .unwrap();
        }
    }

    /// An h2 client over TLS to this relay.
    pub async fn h2(&self) -> H2Client {
        H2Client::connect(self.addr, &self.cert, None).await
    }

    /// An HTTP/1.1 client over TLS to this relay.
    pub async fn h1(&self) -> H1Client {
        H1Client::connect(self.addr, &self.cert).await
    }
}

/// A TLS client trusting the relay's certificate `cert`, offering `alpn`.
pub fn tls_connector(cert: &Path, alpn: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in sse_relay::server::tls::read_certs(cert).unwrap() {
        roots.add(c).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    addr: SocketAddr,
    cert: &Path,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tls_handshake(tcp, cert, alpn).await
}

async fn tls_handshake(
    tcp: TcpStream,
    cert: &Path,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let stream = tls_connector(cert, alpn)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the dev certificate");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn), "ALPN");
    stream
}

/// A boxed request body for streaming uploads.
pub type UploadBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// One TLS connection speaking h2; every `get` is a new stream on it.
#[derive(Clone)]
pub struct H2Client {
    send: hyper::client::conn::http2::SendRequest<UploadBody>,
}

impl H2Client {
    /// Connects; `stream_window` sets the client's initial stream window (bytes).
    pub async fn connect(addr: SocketAddr, cert: &Path, stream_window: Option<u32>) -> H2Client {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        Self::over(tcp, cert, stream_window).await
    }

    /// Connects from a given local address (e.g. `127.0.0.2`: another loopback client).
    pub async fn connect_from(addr: SocketAddr, from: std::net::IpAddr, cert: &Path) -> H2Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(from, 0))
            .expect("bind the client address");
        let tcp = socket.connect(addr).await.expect("connect");
        Self::over(tcp, cert, None).await
    }

    /// Speaks TLS and h2 on a connection already open (e.g. after a PROXY protocol header).
    pub async fn over(tcp: TcpStream, cert: &Path, stream_window: Option<u32>) -> H2Client {
        let tls = tls_handshake(tcp, cert, b"h2").await;
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        if let Some(window) = stream_window {
            builder.initial_stream_window_size(window);
        }
        let (send, conn) = builder
            .handshake(TokioIo::new(tls))
            .await
            .expect("h2 handshake");
        tokio::spawn(conn);
        H2Client { send }
    }

    /// True once the connection is closed (by either side).
    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }

    /// Sends a GET with extra headers.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Response<Incoming> {
        self.request(http::Method::GET, path, headers).await
    }

    /// Sends a request without body.
    pub async fn request(
        &mut self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response<Incoming> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send_streaming(req.body(Empty::new().boxed()).unwrap())
            .await
    }

    /// Sends a request with a (streaming) body.
    pub async fn send_streaming(&mut self, request: Request<UploadBody>) -> Response<Incoming> {
        self.send.ready().await.expect("h2 ready");
        self.send.send_request(request).await.expect("h2 response")
    }

    /// Opens an event stream.
    pub async fn subscribe(&mut self, path: &str, headers: &[(&str, &str)]) -> EventReader {
        EventReader::new(self.get(path, headers).await)
    }
}

/// One TLS connection speaking HTTP/1.1.
pub struct H1Client {
    send: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl H1Client {
    /// Connects with ALPN http/1.1.
    pub async fn connect(addr: SocketAddr, cert: &Path) -> H1Client {
        let tls = tls_connect(addr, cert, b"http/1.1").await;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        H1Client { send }
    }

    /// Sends a GET with extra headers; the response as it came (its body not read).
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Response<Incoming> {
        let mut req = Request::get(path).header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send
            .send_request(req.body(Empty::new()).unwrap())
            .await
            .expect("h1 response")
    }

    /// Opens an event stream.
    pub async fn subscribe(&mut self, path: &str, headers: &[(&str, &str)]) -> EventReader {
        EventReader::new(self.get(path, headers).await)
    }
}

/// Reads an event stream, keeping the raw bytes and the parsed events.
pub struct EventReader {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    body: Incoming,
    parser: Parser,
    events: VecDeque<Event>,
    items: Vec<Item>,
    /// Every byte received.
    pub raw: Vec<u8>,
    /// The stream ended (cleanly or not).
    pub ended: bool,
}

impl EventReader {
    /// Reads `response` as an event stream.
    pub fn new(response: Response<Incoming>) -> EventReader {
        let (parts, body) = response.into_parts();
        EventReader {
            status: parts.status,
            headers: parts.headers,
            body,
            parser: Parser::new(1 << 20),
            events: VecDeque::new(),
            items: Vec::new(),
            raw: Vec::new(),
            ended: false,
        }
    }

    /// Reads one more chunk; false once the stream ended.
    pub async fn read_chunk(&mut self) -> bool {
        if self.ended {
            return false;
        }
        match self.body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    self.raw.extend_from_slice(&data);
                    self.parser.feed(&data, &mut self.items);
                    for item in self.items.drain(..) {
                        if let Item::Event(e) = item {
                            self.events.push_back(e);
                        }
                    }
                }
                true
            }
            _ => {
                self.ended = true;
                false
            }
        }
    }

    /// The next event, or None when the stream ended first. Panics after [`WAIT`].
    pub async fn next_event(&mut self) -> Option<Event> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(e) = self.events.pop_front() {
                    return Some(e);
                }
                if !self.read_chunk().await {
                    return None;
                }
            }
        })
        .await
        .expect("an event (or the end) within the wait")
    }

    /// The next `n` events' data; panics if the stream ends first.
    pub async fn data(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            let e = self.next_event().await.expect("stream ended early");
            out.push(e.data.unwrap_or_default());
        }
        out
    }

    /// Reads until `needle` appears in the raw bytes (or panics after [`WAIT`]).
    pub async fn until_raw_contains(&mut self, needle: &str) {
        tokio::time::timeout(WAIT, async {
            while !String::from_utf8_lossy(&self.raw).contains(needle) {
                assert!(self.read_chunk().await, "stream ended before {needle:?}");
            }
        })
        .await
        .expect("bytes arrive within the wait")
    }

    /// The stream's first `n` bytes, as text, reading until they have come (or panics after
    /// [`WAIT`], or when the stream ends first).
    pub async fn first_bytes(&mut self, n: usize) -> String {
        tokio::time::timeout(WAIT, async {
            while self.raw.len() < n {
                assert!(self.read_chunk().await, "stream ended before {n} bytes");
            }
        })
        .await
        .expect("bytes arrive within the wait");
        String::from_utf8_lossy(&self.raw[..n]).into_owned()
    }

    /// Reads to the end of the stream (panics after [`WAIT`]).
    pub async fn until_end(&mut self) {
        tokio::time::timeout(WAIT, async { while self.read_chunk().await {} })
            .await
            .expect("stream ends within the wait")
    }
}

/// Reconnects within 10–50 ms instead of the default backoff (for tests that make the origin
/// fail and wait for the relay to ask again).
pub fn fast_backoff(c: &mut Config) {
    c.upstream.backoff_min_ms = 10;
    c.upstream.backoff_max_ms = 50;
}

/// Polls `condition` every 10 ms until true, panicking after [`WAIT`]. It waits in real time
/// (on a blocking thread), so it never moves a paused clock: in a test of timers, moving time
/// is the test's own step (`tokio::time::advance`).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        settle().await;
    }
}

/// Lets the runtime run for a real-time moment (10 ms) without moving a paused clock: what
/// was woken runs and sockets deliver, while no timer can fire.
pub async fn settle() {
    tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(10)))
        .await
        .expect("a blocking sleep does not panic");
}

/// Holds a paused clock (`#[tokio::test(start_paused = true)]`) still while the guard lives:
/// it no longer auto-advances when the runtime waits for sockets, so time moves only by
/// `tokio::time::advance` and no timer of the relay fires unless the test says so. (A running
/// blocking task inhibits auto-advance; see `tokio::time::pause`.) Drop the guard to let time
/// run again, e.g. before [`TestRelay::stop`] waits for a drain. The hold gives up after
/// [`WAIT`] of real time, and the guard's drop then fails the test.
pub fn hold_clock() -> ClockHold {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let expired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = expired.clone();
    tokio::task::spawn_blocking(move || {
        if held.recv_timeout(WAIT) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    ClockHold {
        _release: release,
        expired,
    }
}

/// Moves a paused clock forward by `by` in 10 ms steps, letting the tasks each step wakes run
/// before the next, so timers that re-arm themselves (the drain's steps, `/stats` ticks, an idle
/// grace restarted) fire in the order and about as often as they would in real time.
pub async fn advance(by: Duration) {
    const STEP: Duration = Duration::from_millis(10);
    let mut left = by;
    while !left.is_zero() {
        let step = left.min(STEP);
        tokio::time::advance(step).await;
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        left -= step;
    }
}

/// See [`hold_clock`].
pub struct ClockHold {
    _release: std::sync::mpsc::Sender<()>,
    expired: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for ClockHold {
    fn drop(&mut self) {
        let expired = self.expired.load(std::sync::atomic::Ordering::SeqCst);
        if expired && !std::thread::panicking() {
            panic!("the clock hold expired after {WAIT:?} of real time: time ran on its own");
        }
    }
}

/// A plain HTTP/1.1 GET (for the admin listener); returns status and body text.
pub async fn http_get(addr: SocketAddr, path: &str) -> (http::StatusCode, String) {
    let tcp = TcpStream::connect(addr).await.expect("connect admin");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let request = Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.expect("admin response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A plain HTTP/1.1 GET of an event stream (the admin listener's `/stats`).
pub async fn http_stream(addr: SocketAddr, path: &str) -> EventReader {
    let tcp = TcpStream::connect(addr).await.expect("connect admin");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let request = Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    EventReader::new(send.send_request(request).await.expect("admin response"))
}

/// The value of an unlabelled sample (or the first sample of `name{...}`) in Prometheus text.
pub fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = if rest.starts_with('{') {
            &rest[rest.find('}')? + 1..]
        } else {
            rest
        };
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Makes `config` a member of a static cluster on loopback: peer listener and `cluster.self`
/// at `me`, static `peers`, refresh every 200 ms, the link's CA, certificate and key from
/// `pki` and the token file `token`.
pub fn join_static_cluster(
    config: &mut Config,
    me: SocketAddr,
    peers: &[SocketAddr],
    pki: &pki::Pki,
    token: &Path,
) {
    let c = &mut config.cluster;
    c.peers = peers.iter().map(SocketAddr::to_string).collect();
    c.peer_listen = Some(me);
    c.self_addr = Some(me);
    c.refresh_ms = 200;
    c.ca_file = Some(pki.ca.clone());
    c.cert_file = Some(pki.cert.clone());
    c.key_file = Some(pki.key.clone());
    c.token_file = Some(token.to_path_buf());
}
