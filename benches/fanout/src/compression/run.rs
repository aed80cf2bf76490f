//! One measured run: a feed on a freshly started server (the relay with nchan as its origin,
//! or the gzip proxy in front of nchan), S subscribers asking for one coding over C h2
//! connections plus one identity witness stream, the same publisher and rounds for every
//! variant. It yields named figures or a failure: a stream that ends, loses, reorders or does
//! not decode, or a sample that does not decode to the witness's events, fails the run and
//! leaves no figure.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use super::feeds::{Feed, FeedKind};
use super::peer::GzipFront;
use super::verify;
use crate::client::{
    self, now_ns, quantiles, ClientTls, Coding, Endpoint, Proto, Subscribe, Tally,
};
use crate::procs::{http_get, Cert, Child, Nginx, Relay};
use crate::publisher::Publisher;
use crate::scenarios::{CpuMark, Values};

/// What serves the subscribers, and the coding they ask for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum Variant {
    /// The relay, no `Accept-Encoding`.
    RelayIdentity,
    /// The relay, `Accept-Encoding: gzip` (its shared gzip).
    RelayGzip,
    /// The relay, `Accept-Encoding: zstd` (its shared zstd).
    RelayZstd,
    /// nginx `gzip on` proxying nchan, `Accept-Encoding: gzip`.
    NginxGzip,
}

impl Variant {
    /// Every variant, in run order (the relay's identity runs again after the others).
    pub const ALL: [Variant; 4] = [
        Self::RelayIdentity,
        Self::RelayGzip,
        Self::RelayZstd,
        Self::NginxGzip,
    ];

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Self::RelayIdentity => "relay identity",
            Self::RelayGzip => "relay shared gzip",
            Self::RelayZstd => "relay shared zstd",
            Self::NginxGzip => "nginx gzip → nchan",
        }
    }

    /// The coding the subscribers ask for.
    pub fn coding(self) -> Coding {
        match self {
            Self::RelayIdentity => Coding::Identity,
            Self::RelayGzip | Self::NginxGzip => Coding::Gzip,
            Self::RelayZstd => Coding::Zstd,
        }
    }
}

/// Sizes of a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Sizes {
    /// h2 connections of the subscribers.
    pub conns: usize,
    /// Streams per connection.
    pub streams: usize,
    /// Subscriber streams whose decoded bytes are kept and compared with the witness's.
    pub samples: u64,
    /// Pause before reading RSS, ms.
    pub settle_ms: u64,
    /// Warm-up: events published (and waited for) for at least this long before measuring, ms
    /// (longer than the relay's default segment, so every subscriber shares the topic's
    /// bytes when measuring starts).
    pub warm_ms: u64,
    /// Per feed: ms between events, measured events.
    pub feeds: BTreeMap<FeedKind, (u64, u64)>,
}

impl Sizes {
    /// The full run (about 7 minutes on 2 cores).
    pub fn full() -> Self {
        Self {
            conns: 20,
            streams: 50,
            samples: 4,
            settle_ms: 1500,
            warm_ms: 1500,
            feeds: BTreeMap::from([
                (FeedKind::Ticks, (50, 200)),
                (FeedKind::Deltas, (50, 200)),
                (FeedKind::Snapshots, (250, 60)),
            ]),
        }
    }

    /// The smoke run (about 2 minutes).
    pub fn quick() -> Self {
        Self {
            conns: 4,
            streams: 50,
            samples: 2,
            settle_ms: 500,
            warm_ms: 1200,
            feeds: BTreeMap::from([
                (FeedKind::Ticks, (50, 40)),
                (FeedKind::Deltas, (50, 40)),
                (FeedKind::Snapshots, (250, 16)),
            ]),
        }
    }

    /// Subscribers, count (the witness not included).
    pub fn subscribers(&self) -> u64 {
        (self.conns * self.streams) as u64
    }
}

/// Figures of one variant on one feed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// The feed.
    pub feed: FeedKind,
    /// The variant.
    pub variant: Variant,
    /// Which run of this variant on this feed (1, 2, …).
    pub pass: u32,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// Named figures.
    pub values: Values,
    /// Negotiated TLS version, cipher suite and ALPN.
    pub tls: Option<String>,
}

impl Record {
    /// A figure (none when the run failed).
    pub fn get(&self, key: &str) -> Option<f64> {
        self.failure
            .is_none()
            .then(|| self.values.get(key).copied())?
    }
}

/// Everything the runs share: sizes, where to work, the relay binary, the certificate.
pub struct Rig {
    /// Sizes.
    pub sizes: Sizes,
    work: PathBuf,
    relay_bin: PathBuf,
    cert: Cert,
    tls: ClientTls,
    runs: Mutex<usize>,
}

/// A started server: nchan (the origin) and the relay or the gzip proxy in front of it.
struct Target {
    origin: Nginx,
    relay: Option<Relay>,
    front: Option<GzipFront>,
    publisher: Publisher,
    channel: String,
}

impl Target {
    fn measured(&self) -> &Child {
        match (&self.relay, &self.front) {
            (Some(relay), _) => &relay.child,
            (None, Some(front)) => &front.child,
            (None, None) => &self.origin.child,
        }
    }

    fn endpoint(&self) -> Endpoint {
        let addr = match (&self.relay, &self.front) {
            (Some(relay), _) => relay.addr(),
            (_, Some(front)) => ([127, 0, 0, 1], front.port).into(),
            _ => ([127, 0, 0, 1], self.origin.tls_port).into(),
        };
        Endpoint {
            addr,
            prefix: "/events/",
        }
    }

    /// The relay's `sse_relay_compressed_bytes_total` samples summed by part (`shared`,
    /// `own`); empty for the proxy.
    fn compressed_bytes(&self) -> Result<BTreeMap<String, f64>> {
        let mut parts = BTreeMap::new();
        let Some(relay) = &self.relay else {
            return Ok(parts);
        };
        let text = http_get(relay.admin_addr(), "/metrics")?;
        for line in text
            .lines()
            .filter(|l| l.starts_with("sse_relay_compressed_bytes_total{"))
        {
            let (Some(part), Some(value)) = (
                line.split("part=\"")
                    .nth(1)
                    .and_then(|p| p.split('"').next()),
                line.rsplit_once(' ')
                    .and_then(|(_, v)| v.parse::<f64>().ok()),
            ) else {
                continue;
            };
            *parts.entry(part.to_string()).or_default() += value;
        }
        Ok(parts)
    }
}

impl Rig {
    /// Sets up the shared parts: the work dir, a certificate, the client's TLS.
    pub fn new(sizes: Sizes, work: PathBuf, relay_bin: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&work)?;
        let cert = Cert::generate(&work)?;
        let tls = ClientTls::new(&cert.der)?;
        Ok(Self {
            sizes,
            work,
            relay_bin,
            cert,
            tls,
            runs: Mutex::new(0),
        })
    }

    /// Runs `variant` on `feed`; a failure becomes the record's `failure`.
    pub async fn run(&self, feed: FeedKind, variant: Variant, pass: u32) -> Record {
        eprintln!("== {} on {} (run {pass})", feed.name(), variant.name());
        let mut record = Record {
            feed,
            variant,
            pass,
            failure: None,
            values: Values::new(),
            tls: None,
        };
        let started = std::time::Instant::now();
        if let Err(e) = self.measure(feed, variant, &mut record).await {
            eprintln!("   FAILED: {e:#}");
            record.failure = Some(format!("{e:#}"));
        }
        eprintln!("   {:.0?}", started.elapsed());
        record
    }

    fn start(&self, feed: FeedKind, variant: Variant) -> Result<Target> {
        let n = {
            let mut runs = self.runs.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            *runs += 1;
            *runs
        };
        let dir = self
            .work
            .join(format!("{n:02}-{}-{variant:?}", feed.name()).to_lowercase());
        let origin = Nginx::start(&dir.join("nchan"), &self.cert)?;
        let (relay, front) = match variant {
            Variant::NginxGzip => (
                None,
                Some(GzipFront::start(
                    &dir.join("front"),
                    &self.cert,
                    origin.plain_port,
                )?),
            ),
            _ => (
                Some(Relay::start(
                    &dir.join("relay"),
                    &self.relay_bin,
                    &self.cert,
                    origin.plain_port,
                    &[],
                )?),
                None,
            ),
        };
        let publisher = Publisher::new(origin.plain_port, 0);
        Ok(Target {
            origin,
            relay,
            front,
            publisher,
            channel: format!("{}-{n}", feed.name()),
        })
    }

    fn subscribe(&self, t: &Target, coding: Coding, tally: &Arc<Tally>) -> Subscribe {
        Subscribe {
            endpoint: t.endpoint(),
            tls: self.tls.clone(),
            proto: Proto::H2,
            channel: t.channel.clone(),
            tally: tally.clone(),
            coding,
        }
    }

    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(self.sizes.settle_ms)).await;
    }

    async fn measure(&self, kind: FeedKind, variant: Variant, record: &mut Record) -> Result<()> {
        let (period_ms, rounds) = self.sizes.feeds[&kind];
        let period = Duration::from_millis(period_ms);
        let s = self.sizes.subscribers();
        let mut t = self.start(kind, variant)?;
        self.settle().await;
        let base = t.measured().rss_bytes()?;
        let origin_base = t.origin.child.rss_bytes()?;
        // The witness first (identity, one connection of its own), then the subscribers.
        let witness = Tally::new();
        witness.keep_first(1);
        let (_w, _) = client::open(
            &self.subscribe(&t, Coding::Identity, &witness),
            1,
            1,
            1,
            Duration::from_secs(30),
        )
        .await
        .context("the witness")?;
        let tally = Tally::new();
        tally.keep_first(self.sizes.samples);
        let sub = self.subscribe(&t, variant.coding(), &tally);
        let (_fleet, _) = client::open(
            &sub,
            self.sizes.conns,
            self.sizes.streams,
            16,
            Duration::from_secs(120),
        )
        .await?;
        let at_origin = if t.front.is_some() { s + 1 } else { 1 };
        t.publisher
            .wait_subscribers(&t.channel, at_origin, Duration::from_secs(60))
            .await?;
        let mut feed = Feed::new(kind);
        let groups = [(&*tally, s), (&*witness, 1)];
        let warm = (self.sizes.warm_ms / period_ms).max(1) + 1;
        publish(&t, &mut feed, 0..warm, period, &groups).await?;
        self.settle().await;
        let v = &mut record.values;
        let loaded = t.measured().rss_bytes()?;
        v.insert("rss_base_bytes".into(), base as f64);
        v.insert(
            "rss_per_sub_bytes".into(),
            (loaded as f64 - base as f64) / s as f64,
        );
        if t.front.is_some() {
            let origin = t.origin.child.rss_bytes()?;
            v.insert(
                "origin_rss_per_sub_bytes".into(),
                (origin as f64 - origin_base as f64) / s as f64,
            );
        }
        // The measured rounds.
        tally.reset_latency();
        tally.recording.store(true, Ordering::Release);
        let (body, tls, records) = (
            tally.body_bytes.load(Ordering::Acquire),
            tally.tls_bytes.load(Ordering::Acquire),
            tally.records.load(Ordering::Acquire),
        );
        let compressed = t.compressed_bytes()?;
        let origin = t.front.is_some().then_some(&t.origin.child);
        let cpu = CpuMark::of(t.measured(), origin)?;
        publish(&t, &mut feed, warm..warm + rounds, period, &groups).await?;
        let cpu = cpu.end(t.measured(), origin)?;
        tally.recording.store(false, Ordering::Release);
        let deliveries = (s * rounds) as f64;
        let delta = |now: u64, before: u64| (now - before) as f64 / deliveries;
        v.insert(
            "body_bytes_per_event".into(),
            delta(tally.body_bytes.load(Ordering::Acquire), body),
        );
        v.insert(
            "tls_bytes_per_event".into(),
            delta(tally.tls_bytes.load(Ordering::Acquire), tls),
        );
        v.insert(
            "tls_records_per_event".into(),
            delta(tally.records.load(Ordering::Acquire), records),
        );
        let q = quantiles(&tally.latency());
        v.insert("p50_us".into(), q.p50 as f64);
        v.insert("p99_us".into(), q.p99 as f64);
        v.insert("max_us".into(), q.max as f64);
        v.insert("samples".into(), q.count as f64);
        // The witness is a delivery of the server's too.
        cpu.per("delivery", (s + 1) * rounds, v);
        for (part, after) in t.compressed_bytes()? {
            let before = compressed.get(&part).copied().unwrap_or(0.0);
            v.insert(
                format!("compressed_{part}_bytes_per_event"),
                (after - before) / deliveries,
            );
        }
        let n = t.publisher.subscribers(&t.channel).await?;
        v.insert("origin_subscribers".into(), n as f64);
        tally.check()?;
        witness.check()?;
        check_samples(&witness, &tally, rounds, v)?;
        record.tls = tally.tls_params.get().cloned();
        t.relay
            .as_mut()
            .map_or(Ok(()), |r| r.child.check_running())?;
        if let Some(front) = &mut t.front {
            front.child.check_running()?;
        }
        Ok(())
    }
}

/// Publishes events `seqs` of `feed`, one every `period` (or as soon as the last one reached
/// every stream, when that took longer), each waited for by every stream of `groups` (a tally
/// and its subscriber count).
async fn publish(
    t: &Target,
    feed: &mut Feed,
    seqs: std::ops::Range<u64>,
    period: Duration,
    groups: &[(&Tally, u64)],
) -> Result<()> {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in seqs {
        ticks.tick().await;
        let rest = feed.next_rest();
        let body = Feed::event(seq, now_ns(), &rest);
        t.publisher.publish_data(&t.channel, body).await?;
        for (tally, subscribers) in groups {
            tally
                .wait_delivered(subscribers * (seq + 1), Duration::from_secs(60))
                .await?;
        }
    }
    Ok(())
}

/// Compares each sample stream's decoded events with the witness's, and gzips the witness's
/// measured event frames one by one (the per-message reference).
fn check_samples(witness: &Tally, tally: &Tally, rounds: u64, v: &mut Values) -> Result<()> {
    let reference = witness
        .captured()
        .pop()
        .context("the witness kept nothing")?;
    let samples = tally.captured();
    if samples.is_empty() {
        bail!("no sample stream kept what it decoded");
    }
    let mut events = 0;
    for (i, sample) in samples.iter().enumerate() {
        events += verify::same_events(&reference, sample)
            .with_context(|| format!("sample stream {i} against the identity witness"))?;
    }
    v.insert("verified_streams".into(), samples.len() as f64);
    v.insert("verified_events".into(), events as f64);
    let frames = verify::last_frames(&reference, rounds as usize);
    if frames.len() as u64 != rounds {
        bail!(
            "the witness has {} measured events, not {rounds}",
            frames.len()
        );
    }
    let standalone = verify::standalone_gzip(&frames, 6)?;
    v.insert("identity_frame_bytes".into(), standalone.identity_bytes);
    v.insert("standalone_gzip_bytes".into(), standalone.gzip_bytes);
    v.insert("standalone_gzip_us".into(), standalone.gzip_us);
    Ok(())
}
