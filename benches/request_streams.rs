//! Request streams (issue 27, "Measured"): what the relay adds to a streamed answer a POST
//! starts, and what a kept stream costs it. An in-process OpenAI-compatible origin answers
//! every `POST /v1/chat/completions` with `--chunks` chunks of about 100 bytes
//! (`data: {"choices":[{"delta":{"content":"…"}}]}`, no `id:`), the first at once and the
//! rest paced so the answer lasts `--secs`, then `data: [DONE]`. `--streams` such POSTs are
//! made straight to the origin (TLS + h2), then the same POSTs through the release relay, run
//! as its own process with a `[[stream_route]]` (TLS + h2 from the client, plain HTTP/1.1 to
//! the origin), the starts spread evenly over `--ramp-ms`, over `--conns` h2 connections each.
//! It reports, from one run:
//!
//! - time to first event (POST sent → first event parsed) straight and through the relay,
//!   p50/p99 of each, and what the relay adds (the difference of those percentiles);
//! - the relay's CPU (`utime + stime` of its process, `/proc/<pid>/stat`) per chunk delivered;
//! - the relay's RSS (`VmRSS`) per open stream (all open, mid-answer) and per retained
//!   finished stream (every answer ended, the clients' connections closed), beside the bytes
//!   the relay holds for their events (`sse_relay_request_stream_buffered_bytes`);
//! - resume latency: `GET <resume URL>` with `Last-Event-ID` of the middle chunk, per retained
//!   stream (one at a time per connection), time to first event, p50/p99.
//!
//! Every answer is checked: each chunk once, in order, then `[DONE]`, in each phase; the exit
//! status is 1 when a stream lost, duplicated or reordered a chunk, or failed.
//!
//!   cargo build --release --bin sse-relay
//!   cargo bench --bench request_streams -- --streams 1000 --chunks 500 --secs 10
//!
//! Other options: `--conns 10` (h2 connections per phase), `--ramp-ms 1000`, `--settle-secs 15`
//! (wait before the retained figure: the relay trims freed memory every 10 s), `--relay-bin`
//! (default `$CARGO_TARGET_DIR/release/sse-relay`, else `target/release/sse-relay`),
//! `--relay-fd-table N` (start the relay with its descriptor table already sized past N: the
//! kernel's table doublings, each an RCU grace period in a threaded process, then no longer
//! stall it while measured). Run it with `ulimit -n` above twice `--streams`. It prints, for
//! each phase, the slowest 1 % of first events with when their stream started in the ramp.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LOCATION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http2::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sse_relay::sse::{Item, Parser};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[path = "fixtures/relay_process.rs"]
mod relay_process;
use relay_process::{metric, open_fds, rss_kib, Relay};

/// The chat completion's path, on the origin and on the relay's stream route.
const COMPLETIONS: &str = "/v1/chat/completions";
/// What every chunk's data starts with; the chunk's number (6 digits) follows.
const CHUNK_PREFIX: &str = "{\"choices\":[{\"delta\":{\"content\":\"";
/// Words after the number, sized so a chunk's frame is 100 bytes.
const FILLER: &str = "the quick brown fox jumps over the lazy dog, so";
/// The request every client POSTs (as an OpenAI client would).
const REQUEST_BODY: &str = "{\"model\":\"bench\",\"stream\":true,\"messages\":[{\"role\":\"user\",\
                            \"content\":\"Tell me a long story.\"}]}";

struct Options {
    streams: usize,
    chunks: usize,
    secs: f64,
    conns: usize,
    ramp: Duration,
    settle: Duration,
    relay_bin: PathBuf,
    /// Start the relay with its descriptor table already this large (0: as it comes).
    relay_fd_table: usize,
}

fn options() -> Options {
    let relay_bin = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("release/sse-relay");
    let mut o = Options {
        streams: 1000,
        chunks: 500,
        secs: 10.0,
        conns: 10,
        ramp: Duration::from_millis(1000),
        settle: Duration::from_secs(15),
        relay_bin,
        relay_fd_table: 0,
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_default();
        match flag.as_str() {
            "--streams" => o.streams = value().parse().expect("count"),
            "--chunks" => o.chunks = value().parse().expect("count"),
            "--secs" => o.secs = value().parse().expect("seconds"),
            "--conns" => o.conns = value().parse().expect("count"),
            "--ramp-ms" => o.ramp = Duration::from_millis(value().parse().expect("ms")),
            "--settle-secs" => o.settle = Duration::from_secs(value().parse().expect("secs")),
            "--relay-bin" => o.relay_bin = PathBuf::from(value()),
            "--relay-fd-table" => o.relay_fd_table = value().parse().expect("descriptors"),
            "--help" | "-h" => {
                println!(
                    "request_streams [--streams 1000] [--chunks 500] [--secs 10] [--conns 10] \
                     [--ramp-ms 1000] [--settle-secs 15] [--relay-bin target/release/sse-relay] \
                     [--relay-fd-table 0]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown option {other} (--help)"),
        }
    }
    assert!(
        o.streams > 0 && o.chunks >= 2 && o.conns > 0,
        "nothing to measure"
    );
    o
}

/// The answer every POST gets: how many chunks, how far apart.
#[derive(Clone, Copy)]
struct Shape {
    chunks: usize,
    interval: Duration,
}

impl Shape {
    /// The chunk resumes start after (its id is the resume's `Last-Event-ID`).
    fn middle(self) -> usize {
        self.chunks / 2
    }
}

/// Chunk `n`'s frame: `data: {"choices":[{"delta":{"content":"000042 the quick …"}}]}` and a
/// blank line, 100 bytes.
fn chunk_frame(n: usize) -> Bytes {
    Bytes::from(format!("data: {CHUNK_PREFIX}{n:06} {FILLER}\"}}}}]}}\n\n"))
}

/// The number of the chunk whose data is `data`.
fn chunk_number(data: &str) -> Option<usize> {
    data.strip_prefix(CHUNK_PREFIX)?.get(..6)?.parse().ok()
}

/// The origin's answer: chunk 1 at once, chunk n at (n − 1) intervals, `[DONE]` right after
/// the last chunk, then the body's end.
fn answer(shape: Shape) -> BoxBody<Bytes, Infallible> {
    let start = tokio::time::Instant::now();
    let stream = futures_util::stream::unfold(1usize, move |n| async move {
        if n > shape.chunks + 1 {
            return None;
        }
        if (2..=shape.chunks).contains(&n) {
            tokio::time::sleep_until(start + shape.interval * (n as u32 - 1)).await;
        }
        let frame = if n <= shape.chunks {
            chunk_frame(n)
        } else {
            Bytes::from_static(b"data: [DONE]\n\n")
        };
        Some((Ok::<_, Infallible>(Frame::data(frame)), n + 1))
    });
    StreamBody::new(stream).boxed()
}

/// The origin: counts the POSTs it answered.
#[derive(Clone)]
struct Origin {
    shape: Shape,
    posts: Arc<AtomicUsize>,
}

impl Origin {
    fn respond(&self, req: &Request<Incoming>) -> Response<BoxBody<Bytes, Infallible>> {
        if req.method() != Method::POST || req.uri().path() != COMPLETIONS {
            let mut r = Response::new(Empty::new().boxed());
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
        self.posts.fetch_add(1, Ordering::Relaxed);
        let mut r = Response::new(answer(self.shape));
        r.headers_mut()
            .insert(CONTENT_TYPE, "text/event-stream".parse().unwrap());
        r
    }
}

/// Serves the origin on plain HTTP/1.1 (for the relay; every connection closed after its
/// answer, so the relay's pool keeps no idle origin connection in the memory figures) and on
/// TLS + h2 (for the direct clients, like the relay's clients). Returns both addresses.
async fn serve_origin(origin: Origin, tls: Arc<rustls::ServerConfig>) -> (SocketAddr, SocketAddr) {
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let secure = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = (plain.local_addr().unwrap(), secure.local_addr().unwrap());
    let o = origin.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = plain.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let o = o.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let r = o.respond(&req);
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = secure.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (o, acceptor) = (origin.clone(), acceptor.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req| {
                    let r = o.respond(&req);
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .max_concurrent_streams(100_000)
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addrs
}

/// A self-signed certificate for `localhost` (the origin's TLS listener) and its server
/// configuration (ALPN h2).
fn origin_tls() -> (CertificateDer<'static>, Arc<rustls::ServerConfig>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    (cert, Arc::new(config))
}

/// Starts the relay with one stream route to the origin's plain listener. Defaults otherwise,
/// except `retain_ms` (long enough for the settle wait and the resumes) and the admin port.
///
/// With `fd_table` > 0, the relay inherits an open descriptor numbered `fd_table` (closed here
/// once it started), so the kernel sizes its descriptor table past that from the start and it
/// never grows while measured ([`presize_descriptor_table`] says why that matters).
fn start_relay(bin: &Path, origin: SocketAddr, dir: &Path, fd_table: usize) -> Relay {
    let rest = format!(
        "[streams]\nretain_ms = 600000\n\
         [[stream_route]]\npath = \"{COMPLETIONS}\"\n\
         upstream = \"http://{origin}{COMPLETIONS}\"\nresume_path = \"/streams/{{stream}}\"\n"
    );
    relay_process::start(bin, dir, &rest, fd_table)
}

/// The clients' TLS: trusts the relay's dev certificate and the origin's; ALPN h2.
fn client_tls(
    relay_cert: &Path,
    origin_cert: CertificateDer<'static>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in sse_relay::server::tls::read_certs(relay_cert).unwrap() {
        roots.add(c).unwrap();
    }
    roots.add(origin_cert).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// One client h2 connection: its request handle and the task driving it.
struct Conn {
    send: SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
}

async fn h2_connect(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> Conn {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Conn { send, task }
}

async fn connect_all(addr: SocketAddr, n: usize, tls: &Arc<rustls::ClientConfig>) -> Vec<Conn> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(h2_connect(addr, tls).await);
    }
    conns
}

/// Closes the connections (their sockets with them).
fn close_all(conns: Vec<Conn>) {
    for c in conns {
        drop(c.send);
        c.task.abort();
    }
}

/// Checks one answer's chunks: each exactly once, in order, then `[DONE]` once.
struct Checker {
    next: usize,
    last: usize,
    received: usize,
    lost: usize,
    duplicated: usize,
    done: bool,
}

impl Checker {
    fn new(first: usize, last: usize) -> Self {
        Self {
            next: first,
            last,
            received: 0,
            lost: 0,
            duplicated: 0,
            done: false,
        }
    }

    fn chunk(&mut self, n: usize) {
        if self.done || n < self.next {
            self.duplicated += 1;
            return;
        }
        // A chunk past the one expected: the ones between were lost (or come late: then
        // they count as duplicates too, a reorder fails either way).
        self.lost += n - self.next;
        self.next = n + 1;
        self.received += 1;
    }

    fn done(&mut self) {
        if self.done {
            self.duplicated += 1;
        }
        self.done = true;
    }

    fn finish(&mut self) {
        if self.next <= self.last {
            self.lost += self.last + 1 - self.next;
            self.next = self.last + 1;
        }
    }
}

/// One answer as a client saw it.
#[derive(Default)]
struct Outcome {
    /// Request sent → first event parsed.
    ttfe: Option<Duration>,
    chunks: usize,
    lost: usize,
    duplicated: usize,
    done: bool,
    error: Option<String>,
    /// `Content-Location` (through the relay).
    location: Option<String>,
    /// The id the relay gave the middle chunk.
    middle_id: Option<String>,
}

impl Outcome {
    fn failed(why: String) -> Self {
        Self {
            error: Some(why),
            ..Self::default()
        }
    }

    fn whole(&self) -> bool {
        self.error.is_none() && self.lost == 0 && self.duplicated == 0 && self.done
    }
}

/// Reads an answer's events to the body's end; chunks `first..=shape.chunks` are expected.
async fn read_events(mut body: Incoming, t0: Instant, first: usize, shape: Shape) -> Outcome {
    let (mut parser, mut items) = (Parser::new(1 << 16), Vec::new());
    let mut check = Checker::new(first, shape.chunks);
    let mut outcome = Outcome::default();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                outcome.error = Some(format!("body: {e}"));
                break;
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        parser.feed(&data, &mut items);
        for item in items.drain(..) {
            let Item::Event(event) = item else { continue };
            let Some(data) = event.data else { continue };
            if outcome.ttfe.is_none() {
                outcome.ttfe = Some(t0.elapsed());
            }
            if data == "[DONE]" {
                check.done();
                continue;
            }
            match chunk_number(&data) {
                Some(n) => {
                    check.chunk(n);
                    if n == shape.middle() {
                        outcome.middle_id = event.id;
                    }
                }
                None => outcome.error = Some(format!("not a chunk: {data}")),
            }
        }
    }
    check.finish();
    outcome.chunks = check.received;
    outcome.lost = check.lost;
    outcome.duplicated = check.duplicated;
    outcome.done = check.done;
    outcome
}

/// POSTs a chat completion at `at` and reads the answer.
async fn post_stream(mut send: SendRequest<Full<Bytes>>, at: Instant, shape: Shape) -> Outcome {
    tokio::time::sleep_until(at.into()).await;
    let request = Request::post(format!("https://localhost{COMPLETIONS}"))
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "text/event-stream")
        .body(Full::new(Bytes::from_static(REQUEST_BODY.as_bytes())))
        .unwrap();
    let t0 = Instant::now();
    let response = match send.send_request(request).await {
        Ok(response) => response,
        Err(e) => return Outcome::failed(format!("POST: {e}")),
    };
    if response.status() != StatusCode::OK {
        return Outcome::failed(format!("POST answered {}", response.status()));
    }
    let location = response
        .headers()
        .get(CONTENT_LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut outcome = read_events(response.into_body(), t0, 1, shape).await;
    outcome.location = location;
    outcome
}

/// Resumes a finished stream at `location` after `last_id`: chunks after the middle one.
async fn resume(
    send: &mut SendRequest<Full<Bytes>>,
    location: &str,
    last_id: &str,
    shape: Shape,
) -> Outcome {
    let request = Request::get(format!("https://localhost{location}"))
        .header(ACCEPT, "text/event-stream")
        .header("last-event-id", last_id)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let t0 = Instant::now();
    let response = match send.send_request(request).await {
        Ok(response) => response,
        Err(e) => return Outcome::failed(format!("resume: {e}")),
    };
    if response.status() != StatusCode::OK {
        return Outcome::failed(format!("resume answered {}", response.status()));
    }
    read_events(response.into_body(), t0, shape.middle() + 1, shape).await
}

/// CPU time (user + system) of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name's closing parenthesis: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// Busy and total CPU time of the whole machine (all cores), from `/proc/stat`.
fn machine_cpu() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    let secs = |ticks: u64| Duration::from_secs_f64(ticks as f64 / clock_ticks());
    (secs(total - idle), secs(total))
}

/// RSS of process `pid`, bytes.
fn rss(pid: u32) -> u64 {
    rss_kib(pid) * 1024
}

/// The relay's request-stream gauges at one moment.
#[derive(Default, Clone, Copy)]
struct Gauges {
    streams: f64,
    viewers: f64,
    buffered: f64,
}

async fn gauges(admin: SocketAddr) -> Gauges {
    let get = |name: &'static str| async move { metric(admin, name).await.unwrap_or(f64::NAN) };
    Gauges {
        streams: get("sse_relay_request_stream_topics").await,
        viewers: get("sse_relay_request_stream_subscribers").await,
        buffered: get("sse_relay_request_stream_buffered_bytes").await,
    }
}

/// The `p`-th percentile (nearest rank) of sorted `v`.
fn percentile(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn signed_ms(a: Duration, b: Duration) -> String {
    format!("{:+.3} ms", (a.as_secs_f64() - b.as_secs_f64()) * 1000.0)
}

fn kb(bytes: f64) -> String {
    format!("{:.2} KB", bytes / 1000.0)
}

/// The first events' times of `outcomes`, sorted.
fn ttfes(outcomes: &[Outcome]) -> Vec<Duration> {
    let mut v: Vec<Duration> = outcomes.iter().filter_map(|o| o.ttfe).collect();
    v.sort_unstable();
    v
}

/// The slowest 1 % of first events (at least 3), each as `time to first event @ when its
/// stream started in the ramp`, slowest first: whether the tail sits at the start (a cold
/// relay), spreads over the ramp (load), or follows the connections.
fn slowest(outcomes: &[Outcome], ramp: Duration) -> String {
    let mut v: Vec<(Duration, usize)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| Some((o.ttfe?, i)))
        .collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    let n = outcomes.len();
    v.iter()
        .take((n / 100).max(3))
        .map(|(t, i)| {
            let at = ramp.mul_f64(*i as f64 / n as f64);
            format!("{:.1} ms @ {} ms", t.as_secs_f64() * 1000.0, at.as_millis())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Failures of one phase, printed; true when every answer was whole.
fn report_failures(phase: &str, outcomes: &[Outcome]) -> bool {
    let broken: Vec<&Outcome> = outcomes.iter().filter(|o| !o.whole()).collect();
    let (lost, duplicated): (usize, usize) = outcomes
        .iter()
        .fold((0, 0), |(l, d), o| (l + o.lost, d + o.duplicated));
    println!(
        "{phase}: {} answers, {} whole; chunks lost {lost}, duplicated or out of order {duplicated}",
        outcomes.len(),
        outcomes.len() - broken.len()
    );
    for o in broken.iter().take(5) {
        println!(
            "  broken: {} chunks, lost {}, duplicated {}, [DONE] {}, error {:?}",
            o.chunks, o.lost, o.duplicated, o.done, o.error
        );
    }
    broken.is_empty()
}

/// What one phase of POSTs saw, and the relay's figures taken meanwhile.
struct Phase {
    outcomes: Vec<Outcome>,
    /// Wall time from the first start to the last answer's end.
    took: Duration,
    /// Relay: RSS, gauges and fds mid-answer, CPU over the phase.
    mid_rss: u64,
    mid_gauges: Gauges,
    mid_fds: usize,
    relay_cpu: Duration,
    /// CPU of this process (origin + clients) and of the whole machine over the phase.
    own_cpu: Duration,
    machine: (Duration, Duration),
}

/// `o.streams` POSTs to `addr` over `o.conns` h2 connections, starts spread over the ramp;
/// the relay's (`pid`, `admin`) RSS and gauges are sampled mid-answer (all streams open).
async fn post_phase(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    o: &Options,
    shape: Shape,
    relay: Option<(u32, SocketAddr)>,
) -> Phase {
    let conns = connect_all(addr, o.conns, tls).await;
    let pid = relay.map_or(0, |r| r.0);
    let (cpu0, own0, machine0) = (cpu_time(pid), cpu_time(std::process::id()), machine_cpu());
    let start = Instant::now() + Duration::from_millis(50);
    let handles: Vec<JoinHandle<Outcome>> = (0..o.streams)
        .map(|i| {
            let at = start + o.ramp.mul_f64(i as f64 / o.streams as f64);
            tokio::spawn(post_stream(conns[i % conns.len()].send.clone(), at, shape))
        })
        .collect();
    let answer = shape.interval * (shape.chunks as u32 - 1);
    // Midway between the last start and the first end: every stream open.
    tokio::time::sleep_until((start + (o.ramp + answer) / 2).into()).await;
    let (mid_rss, mid_fds) = (rss(pid), open_fds(pid));
    let mid_gauges = match relay {
        Some((_, admin)) => gauges(admin).await,
        None => Gauges::default(),
    };
    let mut outcomes = Vec::with_capacity(o.streams);
    for h in handles {
        outcomes.push(h.await.unwrap_or_else(|e| Outcome::failed(e.to_string())));
    }
    let took = start.elapsed();
    let (cpu1, own1, machine1) = (cpu_time(pid), cpu_time(std::process::id()), machine_cpu());
    close_all(conns);
    Phase {
        outcomes,
        took,
        mid_rss,
        mid_gauges,
        mid_fds,
        relay_cpu: cpu1.saturating_sub(cpu0),
        own_cpu: own1.saturating_sub(own0),
        machine: (
            machine1.0.saturating_sub(machine0.0),
            machine1.1.saturating_sub(machine0.1),
        ),
    }
}

/// Share of the machine's CPU (all cores) that processes other than this one and the relay
/// used over a phase.
fn others_share(phase: &Phase) -> f64 {
    let (busy, total) = phase.machine;
    let others = busy.as_secs_f64() - phase.own_cpu.as_secs_f64() - phase.relay_cpu.as_secs_f64();
    if total.is_zero() {
        0.0
    } else {
        (others / total.as_secs_f64()).max(0.0) * 100.0
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Grows this process's descriptor table to hold `n` descriptors, before any thread starts.
/// Linux doubles a process's table as descriptors are opened (64, 128, 256, …) and, once the
/// process has threads, each doubling waits for an RCU grace period (`synchronize_rcu` in
/// `expand_fdtable`), which stalls the thread that opened the descriptor for milliseconds.
/// The origin here accepts one connection per stream through the relay; grown now, those
/// stalls are not counted against the relay. (The relay's own table grows as it runs.)
fn presize_descriptor_table(n: usize) {
    let Ok(n) = libc::c_int::try_from(n) else {
        return;
    };
    // SAFETY: dup2 of stderr to a free descriptor number, closed right after; no memory is
    // passed. Fails harmlessly (EBADF) past the descriptor limit.
    unsafe {
        if libc::dup2(2, n) == n {
            libc::close(n);
        }
    }
}

fn main() {
    let o = options();
    presize_descriptor_table(2 * o.streams + 256);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let code = runtime.block_on(run(o));
    std::process::exit(code);
}

async fn run(o: Options) -> i32 {
    let shape = Shape {
        chunks: o.chunks,
        interval: Duration::from_secs_f64(o.secs / o.chunks as f64),
    };
    assert_eq!(chunk_frame(1).len(), 100, "a chunk's frame is 100 bytes");
    let origin = Origin {
        shape,
        posts: Arc::new(AtomicUsize::new(0)),
    };
    let (origin_cert, origin_server_tls) = origin_tls();
    let (origin_plain, origin_tls_addr) = serve_origin(origin.clone(), origin_server_tls).await;
    let dir =
        std::env::temp_dir().join(format!("sse-relay-request-streams-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let relay = start_relay(&o.relay_bin, origin_plain, &dir, o.relay_fd_table);
    let pid = relay.child.id();
    let tls = client_tls(&relay.cert, origin_cert);
    println!(
        "{} streams × {} chunks of 100 B, {:.1} ms apart ({:.1} s per answer), starts over {} ms, \
         {} h2 connections per phase; relay {} (pid {pid}{}); load average at start {}",
        o.streams,
        o.chunks,
        shape.interval.as_secs_f64() * 1000.0,
        o.secs,
        o.ramp.as_millis(),
        o.conns,
        o.relay_bin.display(),
        if o.relay_fd_table > 0 {
            format!(", descriptor table presized past {}", o.relay_fd_table)
        } else {
            String::new()
        },
        load_average()
    );

    // Straight to the origin.
    let direct = post_phase(origin_tls_addr, &tls, &o, shape, None).await;
    let direct_posts = origin.posts.swap(0, Ordering::Relaxed);
    println!(
        "direct: {:.1} s, this process {:.2} s CPU, other processes {:.0} % of the machine",
        direct.took.as_secs_f64(),
        direct.own_cpu.as_secs_f64(),
        others_share(&direct)
    );

    // Through the relay. "Before": the relay started, idle, no client connection.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_before, fds_before) = (rss(pid), open_fds(pid));
    let through = post_phase(relay.addr, &tls, &o, shape, Some((pid, relay.admin))).await;
    let relay_posts = origin.posts.swap(0, Ordering::Relaxed);
    println!(
        "relay: {:.1} s, relay {:.2} s CPU, this process {:.2} s CPU, other processes {:.0} % \
         of the machine",
        through.took.as_secs_f64(),
        through.relay_cpu.as_secs_f64(),
        through.own_cpu.as_secs_f64(),
        others_share(&through)
    );

    // Every answer ended, the clients' connections closed: the streams are retained.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_left = rss(pid);
    tokio::time::sleep(o.settle).await;
    let (rss_retained, fds_retained) = (rss(pid), open_fds(pid));
    let retained = gauges(relay.admin).await;

    // Resumes: each retained stream from its middle chunk's id, one at a time per connection.
    let mut conns = connect_all(relay.addr, o.conns, &tls).await;
    let cpu0 = cpu_time(pid);
    let mut work: Vec<Vec<(String, String)>> = vec![Vec::new(); o.conns];
    let mut unresumable = 0;
    for (i, out) in through.outcomes.iter().enumerate() {
        match (&out.location, &out.middle_id) {
            (Some(l), Some(id)) => work[i % o.conns].push((l.clone(), id.clone())),
            _ => unresumable += 1,
        }
    }
    let resume_started = Instant::now();
    let tasks: Vec<JoinHandle<Vec<Outcome>>> = conns
        .iter_mut()
        .zip(work)
        .map(|(conn, list)| {
            let mut send = conn.send.clone();
            tokio::spawn(async move {
                let mut outs = Vec::with_capacity(list.len());
                for (location, id) in list {
                    outs.push(resume(&mut send, &location, &id, shape).await);
                }
                outs
            })
        })
        .collect();
    let mut resumes = Vec::new();
    for t in tasks {
        resumes.extend(t.await.unwrap_or_default());
    }
    let resume_took = resume_started.elapsed();
    let resume_cpu = cpu_time(pid).saturating_sub(cpu0);
    close_all(conns);

    // The figures.
    let (d, r, re) = (
        ttfes(&direct.outcomes),
        ttfes(&through.outcomes),
        ttfes(&resumes),
    );
    let n = o.streams as f64;
    let delivered: usize = through.outcomes.iter().map(|o| o.chunks).sum();
    let replayed: usize = resumes.iter().map(|o| o.chunks).sum();
    let per_chunk = |cpu: Duration, chunks: usize| {
        if chunks == 0 {
            "–".to_string()
        } else {
            format!("{:.2} µs", cpu.as_secs_f64() * 1e6 / chunks as f64)
        }
    };
    let open_rss = (through.mid_rss as f64 - rss_before as f64) / n;
    let open_events = through.mid_gauges.buffered / n;
    let left_rss = (rss_left as f64 - rss_before as f64) / n;
    let kept_rss = (rss_retained as f64 - rss_before as f64) / n;
    let kept_events = retained.buffered / n;
    println!();
    println!("| figure | straight to the origin | through the relay | relay adds |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, p) in [("p50", 50.0), ("p99", 99.0)] {
        let (a, b) = (percentile(&d, p), percentile(&r, p));
        println!(
            "| time to first event, {name} | {} | {} | {} |",
            ms(a),
            ms(b),
            signed_ms(b, a)
        );
    }
    println!(
        "| time to first event, max | {} | {} | |",
        ms(d.last().copied().unwrap_or_default()),
        ms(r.last().copied().unwrap_or_default())
    );
    println!();
    for (name, phase) in [("straight", &direct), ("through the relay", &through)] {
        println!(
            "slowest 1 % of first events {name}: {}",
            slowest(&phase.outcomes, o.ramp)
        );
    }
    println!();
    println!("| relay figure | value |");
    println!("| --- | ---: |");
    println!(
        "| CPU per chunk delivered (live) | {} ({:.2} s over {delivered} chunks) |",
        per_chunk(through.relay_cpu, delivered),
        through.relay_cpu.as_secs_f64()
    );
    println!(
        "| RSS before (idle, no connection) | {} |",
        kb(rss_before as f64)
    );
    println!(
        "| RSS with {} streams open (mid-answer; {} streams, {} viewers in the gauges) | {} |",
        o.streams,
        through.mid_gauges.streams,
        through.mid_gauges.viewers,
        kb(through.mid_rss as f64)
    );
    println!("| … per open stream | {} |", kb(open_rss));
    println!(
        "| … of which its events so far (buffered bytes ÷ streams) | {} |",
        kb(open_events)
    );
    println!(
        "| … the rest (incl. the {} client connections' share) | {} |",
        o.conns,
        kb(open_rss - open_events)
    );
    println!(
        "| RSS per retained stream, 0.5 s after the clients left | {} |",
        kb(left_rss)
    );
    println!(
        "| RSS per retained stream, {} s later ({} streams, {} viewers in the gauges) | {} |",
        o.settle.as_secs(),
        retained.streams,
        retained.viewers,
        kb(kept_rss)
    );
    println!(
        "| … its events (buffered bytes ÷ streams) | {} |",
        kb(kept_events)
    );
    println!(
        "| … beyond its events (goal ≤ 1 KB) | {} |",
        kb(kept_rss - kept_events)
    );
    println!(
        "| resume (Last-Event-ID of chunk {}) to first event, p50 | {} |",
        shape.middle(),
        ms(percentile(&re, 50.0))
    );
    println!(
        "| resume to first event, p99 | {} |",
        ms(percentile(&re, 99.0))
    );
    println!(
        "| resume to first event, max | {} |",
        ms(re.last().copied().unwrap_or_default())
    );
    println!(
        "| CPU per chunk replayed (resumes) | {} ({} resumes in {:.2} s, {} at a time) |",
        per_chunk(resume_cpu, replayed),
        resumes.len(),
        resume_took.as_secs_f64(),
        o.conns
    );
    println!();
    println!(
        "relay open fds: before {fds_before}, mid-answer {}, retained {fds_retained}",
        through.mid_fds
    );
    println!("origin POSTs: straight {direct_posts}, through the relay {relay_posts}");
    println!("load average at the end: {}", load_average());
    drop(relay);
    let _ = std::fs::remove_dir_all(&dir);

    let mut ok = report_failures("straight", &direct.outcomes);
    ok &= report_failures("through the relay", &through.outcomes);
    ok &= report_failures("resumes", &resumes);
    if unresumable > 0 {
        println!("{unresumable} streams had no resume URL or middle chunk id");
        ok = false;
    }
    if relay_posts != o.streams {
        println!(
            "the origin saw {relay_posts} POSTs through the relay, {} expected",
            o.streams
        );
        ok = false;
    }
    println!(
        "{}",
        if ok {
            "request_streams: every chunk once"
        } else {
            "request_streams: FAIL"
        }
    );
    i32::from(!ok)
}
