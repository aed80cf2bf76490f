//! The subscribing side: C TLS connections (rustls) × S/C streams each, over h2 (hyper's
//! client) or HTTP/1.1 (one stream per connection). Each stream asks for a content coding
//! (none by default), counts the body bytes it receives as they came, decodes them
//! ([`decode`]), checks that sequence numbers arrive complete and in order, and records
//! receive − publish time per delivery into a sharded HDR histogram. A counting shim under TLS
//! counts the TLS application-data records and bytes received, so events per record and bytes
//! on the wire can be reported.

mod decode;
mod records;
mod sequence;
mod tally;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, HOST};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use tokio_rustls::TlsConnector;

pub use decode::Coding;
use decode::Decoder;
use records::RecordCounter;
use sequence::SequenceCheck;
pub use tally::{histogram, quantiles, Tally};

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
    /// The content coding asked for; the response must name it in `Content-Encoding`.
    pub coding: Coding,
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
        let mut r = Request::get(uri.as_str())
            .header(ACCEPT, "text/event-stream")
            .header(HOST, format!("localhost:{}", sub.endpoint.addr.port()));
        if let Some(token) = sub.coding.token() {
            r = r.header(ACCEPT_ENCODING, token);
        }
        r.body(Empty::<Bytes>::new())
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
        let encoding = response
            .headers()
            .get(CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok());
        if encoding != sub.coding.token() {
            bail!(
                "asked for {:?}, answered Content-Encoding {encoding:?}",
                sub.coding
            );
        }
        let stream = Stream {
            decoder: Decoder::new(sub.coding)?,
            shard: (conn.index * 131 + i) % tally::SHARDS,
            capture: sub.tally.claim_capture(),
        };
        let tally = sub.tally.clone();
        let body = response.into_body();
        fleet
            .tasks
            .push(tokio::spawn(read_events(body, tally, stream)).abort_handle());
        fleet.subscribers += 1;
    }
    Ok(())
}

/// How one stream is read: its decoder, its latency shard, its capture slot if it has one.
struct Stream {
    decoder: Decoder,
    shard: usize,
    capture: Option<usize>,
}

/// Reads one subscriber's event stream until it ends or does not decode (either counts as a
/// failure).
async fn read_events(mut body: Incoming, tally: Arc<Tally>, mut stream: Stream) {
    let mut check = SequenceCheck::starting_at(tally.first_seq.load(Ordering::Acquire));
    let mut latencies: Vec<u64> = Vec::new();
    let mut reached = u64::MAX;
    let shard = stream.shard;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = now_ns();
        tally
            .body_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        tally.body_frames.fetch_add(1, Ordering::Relaxed);
        let Ok(decoded) = stream.decoder.feed(&data) else {
            tally.decode_errors.fetch_add(1, Ordering::AcqRel);
            return;
        };
        if let Some(slot) = stream.capture {
            tally.capture(slot, decoded);
        }
        let fed = check.feed(decoded, now, &mut latencies);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
