//! Soak: runs the release relay as its own process in front of an in-process origin for a given
//! duration while stable subscribers watch every topic and churners connect, resume with
//! `Last-Event-ID` and disconnect; samples the relay's RSS and open file descriptors, and
//! reports their drift after warm-up and whether any subscriber saw a gap.
//!
//! Then it churns topics ([`topic_churn`]): rounds of thousands of distinct topics opened and
//! left, with the relay's RSS before, after each round and after an idle wait.
//!
//!   cargo bench --bench soak -- --duration-secs 1800
//!
//! Exit status 1 when an event was lost, RSS / fd drift exceeds 5 % after warm-up, or the RSS
//! after the topic churn's idle wait is not back near where it was before it.

#[path = "../fixtures/relay_process.rs"]
mod relay_process;
mod topic_churn;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use sse_relay::sse::{encode, Event, Item, Parser};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

use relay_process::{open_fds, rss_kib, Relay};

struct Options {
    duration: Duration,
    topics: usize,
    stable: usize,
    churners: usize,
    rate: u64,
    relay_bin: PathBuf,
    churn_topics: usize,
    churn_rounds: usize,
    churn_idle: Duration,
}

fn options() -> Options {
    let mut o = Options {
        duration: Duration::from_secs(1800),
        topics: 4,
        stable: 200,
        churners: 40,
        rate: 20,
        relay_bin: PathBuf::from("target/release/sse-relay"),
        churn_topics: 10_000,
        churn_rounds: 4,
        churn_idle: Duration::from_secs(30),
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_default();
        match flag.as_str() {
            "--duration-secs" => o.duration = Duration::from_secs(value().parse().expect("secs")),
            // 0: only the topic churn.
            "--topics" => o.topics = value().parse().expect("count"),
            "--stable" => o.stable = value().parse().expect("count"),
            "--churners" => o.churners = value().parse().expect("count"),
            "--rate" => o.rate = value().parse().expect("events/s per topic"),
            "--relay-bin" => o.relay_bin = PathBuf::from(value()),
            "--churn-topics" => o.churn_topics = value().parse().expect("count"),
            "--churn-rounds" => o.churn_rounds = value().parse().expect("count"),
            "--churn-idle-secs" => {
                o.churn_idle = Duration::from_secs(value().parse().expect("secs"))
            }
            "--help" | "-h" => {
                println!(
                    "soak [--duration-secs 1800] [--topics 4] [--stable 200] [--churners 40] \
                     [--rate 20] [--relay-bin target/release/sse-relay] [--churn-topics 10000] \
                     [--churn-rounds 4] [--churn-idle-secs 30]"
                );
                std::process::exit(0);
            }
            _ => {}
        }
    }
    o
}

/// One topic at the origin: every frame so far (for resumes) and the live channel.
type TopicFeed = (Vec<Bytes>, broadcast::Sender<Bytes>);

/// The origin: per topic a history (for resumes) and a live channel; ids are 1, 2, 3, …
#[derive(Clone, Default)]
struct Origin {
    topics: Arc<Mutex<HashMap<String, TopicFeed>>>,
}

impl Origin {
    fn channel(&self, topic: &str) -> broadcast::Sender<Bytes> {
        let mut topics = self.topics.lock().unwrap();
        topics
            .entry(topic.to_string())
            .or_insert_with(|| (Vec::new(), broadcast::channel(4096).0))
            .1
            .clone()
    }

    fn publish(&self, topic: &str) {
        let mut topics = self.topics.lock().unwrap();
        let (history, live) = topics
            .entry(topic.to_string())
            .or_insert_with(|| (Vec::new(), broadcast::channel(4096).0));
        let id = history.len() + 1;
        let frame = encode(&Event {
            id: Some(id.to_string()),
            event_type: None,
            data: Some(format!("{topic} {id}")),
        });
        history.push(frame.clone());
        let _ = live.send(frame);
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<BoxBody<Bytes, Infallible>> {
        let topic = req.uri().path().trim_start_matches("/sub/").to_string();
        let live = self.channel(&topic).subscribe();
        let after: usize = req
            .headers()
            .get("last-event-id")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(usize::MAX);
        let replay: Vec<Bytes> = {
            let topics = self.topics.lock().unwrap();
            let history = &topics[&topic].0;
            history
                .get(after.min(history.len())..)
                .unwrap_or(&[])
                .to_vec()
        };
        let stream = futures_util::stream::unfold(
            (replay.into_iter(), live),
            |(mut replay, mut live)| async move {
                let frame = match replay.next() {
                    Some(f) => f,
                    None => loop {
                        match live.recv().await {
                            Ok(f) => break f,
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(_) => return None,
                        }
                    },
                };
                Some((Ok(Frame::data(frame)), (replay, live)))
            },
        );
        let mut r = Response::new(StreamBody::new(stream).boxed());
        r.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        r
    }
}

async fn serve_origin(origin: Origin) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let origin = origin.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let r = origin.respond(&req);
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// Starts the relay. The topic churn opens 10,000 topics from one address and wants them
/// retired soon after: the topic cap leaves room beside the soak's own topics, one client may
/// take all of it, and the idle grace is a second.
fn start_relay(bin: &Path, origin: SocketAddr, dir: &Path) -> Relay {
    let rest = format!(
        "[replay]\nmax_events = 4096\n\
         [limits]\nmax_topics = 20000\nmax_topics_per_client_percent = 100\n\
         [topics]\nidle_grace_ms = 1000\n\
         [[route]]\npath = \"/events/{{topic}}\"\nupstream = \"http://{origin}/sub/{{topic}}\"\n"
    );
    relay_process::start(bin, dir, &rest, 0)
}

async fn h2_connect(
    addr: SocketAddr,
    cert: &Path,
) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
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
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// Reads a stream, checking ids are consecutive; returns the last id seen. `limit` events at
/// most (None: until the stream ends).
async fn follow(
    send: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    topic: &str,
    last: u64,
    limit: Option<usize>,
    gaps: &AtomicU64,
) -> u64 {
    let mut req = Request::get(format!("https://localhost/events/{topic}"));
    if last > 0 {
        req = req.header("last-event-id", last.to_string());
    }
    let Ok(response) = send.send_request(req.body(Empty::new()).unwrap()).await else {
        return last;
    };
    let mut body = response.into_body();
    let (mut parser, mut items, mut last, mut seen) = (Parser::new(1 << 16), Vec::new(), last, 0);
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        parser.feed(&data, &mut items);
        for item in items.drain(..) {
            let Item::Event(e) = item else { continue };
            let Some(id) = e.id.and_then(|i| i.parse::<u64>().ok()) else {
                continue;
            };
            if last > 0 && id != last + 1 {
                gaps.fetch_add(1, Ordering::Relaxed);
            }
            last = id;
            seen += 1;
            if limit.is_some_and(|l| seen >= l) {
                return last;
            }
        }
    }
    last
}

/// The relay's RSS (KiB) and open descriptors.
fn sample(pid: u32) -> (u64, u64) {
    (rss_kib(pid), open_fds(pid) as u64)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn main() {
    let o = options();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let code = runtime.block_on(run(o));
    std::process::exit(code);
}

async fn run(o: Options) -> i32 {
    let origin = Origin::default();
    let origin_addr = serve_origin(origin.clone()).await;
    let dir = std::env::temp_dir().join(format!("sse-relay-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let relay = start_relay(&o.relay_bin, origin_addr, &dir);
    if o.duration.is_zero() {
        // `--duration-secs 0`: the topic churn alone.
        let ok = churn_topics(&o, &relay, &origin).await;
        return i32::from(!ok);
    }
    let pid = relay.child.id();
    let topics: Vec<String> = (0..o.topics).map(|i| format!("t{i}")).collect();
    let (stable_gaps, churn_gaps) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let resumes = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + o.duration;

    for i in 0..o.stable {
        let (topic, gaps, cert) = (
            topics[i % topics.len()].clone(),
            stable_gaps.clone(),
            relay.cert.clone(),
        );
        let addr = relay.addr;
        tokio::spawn(async move {
            let mut send = h2_connect(addr, &cert).await;
            follow(&mut send, &topic, 0, None, &gaps).await;
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..o.churners {
        let (topic, gaps, cert, resumes) = (
            topics[i % topics.len()].clone(),
            churn_gaps.clone(),
            relay.cert.clone(),
            resumes.clone(),
        );
        let addr = relay.addr;
        tokio::spawn(async move {
            let mut last = 0;
            while Instant::now() < deadline {
                let mut send = h2_connect(addr, &cert).await;
                let n = 1 + (rand::random::<u64>() % 20) as usize;
                last = follow(&mut send, &topic, last, Some(n), &gaps).await;
                resumes.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    {
        let (origin, topics) = (origin.clone(), topics.clone());
        let every = Duration::from_micros(1_000_000 / o.rate.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                for t in &topics {
                    origin.publish(t);
                }
            }
        });
    }

    let started = Instant::now();
    let mut samples = Vec::new();
    println!("| t (s) | RSS (KiB) | open fds | churn resumes |");
    println!("| ---: | ---: | ---: | ---: |");
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(10).min(o.duration / 6)).await;
        let (rss, fds) = sample(pid);
        let t = started.elapsed().as_secs();
        println!(
            "| {t} | {rss} | {fds} | {} |",
            resumes.load(Ordering::Relaxed)
        );
        samples.push((t, rss, fds));
    }
    let warm = o.duration.as_secs() / 5;
    let window = (o.duration.as_secs() / 5).max(10);
    let pick = |from: u64, to: u64, f: fn(&(u64, u64, u64)) -> u64| {
        median(
            samples
                .iter()
                .filter(|s| s.0 >= from && s.0 <= to)
                .map(f)
                .collect(),
        )
    };
    let total = started.elapsed().as_secs();
    let (rss0, rss1) = (
        pick(warm, warm + window, |s| s.1),
        pick(total - window, total, |s| s.1),
    );
    let (fd0, fd1) = (
        pick(warm, warm + window, |s| s.2),
        pick(total - window, total, |s| s.2),
    );
    let drift = |a: u64, b: u64| {
        if a == 0 {
            0.0
        } else {
            (b as f64 - a as f64) / a as f64 * 100.0
        }
    };
    let (rss_drift, fd_drift) = (drift(rss0, rss1), drift(fd0, fd1));
    let (sg, cg) = (
        stable_gaps.load(Ordering::Relaxed),
        churn_gaps.load(Ordering::Relaxed),
    );
    println!();
    println!("duration {total} s, {} topics × {} events/s, {} stable subscribers, {} churners ({} resumes)",
        o.topics, o.rate, o.stable, o.churners, resumes.load(Ordering::Relaxed));
    println!("RSS after warm-up {rss0} KiB → end {rss1} KiB: drift {rss_drift:+.1} %");
    println!("open fds after warm-up {fd0} → end {fd1}: drift {fd_drift:+.1} %");
    println!("gaps: stable subscribers {sg}, churners (resuming with Last-Event-ID) {cg}");
    let churn_ok = churn_topics(&o, &relay, &origin).await;
    drop(relay);
    let ok = sg == 0 && cg == 0 && rss_drift.abs() < 5.0 && fd_drift.abs() < 5.0 && churn_ok;
    println!("{}", if ok { "soak: PASS" } else { "soak: FAIL" });
    i32::from(!ok)
}

/// RSS the relay may keep after the topic churn's idle wait, above what it had before, KiB:
/// what a load that went away may leave behind (maps keep some capacity; the allocator keeps
/// a little) without calling it retained.
const CHURN_SLACK_KIB: u64 = 32 * 1024;

/// Runs the topic churn and prints its figures; false when the RSS after the idle wait is more
/// than [`CHURN_SLACK_KIB`] above what it was before the churn.
async fn churn_topics(o: &Options, relay: &Relay, origin: &Origin) -> bool {
    if o.churn_rounds == 0 || o.churn_topics == 0 {
        return true;
    }
    let target = topic_churn::Target {
        addr: relay.addr,
        admin: relay.admin,
        cert: &relay.cert,
        pid: relay.child.id(),
    };
    let report = topic_churn::run(
        &target,
        origin,
        o.churn_topics,
        o.churn_rounds,
        o.churn_idle,
    )
    .await;
    let rounds: Vec<String> = report.rounds.iter().map(u64::to_string).collect();
    println!(
        "topic churn: {} rounds of {} topics; RSS before {} KiB, after each round {} KiB, \
         after {} s idle {} KiB",
        o.churn_rounds,
        o.churn_topics,
        report.before,
        rounds.join(" → "),
        o.churn_idle.as_secs(),
        report.idle
    );
    report.idle <= report.before + CHURN_SLACK_KIB
}
