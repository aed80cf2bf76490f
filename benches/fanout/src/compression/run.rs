//! One measured run: a feed on a freshly started server (the relay with nchan as its origin,
//! or the gzip proxy in front of nchan), an identity witness stream, then S subscribers asking
//! for one coding over C h2 connections, opened in two halves so that the RSS the second half
//! adds is what one more subscriber costs (the topic's compressors and the relay's scratch
//! compressors are there already), the same publisher and events for every variant. It yields
//! named figures or a failure: a stream that ends, loses, reorders or does not decode, or a
//! sample that does not decode to the witness's events, fails the run and leaves no figure.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use super::feeds::{Feed, FeedKind};
use super::model::{Pace, Record, Sizes, Variant, WARM_PERIOD};
use super::peer::GzipFront;
use super::verify;
use crate::client::{
    self, now_ns, quantiles, ClientTls, Coding, Endpoint, Proto, Subscribe, Tally,
};
use crate::procs::{http_get, Cert, Child, Nginx, Relay};
use crate::publisher::Publisher;
use crate::scenarios::{metric, CpuMark, Values};

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

    /// The relay's bytes held in its topics' rings (`sse_relay_buffered_bytes`, compressed
    /// parts included); none for the proxy.
    fn buffered_bytes(&self) -> Result<Option<f64>> {
        let Some(relay) = &self.relay else {
            return Ok(None);
        };
        let text = http_get(relay.admin_addr(), "/metrics")?;
        Ok(metric(&text, "sse_relay_buffered_bytes"))
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

    /// Opens `conns` × `streams` subscriber streams asking for `coding`, counted in a new
    /// tally whose streams start at event `first_seq` (the first `samples` of them keep what
    /// they decode), and waits until the origin counts them: the relay holds one subscription
    /// for all, the gzip proxy one per stream (`before` are there already).
    async fn open_group(
        &self,
        t: &Target,
        coding: Coding,
        (conns, streams): (usize, usize),
        first_seq: u64,
        samples: u64,
        before: u64,
    ) -> Result<Group> {
        let tally = Tally::new();
        tally.first_seq.store(first_seq, Ordering::Release);
        tally.keep_first(samples);
        let sub = self.subscribe(t, coding, &tally);
        let (fleet, _) = client::open(&sub, conns, streams, 16, Duration::from_secs(120)).await?;
        let at_origin = match t.front {
            Some(_) => before + fleet.subscribers,
            None => 1,
        };
        t.publisher
            .wait_subscribers(&t.channel, at_origin, Duration::from_secs(60))
            .await?;
        Ok(Group {
            subscribers: fleet.subscribers,
            first_seq,
            tally,
            _fleet: fleet,
        })
    }

    /// The run: the subscribers, then the measured events and the checks.
    async fn measure(&self, kind: FeedKind, variant: Variant, record: &mut Record) -> Result<()> {
        let pace = self.sizes.feeds[&kind];
        let mut t = self.start(kind, variant)?;
        let mut feed = Feed::new(kind);
        let groups = self
            .subscribe_all(
                &t,
                &mut feed,
                variant.coding(),
                pace.warm,
                &mut record.values,
            )
            .await?;
        let v = &mut record.values;
        let seqs = 2 * pace.warm..2 * pace.warm + pace.rounds;
        measured(&t, &mut feed, seqs, pace, &groups, v).await?;
        for g in &groups {
            g.tally.check()?;
        }
        check_samples(&groups[0].tally, &groups[1].tally, pace.rounds, v)?;
        record.tls = groups[1].tally.tls_params.get().cloned();
        t.relay
            .as_mut()
            .map_or(Ok(()), |r| r.child.check_running())?;
        if let Some(front) = &mut t.front {
            front.child.check_running()?;
        }
        Ok(())
    }

    /// The witness and half the subscribers, `warm` events, RSS; the other half, `warm` events
    /// more (so they too are in step with the shared bytes), RSS. Records the RSS the second
    /// half added per subscriber (what one more costs), and the growth over all of them.
    async fn subscribe_all(
        &self,
        t: &Target,
        feed: &mut Feed,
        coding: Coding,
        warm: u64,
        v: &mut Values,
    ) -> Result<Vec<Group>> {
        // The server just started: a short pause before its idle RSS (no trim to wait for).
        tokio::time::sleep(Duration::from_millis(self.sizes.settle_ms.min(1000))).await;
        let base = t.measured().rss_bytes()?;
        let origin_base = t.origin.child.rss_bytes()?;
        let witness = self
            .open_group(t, Coding::Identity, (1, 1), 0, 1, 0)
            .await
            .context("the witness")?;
        let (half, streams) = (self.sizes.conns / 2, self.sizes.streams);
        let first = self
            .open_group(t, coding, (half, streams), 0, self.sizes.samples, 1)
            .await?;
        let mut groups = vec![witness, first];
        publish(t, feed, 0..warm, WARM_PERIOD, &groups).await?;
        self.settle().await;
        let at_half = t.measured().rss_bytes()?;
        let buffered_half = t.buffered_bytes()?;
        let there = 1 + subscribed(&groups);
        let rest = (self.sizes.conns - half, streams);
        let second = self.open_group(t, coding, rest, warm, 0, there).await?;
        groups.push(second);
        publish(t, feed, warm..2 * warm, WARM_PERIOD, &groups).await?;
        self.settle().await;
        let loaded = t.measured().rss_bytes()?;
        if let (Some(half), Some(all)) = (buffered_half, t.buffered_bytes()?) {
            v.insert("buffered_growth_bytes".into(), all - half);
        }
        let (added, all) = (groups[2].subscribers as f64, subscribed(&groups) as f64);
        v.insert("rss_base_bytes".into(), base as f64);
        v.insert(
            "rss_per_sub_bytes".into(),
            (loaded as f64 - at_half as f64) / added,
        );
        v.insert(
            "rss_total_per_sub_bytes".into(),
            (loaded as f64 - base as f64) / all,
        );
        if t.front.is_some() {
            let origin = t.origin.child.rss_bytes()?;
            v.insert(
                "origin_rss_per_sub_bytes".into(),
                (origin as f64 - origin_base as f64) / all,
            );
        }
        Ok(groups)
    }
}

/// The subscribers of `groups` so far, the witness (the first group) left out.
fn subscribed(groups: &[Group]) -> u64 {
    groups[1..].iter().map(|g| g.subscribers).sum()
}

/// Streams of one kind opened together: the witness, or a share of the subscribers.
struct Group {
    subscribers: u64,
    /// The first event each of its streams gets.
    first_seq: u64,
    tally: Arc<Tally>,
    _fleet: client::Fleet,
}

/// The measured events `seqs`: latency, the server's CPU per delivery, the bytes that reached
/// the subscribers (`groups` but the first, the witness) and, on the relay, its compressed
/// bytes by part.
async fn measured(
    t: &Target,
    feed: &mut Feed,
    seqs: std::ops::Range<u64>,
    pace: Pace,
    groups: &[Group],
    v: &mut Values,
) -> Result<()> {
    let subscribers = &groups[1..];
    let counters = |g: &Group| {
        [
            g.tally.body_bytes.load(Ordering::Acquire),
            g.tally.tls_bytes.load(Ordering::Acquire),
            g.tally.records.load(Ordering::Acquire),
            g.tally.body_frames.load(Ordering::Acquire),
        ]
    };
    let sum = || {
        subscribers.iter().map(counters).fold([0; 4], |mut a, c| {
            a.iter_mut().zip(c).for_each(|(a, c)| *a += c);
            a
        })
    };
    for g in subscribers {
        g.tally.reset_latency();
        g.tally.recording.store(true, Ordering::Release);
    }
    let before = sum();
    let compressed = t.compressed_bytes()?;
    let origin = t.front.is_some().then_some(&t.origin.child);
    let cpu = CpuMark::of(t.measured(), origin)?;
    let rounds = seqs.end - seqs.start;
    let period = Duration::from_millis(pace.period_ms);
    publish(t, feed, seqs, period, groups).await?;
    let cpu = cpu.end(t.measured(), origin)?;
    let after = sum();
    let mut latency = client::histogram();
    for g in subscribers {
        g.tally.recording.store(false, Ordering::Release);
        let _ = latency.add(g.tally.latency());
    }
    let s: u64 = subscribers.iter().map(|g| g.subscribers).sum();
    let deliveries = (s * rounds) as f64;
    let keys = [
        "body_bytes_per_event",
        "tls_bytes_per_event",
        "tls_records_per_event",
        "body_frames_per_event",
    ];
    for (i, key) in keys.into_iter().enumerate() {
        v.insert(key.into(), (after[i] - before[i]) as f64 / deliveries);
    }
    let q = quantiles(&latency);
    v.insert("p50_us".into(), q.p50 as f64);
    v.insert("p99_us".into(), q.p99 as f64);
    v.insert("max_us".into(), q.max as f64);
    v.insert("samples".into(), q.count as f64);
    // The witness is a delivery of the server's too.
    cpu.per("delivery", (s + 1) * rounds, v);
    for (part, now) in t.compressed_bytes()? {
        let was = compressed.get(&part).copied().unwrap_or(0.0);
        v.insert(
            format!("compressed_{part}_bytes_per_event"),
            (now - was) / deliveries,
        );
    }
    let n = t.publisher.subscribers(&t.channel).await?;
    v.insert("origin_subscribers".into(), n as f64);
    Ok(())
}

/// Publishes events `seqs` of `feed`, one every `period` (or as soon as the last one reached
/// every stream, when that took longer), each waited for by every stream of `groups`.
async fn publish(
    t: &Target,
    feed: &mut Feed,
    seqs: std::ops::Range<u64>,
    period: Duration,
    groups: &[Group],
) -> Result<()> {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in seqs {
        ticks.tick().await;
        let rest = feed.next_rest();
        let body = Feed::event(seq, now_ns(), &rest);
        t.publisher.publish_data(&t.channel, body).await?;
        for g in groups {
            let expected = g.subscribers * (seq + 1 - g.first_seq);
            g.tally
                .wait_delivered(expected, Duration::from_secs(60))
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
