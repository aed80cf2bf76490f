//! An in-process SSE origin for tests: real hyper server on 127.0.0.1:0 that counts its
//! subscriptions per topic, keeps a history so it honours `Last-Event-ID`, and can be told to
//! cut every stream mid-event or to go down, or to compress its streams
//! ([`TestOrigin::set_encoding`]). `/ws/...` are WebSocket endpoints
//! ([`super::websocket`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// What the origin recorded about one subscription request.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub topic: String,
    pub version: http::Version,
    pub last_event_id: Option<String>,
    pub headers: http::HeaderMap,
}

/// A canned answer the origin gives a topic's requests instead of a stream.
#[derive(Clone)]
pub struct Canned {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// How many requests get it (`None`: all of them); later ones get the stream.
    pub times: Option<usize>,
}

impl Canned {
    /// `status` with `body`, for every request.
    pub fn status(status: u16, body: &'static str) -> Canned {
        Canned {
            status: StatusCode::from_u16(status).unwrap(),
            headers: vec![("content-type", "text/plain".to_string())],
            body: Bytes::from_static(body.as_bytes()),
            times: None,
        }
    }

    /// Answers `body` (any bytes) instead.
    pub fn body(mut self, body: Vec<u8>) -> Canned {
        self.body = Bytes::from(body);
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: &'static str, value: &str) -> Canned {
        self.headers.push((name, value.to_string()));
        self
    }

    /// Only the next `n` requests get it.
    pub fn times(mut self, n: usize) -> Canned {
        self.times = Some(n);
        self
    }
}

#[derive(Default)]
struct TopicState {
    history: Vec<(String, Bytes)>,
    open: usize,
    /// Requests of any answer, count.
    hits: usize,
    canned: Option<Canned>,
    /// Bytes every new stream of the topic starts with (e.g. a `retry:` field).
    preface: Option<Bytes>,
}

enum Live {
    Frame(Bytes),
    /// Send these bytes (a partial event) and then break the stream.
    Cut(Bytes),
}

#[derive(Clone)]
pub struct TestOrigin {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

struct Inner {
    topics: Mutex<HashMap<String, TopicState>>,
    requests: Mutex<Vec<SeenRequest>>,
    live: broadcast::Sender<(String, Live)>,
    down: AtomicBool,
    wrong_type: AtomicBool,
    strict_ids: AtomicBool,
    ignore_ids: AtomicBool,
    /// The content coding of the streams answered from now on.
    encoding: Mutex<Option<&'static str>>,
    ws: Arc<super::websocket::WsLog>,
}

impl Clone for Live {
    fn clone(&self) -> Self {
        match self {
            Live::Frame(b) => Live::Frame(b.clone()),
            Live::Cut(b) => Live::Cut(b.clone()),
        }
    }
}

struct OpenGuard {
    inner: Arc<Inner>,
    topic: String,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if let Some(t) = self.inner.topics.lock().unwrap().get_mut(&self.topic) {
            t.open -= 1;
        }
    }
}

impl TestOrigin {
    /// Starts the origin on a free loopback port. `GET /sub/{topic}` subscribes.
    pub async fn start() -> TestOrigin {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts the origin on `addr` (to restart one at the same address).
    pub async fn start_on(addr: SocketAddr) -> TestOrigin {
        Self::start_inner(addr, None).await
    }

    /// Starts an https origin (ALPN h2 and http/1.1) with a generated certificate whose PEM is
    /// written to `dir/cert.pem`.
    pub async fn start_tls(dir: &std::path::Path) -> TestOrigin {
        let dev = sse_relay::server::tls::dev_certificate(dir).expect("origin certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(dev.config));
        Self::start_inner("127.0.0.1:0".parse().unwrap(), Some(acceptor)).await
    }

    /// Starts an https origin like [`TestOrigin::start_tls`] that requires a client certificate
    /// (mutual TLS) issued by a CA of its own; writes that client certificate and its key to
    /// `dir/client.pem` and `dir/client.key`.
    pub async fn start_mtls(dir: &std::path::Path) -> TestOrigin {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let dev = sse_relay::server::tls::dev_certificate(dir).expect("origin certificate");
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client = CertificateParams::new(vec!["relay".to_string()])
            .unwrap()
            .signed_by(&client_key, &ca, &ca_key)
            .unwrap();
        std::fs::write(dir.join("client.pem"), client.pem()).unwrap();
        std::fs::write(dir.join("client.key"), client_key.serialize_pem()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(dev.store.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::start_inner("127.0.0.1:0".parse().unwrap(), Some(acceptor)).await
    }

    async fn start_inner(addr: SocketAddr, tls: Option<tokio_rustls::TlsAcceptor>) -> TestOrigin {
        let listener = TcpListener::bind(addr).await.expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            topics: Mutex::default(),
            requests: Mutex::default(),
            live: broadcast::channel(4096).0,
            down: AtomicBool::new(false),
            wrong_type: AtomicBool::new(false),
            strict_ids: AtomicBool::new(false),
            ignore_ids: AtomicBool::new(false),
            encoding: Mutex::new(None),
            ws: Arc::default(),
        });
        let served = inner.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let inner = served.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let inner = inner.clone();
                        async move { Ok::<_, Infallible>(respond(&inner, req)) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                        None => {
                            let io = TokioIo::new(tcp);
                            let _ = builder.serve_connection_with_upgrades(io, service).await;
                        }
                    }
                });
            }
        });
        TestOrigin { addr, inner }
    }

    /// The upstream URL template for a route.
    pub fn template(&self) -> String {
        format!("http://{}/sub/{{topic}}", self.addr)
    }

    /// Publishes an event with `id` and `data` on `topic` (kept in history for resumes).
    pub fn publish(&self, topic: &str, id: &str, data: &str) {
        let frame = Bytes::from(format!("id: {id}\ndata: {data}\n\n"));
        self.publish_raw(topic, Some(id), frame);
    }

    /// Publishes raw bytes (kept in history under `id` if given).
    pub fn publish_raw(&self, topic: &str, id: Option<&str>, frame: Bytes) {
        {
            let mut topics = self.inner.topics.lock().unwrap();
            let t = topics.entry(topic.to_string()).or_default();
            if let Some(id) = id {
                t.history.push((id.to_string(), frame.clone()));
            }
        }
        let _ = self
            .inner
            .live
            .send((topic.to_string(), Live::Frame(frame)));
    }

    /// From now on, every new stream of `topic` starts with `preface` (before any replayed
    /// event), as an origin that says `retry:` first.
    pub fn start_streams_with(&self, topic: &str, preface: &str) {
        let mut topics = self.inner.topics.lock().unwrap();
        topics.entry(topic.to_string()).or_default().preface =
            Some(Bytes::from(preface.to_string()));
    }

    /// Sends `partial` (an unterminated event) on every open stream of `topic`, then breaks them.
    pub fn cut(&self, topic: &str, partial: &str) {
        let _ = self.inner.live.send((
            topic.to_string(),
            Live::Cut(Bytes::from(partial.to_string())),
        ));
    }

    /// While set, subscription requests get `200 text/plain` instead of an event stream.
    pub fn set_wrong_type(&self, wrong: bool) {
        self.inner.wrong_type.store(wrong, Ordering::SeqCst);
    }

    /// The https upstream URL template (the certificate names `localhost`).
    pub fn tls_template(&self) -> String {
        format!("https://localhost:{}/sub/{{topic}}", self.addr.port())
    }

    /// While set, a `Last-Event-ID` this origin never issued gets `400 Bad Request`.
    pub fn set_strict_ids(&self, strict: bool) {
        self.inner.strict_ids.store(strict, Ordering::SeqCst);
    }

    /// While set, this origin ignores `Last-Event-ID` (as many do): every stream starts live,
    /// with nothing replayed.
    pub fn set_ignore_last_event_id(&self, ignore: bool) {
        self.inner.ignore_ids.store(ignore, Ordering::SeqCst);
    }

    /// Streams answered from now on are compressed by `coding` (`gzip`, `deflate`, `br`,
    /// `zstd`; `None`: not compressed) whatever the request's `Accept-Encoding`, each frame
    /// flushed as it is sent, with `Content-Encoding: {coding}`.
    pub fn set_encoding(&self, coding: Option<&'static str>) {
        *self.inner.encoding.lock().unwrap() = coding;
    }

    /// While down, subscription requests get 503.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// Subscription requests that got a stream, for `topic`.
    pub fn requests(&self, topic: &str) -> Vec<SeenRequest> {
        self.inner
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.topic == topic)
            .cloned()
            .collect()
    }

    /// From now on, requests for `topic` get `canned` instead of a stream.
    pub fn answer(&self, topic: &str, canned: Canned) {
        let mut topics = self.inner.topics.lock().unwrap();
        topics.entry(topic.to_string()).or_default().canned = Some(canned);
    }

    /// Requests for `topic` so far, whatever they were answered.
    pub fn hits(&self, topic: &str) -> usize {
        self.inner
            .topics
            .lock()
            .unwrap()
            .get(topic)
            .map_or(0, |t| t.hits)
    }

    /// What the WebSocket endpoints saw (see [`super::websocket::WsLog`]).
    pub fn websocket_log(&self) -> Vec<String> {
        self.inner.ws.entries()
    }

    /// Streams of `topic` open right now.
    pub fn open(&self, topic: &str) -> usize {
        self.inner
            .topics
            .lock()
            .unwrap()
            .get(topic)
            .map_or(0, |t| t.open)
    }
}

fn respond(inner: &Arc<Inner>, req: Request<Incoming>) -> Response<BoxBody<Bytes, std::io::Error>> {
    if req.uri().path().starts_with("/ws/") {
        return super::websocket::respond(&inner.ws, req);
    }
    let Some(topic) = req.uri().path().strip_prefix("/sub/").map(str::to_string) else {
        return status(StatusCode::NOT_FOUND);
    };
    if let Some(canned) = count_hit(inner, &topic) {
        let mut r = Response::new(BodyExt::boxed(
            Full::new(canned.body.clone()).map_err(|never: Infallible| match never {}),
        ));
        *r.status_mut() = canned.status;
        for (name, value) in &canned.headers {
            r.headers_mut()
                .insert(*name, http::HeaderValue::from_str(value).unwrap());
        }
        return r;
    }
    if inner.down.load(Ordering::SeqCst) {
        return status(StatusCode::SERVICE_UNAVAILABLE);
    }
    if inner.wrong_type.load(Ordering::SeqCst) {
        return status(StatusCode::OK);
    }
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .map(|v| v.to_str().unwrap().to_string());
    if let (true, Some(id)) = (inner.strict_ids.load(Ordering::SeqCst), &last_event_id) {
        let topics = inner.topics.lock().unwrap();
        let known = topics
            .get(&topic)
            .is_some_and(|t| t.history.iter().any(|(i, _)| i == id));
        if !known {
            return status(StatusCode::BAD_REQUEST);
        }
    }
    inner.requests.lock().unwrap().push(SeenRequest {
        topic: topic.clone(),
        version: req.version(),
        last_event_id: last_event_id.clone(),
        headers: req.headers().clone(),
    });
    // Subscribe to live frames before reading history, so nothing falls between the two.
    let live = inner.live.subscribe();
    let (preface, replay): (Option<Bytes>, Vec<Bytes>) = {
        let mut topics = inner.topics.lock().unwrap();
        let t = topics.entry(topic.clone()).or_default();
        t.open += 1;
        let replays = !inner.ignore_ids.load(Ordering::SeqCst);
        let start = match last_event_id.as_ref().filter(|_| replays) {
            Some(id) => t
                .history
                .iter()
                .position(|(i, _)| i == id)
                .map_or(0, |p| p + 1),
            None => t.history.len(),
        };
        let replay = t.history[start..].iter().map(|(_, f)| f.clone()).collect();
        (t.preface.clone(), replay)
    };
    let guard = OpenGuard {
        inner: inner.clone(),
        topic: topic.clone(),
    };
    let mut first = vec![Bytes::from_static(b": origin\n\n")];
    first.extend(preface);
    first.extend(replay);
    let state = (first.into_iter(), live, guard, false);
    let stream =
        futures_util::stream::unfold(state, move |(mut first, mut live, guard, broken)| {
            let topic = topic.clone();
            async move {
                if broken {
                    // Break the stream: hyper aborts it without a clean end.
                    return Some((
                        Err(std::io::Error::other("cut by test")),
                        (first, live, guard, true),
                    ));
                }
                if let Some(frame) = first.next() {
                    return Some((Ok(Frame::data(frame)), (first, live, guard, false)));
                }
                loop {
                    match live.recv().await {
                        Ok((t, Live::Frame(frame))) if t == topic => {
                            return Some((Ok(Frame::data(frame)), (first, live, guard, false)))
                        }
                        Ok((t, Live::Cut(partial))) if t == topic => {
                            return Some((Ok(Frame::data(partial)), (first, live, guard, true)))
                        }
                        Ok(_) => continue,
                        Err(_) => return None,
                    }
                }
            }
        });
    let coding = *inner.encoding.lock().unwrap();
    let mut response = match coding {
        None => Response::new(BodyExt::boxed(StreamBody::new(stream))),
        Some(coding) => {
            let compressed = super::encoding::compress(coding, Box::pin(stream));
            let mut response = Response::new(BodyExt::boxed(StreamBody::new(compressed)));
            response.headers_mut().insert(
                http::header::CONTENT_ENCODING,
                http::HeaderValue::from_static(coding),
            );
            response
        }
    };
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// Counts a request for `topic`; the canned answer it gets, if any.
fn count_hit(inner: &Inner, topic: &str) -> Option<Canned> {
    let mut topics = inner.topics.lock().unwrap();
    let t = topics.entry(topic.to_string()).or_default();
    t.hits += 1;
    let canned = t.canned.as_mut()?;
    match &mut canned.times {
        Some(0) => None,
        Some(n) => {
            *n -= 1;
            Some(canned.clone())
        }
        None => Some(canned.clone()),
    }
}

fn status(code: StatusCode) -> Response<BoxBody<Bytes, std::io::Error>> {
    let mut r = Response::new(BodyExt::boxed(
        Full::new(Bytes::new()).map_err(|never: Infallible| match never {}),
    ));
    *r.status_mut() = code;
    r
}
