//! The subscribing side: C TLS connections (rustls) × S/C streams each, over h2 (hyper's
//! client) or HTTP/1.1 (one stream per connection). Each stream reads its event stream, checks
//! that sequence numbers arrive complete and in order, and records receive − publish time per
//! delivery into a sharded HDR histogram. A counting shim under TLS counts the TLS
//! application-data records received, so events per record can be reported.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{ACCEPT, HOST};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use tokio_rustls::TlsConnector;

/// Nanoseconds since the benchmark started (monotonic; publisher and subscribers share it).
pub fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// HTTP version spoken to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Proto {
    /// HTTP/2: many streams per connection.
    H2,
    /// HTTP/1.1: one stream per connection.
    H1,
}

/// Where subscribers connect.
#[derive(Clone)]
pub struct Endpoint {
    /// TLS address.
    pub addr: SocketAddr,
    /// Path before the channel name (`/sub/` for nchan, `/events/` for the relay).
    pub prefix: &'static str,
}

impl Endpoint {
    fn uri(&self, channel: &str, proto: Proto) -> String {
        match proto {
            Proto::H2 => format!(
                "https://localhost:{}{}{channel}",
                self.addr.port(),
                self.prefix
            ),
            Proto::H1 => format!("{}{channel}", self.prefix),
        }
    }
}

/// A client TLS config per protocol, trusting only the benchmark's certificate.
#[derive(Clone)]
pub struct ClientTls {
    h2: TlsConnector,
    h1: TlsConnector,
}

impl ClientTls {
    /// Builds both configs (ALPN `h2`, resp. `http/1.1`).
    pub fn new(cert_der: &[u8]) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(cert_der.to_vec()))?;
        let make = |alpn: &[u8]| -> Result<TlsConnector> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(TlsConnector::from(Arc::new(config)))
        };
        Ok(Self {
            h2: make(b"h2")?,
            h1: make(b"http/1.1")?,
        })
    }
}

const SHARDS: usize = 64;

/// Counters and latencies of one measurement, shared by every stream.
pub struct Tally {
    /// Events received (all streams).
    pub delivered: AtomicU64,
    /// Events out of sequence (lost, duplicated or reordered), count.
    pub order_errors: AtomicU64,
    /// Streams that ended or failed while subscribed.
    pub ended: AtomicU64,
    /// Body frames (h2 DATA frames / h1 chunks) that carried at least one event.
    pub event_frames: AtomicU64,
    /// TLS application-data records received (all connections).
    pub records: AtomicU64,
    /// Receive time of the latest delivery, [`now_ns`].
    pub last_delivery_ns: AtomicU64,
    /// Record latencies only while set.
    pub recording: AtomicBool,
    /// The negotiated protocol and cipher suite (first connection).
    pub tls_params: OnceLock<String>,
    /// A sequence number to watch for (`u64::MAX`: none); see [`Tally::watch_for`].
    mark: AtomicU64,
    /// Streams that have received the event numbered [`Tally::watch_for`] (or a later one).
    pub reached_mark: AtomicU64,
    /// When the latest of those streams got there, [`now_ns`].
    pub reached_mark_last_ns: AtomicU64,
    latency: Vec<Mutex<Histogram<u64>>>,
}

/// Latency quantiles of a histogram, µs.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Quantiles {
    /// Samples, count.
    pub count: u64,
    /// Median, µs.
    pub p50: u64,
    /// 99th percentile, µs.
    pub p99: u64,
    /// Largest, µs.
    pub max: u64,
}

/// A latency histogram in µs from 1 µs to 10 min, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// The quantiles of `h`.
pub fn quantiles(h: &Histogram<u64>) -> Quantiles {
    Quantiles {
        count: h.len(),
        p50: h.value_at_quantile(0.5),
        p99: h.value_at_quantile(0.99),
        max: h.max(),
    }
}

impl Tally {
    /// A fresh tally.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            delivered: AtomicU64::new(0),
            order_errors: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            event_frames: AtomicU64::new(0),
            records: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            recording: AtomicBool::new(false),
            tls_params: OnceLock::new(),
            mark: AtomicU64::new(u64::MAX),
            reached_mark: AtomicU64::new(0),
            reached_mark_last_ns: AtomicU64::new(0),
            latency: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
        })
    }

    /// From now on, counts in `reached_mark` each stream as it receives event `seq` or a later
    /// one (once per stream), and keeps the time of the latest in `reached_mark_last_ns`. Set it
    /// before `seq` is published.
    pub fn watch_for(&self, seq: u64) {
        self.reached_mark.store(0, Ordering::Release);
        self.reached_mark_last_ns.store(0, Ordering::Release);
        self.mark.store(seq, Ordering::Release);
    }

    /// Clears the latency histograms.
    pub fn reset_latency(&self) {
        for shard in &self.latency {
            if let Ok(mut h) = shard.lock() {
                h.reset();
            }
        }
    }

    /// The merged latency histogram.
    pub fn latency(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.latency {
            if let Ok(h) = shard.lock() {
                let _ = all.add(&*h);
            }
        }
        all
    }

    /// Waits until `target` events were delivered in total; fails after `timeout` or as soon
    /// as a stream ended or an event came out of order.
    pub async fn wait_delivered(&self, target: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check()?;
            let got = self.delivered.load(Ordering::Acquire);
            if got >= target {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("missing deliveries: {got} of {target} arrived within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Fails if a stream ended or an event was lost, duplicated or reordered.
    pub fn check(&self) -> Result<()> {
        let errors = self.order_errors.load(Ordering::Acquire);
        if errors > 0 {
            bail!("{errors} events arrived out of sequence (lost, duplicated or reordered)");
        }
        let ended = self.ended.load(Ordering::Acquire);
        if ended > 0 {
            bail!("{ended} subscriber streams ended while subscribed");
        }
        Ok(())
    }
}

/// Every connection and stream task of a set of subscribers; dropping it closes them all.
#[derive(Default)]
pub struct Fleet {
    tasks: Vec<AbortHandle>,
    /// Subscribers opened, count.
    pub subscribers: u64,
    /// Connections opened, count.
    pub connections: u64,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Fleet {
    /// Moves `other`'s tasks into this fleet.
    pub fn absorb(&mut self, mut other: Fleet) {
        self.tasks.append(&mut other.tasks);
        self.subscribers += other.subscribers;
        self.connections += other.connections;
    }
}

/// What subscribing needs: where, how, which channel, and the shared tally.
#[derive(Clone)]
pub struct Subscribe {
    /// The target.
    pub endpoint: Endpoint,
    /// Client TLS configs.
    pub tls: ClientTls,
    /// HTTP version.
    pub proto: Proto,
    /// Channel (topic) name.
    pub channel: String,
    /// Where deliveries are counted.
    pub tally: Arc<Tally>,
}

/// One open connection that can take more streams (h2 only).
pub struct Conn {
    send: ConnSend,
    index: usize,
}

enum ConnSend {
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
    H1(Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>),
}

/// Opens `connections` connections with `streams` subscriber streams each, at most
/// `concurrency` connection setups at a time; returns once every stream got its response
/// headers. The connections are returned too, for adding streams later (h2).
pub async fn open(
    sub: &Subscribe,
    connections: usize,
    streams: usize,
    concurrency: usize,
    timeout: Duration,
) -> Result<(Fleet, Vec<Conn>)> {
    let gate = Arc::new(Semaphore::new(concurrency));
    let mut setups = tokio::task::JoinSet::new();
    for index in 0..connections {
        let (sub, gate) = (sub.clone(), gate.clone());
        setups.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let mut fleet = Fleet::default();
            let mut conn = connect(&sub, index, &mut fleet).await?;
            add_streams(&sub, &mut conn, streams, &mut fleet).await?;
            anyhow::Ok((fleet, conn))
        });
    }
    let mut fleet = Fleet::default();
    let mut conns = Vec::with_capacity(connections);
    let collect = async {
        while let Some(done) = setups.join_next().await {
            let (f, c) = done??;
            fleet.absorb(f);
            conns.push(c);
        }
        anyhow::Ok(())
    };
    match tokio::time::timeout(timeout, collect).await {
        Ok(result) => result?,
        Err(_) => bail!(
            "subscribing timed out after {timeout:?} ({} of {connections} connections ready)",
            conns.len()
        ),
    }
    Ok((fleet, conns))
}

/// Opens one TLS connection and completes the HTTP handshake (no stream yet).
pub async fn connect(sub: &Subscribe, index: usize, fleet: &mut Fleet) -> Result<Conn> {
    let tcp = TcpStream::connect(sub.endpoint.addr)
        .await
        .with_context(|| format!("connect to {}", sub.endpoint.addr))?;
    tcp.set_nodelay(true)?;
    let counted = RecordCounter::new(tcp, sub.tally.clone());
    let connector = match sub.proto {
        Proto::H2 => &sub.tls.h2,
        Proto::H1 => &sub.tls.h1,
    };
    let tls = connector
        .connect(ServerName::try_from("localhost")?, counted)
        .await
        .context("TLS handshake")?;
    let (_, session) = tls.get_ref();
    let _ = sub.tally.tls_params.set(format!(
        "{:?}, {:?}, ALPN {}",
        session.protocol_version().context("no TLS version")?,
        session
            .negotiated_cipher_suite()
            .context("no cipher suite")?
            .suite(),
        String::from_utf8_lossy(session.alpn_protocol().unwrap_or(b"none")),
    ));
    let io = TokioIo::new(tls);
    let send = match sub.proto {
        Proto::H2 => {
            let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .context("h2 handshake")?;
            fleet.tasks.push(tokio::spawn(connection).abort_handle());
            ConnSend::H2(send)
        }
        Proto::H1 => {
            let (send, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .context("HTTP/1.1 handshake")?;
            fleet.tasks.push(tokio::spawn(connection).abort_handle());
            ConnSend::H1(Some(send))
        }
    };
    fleet.connections += 1;
    Ok(Conn { send, index })
}

/// Opens `streams` more subscriber streams on `conn` (concurrently on h2; HTTP/1.1 takes
/// exactly one) and waits for their response headers.
pub async fn add_streams(
    sub: &Subscribe,
    conn: &mut Conn,
    streams: usize,
    fleet: &mut Fleet,
) -> Result<()> {
    let uri = sub.endpoint.uri(&sub.channel, sub.proto);
    let request = || {
        Request::get(uri.as_str())
            .header(ACCEPT, "text/event-stream")
            .header(HOST, format!("localhost:{}", sub.endpoint.addr.port()))
            .body(Empty::<Bytes>::new())
    };
    let responses = match &mut conn.send {
        ConnSend::H2(send) => {
            let pending: Vec<_> = (0..streams)
                .map(|_| {
                    let mut send = send.clone();
                    let mut req = request();
                    if let Ok(r) = &mut req {
                        // h2 carries the authority in :authority.
                        r.headers_mut().remove(HOST);
                    }
                    async move {
                        send.ready().await?;
                        anyhow::Ok(send.send_request(req?).await?)
                    }
                })
                .collect();
            futures_util::future::try_join_all(pending).await?
        }
        ConnSend::H1(slot) => {
            if streams != 1 {
                bail!("HTTP/1.1 carries one stream per connection");
            }
            let mut send = slot.take().context("HTTP/1.1 connection already in use")?;
            send.ready().await?;
            vec![send.send_request(request()?).await?]
        }
    };
    for (i, response) in responses.into_iter().enumerate() {
        if response.status() != http::StatusCode::OK {
            bail!("subscribe answered {}", response.status());
        }
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("text/event-stream") {
            bail!("subscribe answered content-type {content_type:?}");
        }
        let shard = (conn.index * 131 + i) % SHARDS;
        let tally = sub.tally.clone();
        let body = response.into_body();
        fleet
            .tasks
            .push(tokio::spawn(read_events(body, tally, shard)).abort_handle());
        fleet.subscribers += 1;
    }
    Ok(())
}

/// Reads one subscriber's event stream until it ends (which counts as a failure).
async fn read_events(mut body: Incoming, tally: Arc<Tally>, shard: usize) {
    let mut check = SequenceCheck::default();
    let mut latencies: Vec<u64> = Vec::new();
    let mut reached = u64::MAX;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = now_ns();
        let fed = check.feed(&data, now, &mut latencies);
        if fed.events == 0 {
            continue;
        }
        if tally.recording.load(Ordering::Relaxed) {
            if let Ok(mut h) = tally.latency[shard].lock() {
                for &l in &latencies {
                    h.saturating_record(l.max(1));
                }
            }
        }
        latencies.clear();
        if fed.out_of_sequence > 0 {
            tally
                .order_errors
                .fetch_add(fed.out_of_sequence, Ordering::AcqRel);
        }
        if passes_mark(
            &mut reached,
            check.next_seq,
            tally.mark.load(Ordering::Relaxed),
        ) {
            tally.reached_mark_last_ns.fetch_max(now, Ordering::AcqRel);
            tally.reached_mark.fetch_add(1, Ordering::AcqRel);
        }
        tally.event_frames.fetch_add(1, Ordering::Relaxed);
        tally.last_delivery_ns.fetch_max(now, Ordering::AcqRel);
        tally.delivered.fetch_add(fed.events, Ordering::AcqRel);
    }
    tally.ended.fetch_add(1, Ordering::AcqRel);
}

/// Whether a stream whose next expected sequence number is `next_seq` has just reached `mark`
/// (received it or a later event) for the first time; `reached` remembers the mark it last
/// reached, so each mark counts once per stream.
fn passes_mark(reached: &mut u64, next_seq: u64, mark: u64) -> bool {
    if *reached == mark || next_seq <= mark {
        return false;
    }
    *reached = mark;
    true
}

/// One stream's events and their order: splits the body at blank lines, reads `<seq> <publish
/// ns>` from each event's `data:` line (comments and `retry:` hints carry none and are skipped)
/// and counts every event whose sequence number is not the one after the previous event's
/// (the first must be 0): a lost, duplicated or reordered event each counts.
#[derive(Default)]
pub struct SequenceCheck {
    /// Bytes of an event not yet complete.
    buf: Vec<u8>,
    next_seq: u64,
}

/// What one body frame held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fed {
    /// Events completed by this frame, count.
    pub events: u64,
    /// Of those, events out of sequence, count.
    pub out_of_sequence: u64,
}

impl SequenceCheck {
    /// Feeds one body frame received at `now` (ns, [`now_ns`]); pushes each completed event's
    /// latency (µs: `now` − its publish time) to `latencies`.
    pub fn feed(&mut self, data: &[u8], now: u64, latencies: &mut Vec<u64>) -> Fed {
        self.buf.extend_from_slice(data);
        let mut fed = Fed::default();
        let mut consumed = 0;
        while let Some(end) = find_blank_line(&self.buf[consumed..]) {
            let block = &self.buf[consumed..consumed + end];
            consumed += end + 2;
            let Some((seq, sent)) = parse_event(block) else {
                continue; // a comment, a retry hint
            };
            if seq != self.next_seq {
                fed.out_of_sequence += 1;
            }
            self.next_seq = seq + 1;
            fed.events += 1;
            latencies.push(now.saturating_sub(sent) / 1_000);
        }
        self.buf.drain(..consumed);
        fed
    }
}

fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n")
}

/// `data: <seq> <publish ns> [padding]` → (seq, publish ns).
fn parse_event(block: &[u8]) -> Option<(u64, u64)> {
    let line = block
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"data:"))?;
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split_whitespace();
    let seq = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    Some((seq, sent))
}

/// TLS record boundaries in a byte stream read in arbitrary pieces (RFC 8446 §5.1: a 5-byte
/// header of content type, version and length, then `length` bytes): counts the
/// application-data records (content type 23).
#[derive(Default)]
pub struct RecordParser {
    header: [u8; 5],
    header_len: usize,
    remaining: usize,
}

impl RecordParser {
    /// Feeds the next bytes; returns the application-data records whose header they completed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut records = 0;
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(bytes.len());
                self.remaining -= take;
                bytes = &bytes[take..];
                continue;
            }
            self.header[self.header_len] = bytes[0];
            self.header_len += 1;
            bytes = &bytes[1..];
            if self.header_len == 5 {
                self.header_len = 0;
                self.remaining = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                if self.header[0] == 23 {
                    records += 1;
                }
            }
        }
        records
    }
}

/// Passes bytes through, counting the TLS application-data records (content type 23) it reads.
struct RecordCounter {
    inner: TcpStream,
    tally: Arc<Tally>,
    records: RecordParser,
}

impl RecordCounter {
    fn new(inner: TcpStream, tally: Arc<Tally>) -> Self {
        Self {
            inner,
            tally,
            records: RecordParser::default(),
        }
    }
}

impl AsyncRead for RecordCounter {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let records = this.records.feed(&buf.filled()[before..]);
            if records > 0 {
                this.tally.records.fetch_add(records, Ordering::Relaxed);
            }
        }
        result
    }
}

impl AsyncWrite for RecordCounter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Run by `tests/fanout_instrument.rs`; the bench target itself (`harness = false`) compiles
/// them without a test runner, hence `dead_code` there.
#[cfg(test)]
#[allow(dead_code)]
mod tests {
    use super::*;

    /// An event as both targets send it: `data: <seq> <publish ns> <padding>`.
    fn event(seq: u64, sent_ns: u64) -> String {
        format!("id: {seq}\ndata: {seq} {sent_ns} xxxxxxxx\n\n")
    }

    fn feed_all(check: &mut SequenceCheck, body: &str, piece: usize) -> (Fed, Vec<u64>) {
        let mut latencies = Vec::new();
        let mut total = Fed::default();
        for chunk in body.as_bytes().chunks(piece) {
            let fed = check.feed(chunk, 10_000_000, &mut latencies);
            total.events += fed.events;
            total.out_of_sequence += fed.out_of_sequence;
        }
        (total, latencies)
    }

    #[test]
    fn in_order_events_pass_in_any_split_and_preamble_is_skipped() {
        let body = format!(
            ": sse-relay\nretry: 2000\n\n{}{}:\n\n{}",
            event(0, 1_000_000),
            event(1, 2_000_000),
            event(2, 9_000_000)
        );
        for piece in [1, 2, 7, body.len()] {
            let (fed, latencies) = feed_all(&mut SequenceCheck::default(), &body, piece);
            assert_eq!(
                fed,
                Fed {
                    events: 3,
                    out_of_sequence: 0
                },
                "piece {piece}"
            );
            // Received at 10 ms: latencies in µs.
            assert_eq!(latencies, vec![9_000, 8_000, 1_000], "piece {piece}");
        }
    }

    #[test]
    fn a_lost_event_is_out_of_sequence() {
        let body = format!("{}{}{}", event(0, 1), event(2, 1), event(3, 1));
        let (fed, _) = feed_all(&mut SequenceCheck::default(), &body, 5);
        assert_eq!(fed.events, 3);
        assert_eq!(fed.out_of_sequence, 1);
    }

    #[test]
    fn a_duplicated_or_reordered_event_is_out_of_sequence() {
        let duplicated = format!("{}{}{}", event(0, 1), event(1, 1), event(1, 1));
        let (fed, _) = feed_all(&mut SequenceCheck::default(), &duplicated, 64);
        assert_eq!(fed.out_of_sequence, 1);
        let reordered = format!("{}{}{}", event(0, 1), event(2, 1), event(1, 1));
        let (fed, _) = feed_all(&mut SequenceCheck::default(), &reordered, 64);
        assert_eq!(fed.out_of_sequence, 2);
    }

    #[test]
    fn a_stream_that_starts_late_is_out_of_sequence() {
        let (fed, _) = feed_all(&mut SequenceCheck::default(), &event(1, 1), 64);
        assert_eq!(fed.out_of_sequence, 1);
    }

    #[test]
    fn an_incomplete_event_waits_for_its_blank_line() {
        let mut check = SequenceCheck::default();
        let mut latencies = Vec::new();
        let whole = event(0, 1);
        let (head, tail) = whole.split_at(whole.len() - 1);
        assert_eq!(check.feed(head.as_bytes(), 5_000, &mut latencies).events, 0);
        assert_eq!(check.feed(tail.as_bytes(), 5_000, &mut latencies).events, 1);
    }

    #[test]
    fn a_stream_passes_a_mark_once_when_it_receives_that_event_or_a_later_one() {
        let mut reached = u64::MAX;
        assert!(!passes_mark(&mut reached, 5, u64::MAX), "no mark set");
        assert!(!passes_mark(&mut reached, 7, 7), "event 7 not received yet");
        assert!(passes_mark(&mut reached, 8, 7), "event 7 received");
        assert!(!passes_mark(&mut reached, 9, 7), "counted once");
        assert!(
            passes_mark(&mut reached, 12, 10),
            "a new mark, passed by a later event"
        );
    }

    #[test]
    fn tally_check_fails_on_order_errors_and_ended_streams() {
        let tally = Tally::new();
        assert!(tally.check().is_ok());
        tally.order_errors.fetch_add(1, Ordering::AcqRel);
        assert!(tally.check().is_err());
        let tally = Tally::new();
        tally.ended.fetch_add(1, Ordering::AcqRel);
        assert!(tally.check().is_err());
    }

    /// A TLS record: type, version 3.3, length, payload.
    fn record(kind: u8, len: usize) -> Vec<u8> {
        let mut r = vec![kind, 3, 3];
        r.extend_from_slice(&(len as u16).to_be_bytes());
        r.extend(std::iter::repeat_n(0xAB, len));
        r
    }

    #[test]
    fn only_application_data_records_are_counted_in_any_split() {
        let mut wire = record(22, 90); // handshake
        wire.extend(record(23, 300));
        wire.extend(record(21, 2)); // alert
        wire.extend(record(23, 0));
        wire.extend(record(23, 16_401));
        for piece in [1, 3, 5, 6, 4096, wire.len()] {
            let mut parser = RecordParser::default();
            let counted: u64 = wire.chunks(piece).map(|c| parser.feed(c)).sum();
            assert_eq!(counted, 3, "piece {piece}");
        }
    }
}
