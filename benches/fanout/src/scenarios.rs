//! The scenarios. Each runs against a freshly started target (nginx + nchan alone, or nchan
//! behind sse-relay), on a fresh channel, with the same client and publisher, and yields named
//! figures or a failure (a lost or reordered event is a failure, never a number).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::client::{self, quantiles, ClientTls, Endpoint, Fleet, Proto, Subscribe, Tally};
use crate::minimal::Minimal;
use crate::procs::{http_get, proc_cpu, Cert, Child, Cpu, Nginx, Relay};
use crate::publisher::Pipeline;
use crate::publisher::Publisher;

/// A server under test.
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
pub enum TargetKind {
    /// nginx + nchan, clients subscribe to nchan directly.
    Nchan,
    /// sse-relay with nchan as its origin, clients subscribe to the relay.
    Relay,
    /// The minimal fan-out server on hyper ([`crate::minimal`]) with nchan as its origin.
    HyperMinimal,
}

impl TargetKind {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nchan => "nchan",
            Self::Relay => "sse-relay",
            Self::HyperMinimal => "hyper-minimal",
        }
    }
}

/// Most single-event rounds of the 100 000-subscriber scenario (each takes nchan over a
/// second).
pub const BIG_ROUNDS: u64 = 10;

/// Sizes of one run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Sizes {
    /// Subscribers (one connection each) for idle RSS and single-event fan-out.
    pub sweep: Vec<usize>,
    /// Single-event rounds measured per fan-out (after one warm-up round); the 100 000-subscriber
    /// scenario runs at most [`BIG_ROUNDS`] of them.
    pub rounds: u64,
    /// Multiplexed: connections × streams.
    pub mux: (usize, usize),
    /// HTTP/1.1 fan-out subscribers (one connection each).
    pub h1: usize,
    /// Sustained: connections × streams, events/s, seconds.
    pub sustained: (usize, usize, u64, u64),
    /// Burst: subscribers (one connection each), events.
    pub burst: (usize, u64),
    /// Seconds to wait after the burst before reading RSS again.
    pub burst_settle_s: u64,
    /// Ramp: seconds, connection cap, setups in flight.
    pub ramp: (u64, usize, usize),
    /// Big: connections × streams.
    pub big: (usize, usize),
    /// Profiles: connections × streams, events, events/s.
    pub profile: Vec<(usize, usize, u64, u64)>,
    /// Pause before reading idle RSS, ms.
    pub settle_ms: u64,
}

impl Sizes {
    /// The full run (about 9 minutes of scenarios on 2 cores: 8.6 at c8e4819).
    pub fn full() -> Self {
        Self {
            sweep: vec![1000, 3000, 9000],
            // 30, not 10: CPU is read in 10 ms ticks, and 10 rounds of 10 000 deliveries at
            // about 1 µs each are 10 ticks, so one tick was 10 % of the figure (two full runs
            // of one binary gave 1.30 and 1.00 µs); the p99 is a tail of whole rounds too.
            rounds: 30,
            mux: (100, 100),
            h1: 2000,
            sustained: (10, 100, 250, 60),
            burst: (1000, 1000),
            burst_settle_s: 10,
            ramp: (20, 8000, 16),
            big: (1000, 100),
            profile: vec![(1000, 1, 100, 20), (100, 20, 100, 20)],
            settle_ms: 2000,
        }
    }

    /// The smoke run (under 3 minutes).
    pub fn quick() -> Self {
        Self {
            sweep: vec![300, 1000],
            rounds: 5,
            mux: (20, 50),
            h1: 300,
            sustained: (2, 100, 250, 10),
            burst: (200, 500),
            burst_settle_s: 10,
            ramp: (3, 2000, 16),
            big: (100, 100),
            profile: vec![(20, 10, 50, 50)],
            settle_ms: 1000,
        }
    }
}

/// Figures of one scenario on one target.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// Scenario name.
    pub scenario: String,
    /// Target.
    pub target: TargetKind,
    /// Load shape, e.g. `9000 conn × 1 stream (h2)`.
    pub shape: String,
    /// Subscribers, count (the x axis of the chart).
    pub subscribers: u64,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// Named figures.
    pub values: BTreeMap<String, f64>,
    /// Negotiated TLS version, cipher suite and ALPN.
    pub tls: Option<String>,
}

impl Record {
    /// A figure.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).copied()
    }
}

/// Everything a scenario needs.
pub struct Bench {
    /// Sizes.
    pub sizes: Sizes,
    /// Working directory (configs, logs).
    pub work: PathBuf,
    /// The relay binary.
    pub relay_bin: PathBuf,
    /// The servers' certificate.
    pub cert: Cert,
    /// Client TLS.
    pub tls: ClientTls,
    /// Padding bytes per event.
    pub payload: usize,
    runs: Mutex<usize>,
}

/// Named figures of a record.
pub type Values = BTreeMap<String, f64>;

/// A started target: nginx always (the origin), plus the relay in front of it.
struct Started {
    nginx: Nginx,
    relay: Option<Relay>,
    minimal: Option<Minimal>,
    publisher: Publisher,
    channel: String,
    tallies: Vec<Arc<Tally>>,
}

impl Started {
    fn measured(&self) -> &Child {
        match (&self.relay, &self.minimal) {
            (Some(relay), _) => &relay.child,
            (None, Some(minimal)) => &minimal.child,
            (None, None) => &self.nginx.child,
        }
    }

    fn measured_mut(&mut self) -> &mut Child {
        match (&mut self.relay, &mut self.minimal) {
            (Some(relay), _) => &mut relay.child,
            (None, Some(minimal)) => &mut minimal.child,
            (None, None) => &mut self.nginx.child,
        }
    }

    /// True when nchan is only the origin of the server measured (the relay or the minimal
    /// server), holding one subscription per topic.
    fn fronted(&self) -> bool {
        self.relay.is_some() || self.minimal.is_some()
    }

    fn endpoint(&self) -> Endpoint {
        match (&self.relay, &self.minimal) {
            (Some(relay), _) => Endpoint {
                addr: relay.addr(),
                prefix: "/events/",
            },
            (None, Some(minimal)) => Endpoint {
                addr: ([127, 0, 0, 1], minimal.port).into(),
                prefix: "/events/",
            },
            (None, None) => Endpoint {
                addr: ([127, 0, 0, 1], self.nginx.tls_port).into(),
                prefix: "/sub/",
            },
        }
    }

    fn subscribe(&mut self, bench: &Bench, proto: Proto, tally: &Arc<Tally>) -> Subscribe {
        self.tallies.push(tally.clone());
        Subscribe {
            endpoint: self.endpoint(),
            tls: bench.tls.clone(),
            proto,
            channel: self.channel.clone(),
            tally: tally.clone(),
        }
    }

    /// Waits until the origin sees the subscribers: all of them (nchan), or the relay's one
    /// upstream subscription.
    async fn wait_ready(&self, subscribers: u64) -> Result<()> {
        let expected = if self.fronted() { 1 } else { subscribers };
        self.publisher
            .wait_subscribers(&self.channel, expected, Duration::from_secs(120))
            .await
    }

    /// Origin-side figures: nchan's subscriber count on the channel, and for the relay its
    /// open upstream subscriptions.
    async fn origin_figures(&mut self, v: &mut Values) -> Result<()> {
        let n = self.publisher.subscribers(&self.channel).await?;
        v.insert("origin_subscribers".into(), n as f64);
        if let Some(relay) = &self.relay {
            let metrics = http_get(relay.admin_addr(), "/metrics")?;
            if let Some(open) = metric(&metrics, "sse_relay_upstream_subscriptions_open") {
                v.insert("relay_upstream_open".into(), open);
            }
        }
        self.measured_mut().check_running()
    }
}

/// CPU used by the server, by this process (the client and publisher), by nchan when it is
/// only the relay's origin, and by anything else on the machine, over a stretch.
struct CpuMark {
    server: Cpu,
    client: Cpu,
    origin: Option<Cpu>,
    machine: Duration,
    wall: Instant,
}

impl CpuMark {
    fn take(t: &Started) -> Result<Self> {
        Ok(Self {
            server: t.measured().cpu_time()?,
            client: proc_cpu("self")?,
            origin: t.fronted().then(|| t.nginx.child.cpu_time()).transpose()?,
            machine: machine_busy()?,
            wall: Instant::now(),
        })
    }

    fn finish(self, t: &Started) -> Result<Self> {
        let origin = match (self.origin, t.fronted()) {
            (Some(before), true) => Some(t.nginx.child.cpu_time()?.since(before)),
            _ => None,
        };
        Ok(Self {
            server: t.measured().cpu_time()?.since(self.server),
            client: proc_cpu("self")?.since(self.client),
            origin,
            machine: machine_busy()?.saturating_sub(self.machine),
            wall: self.wall,
        })
    }

    /// Records server CPU (total, user, system), client CPU per `what` (µs), and the share of
    /// the 2 cores that other processes used meanwhile.
    fn per(&self, what: &str, n: u64, v: &mut Values) {
        let us = |d: Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
        v.insert(format!("cpu_per_{what}_us"), us(self.server.total()));
        v.insert(format!("cpu_user_per_{what}_us"), us(self.server.user));
        v.insert(format!("cpu_sys_per_{what}_us"), us(self.server.system));
        v.insert(format!("client_cpu_per_{what}_us"), us(self.client.total()));
        let ours = self.server.total()
            + self.client.total()
            + self.origin.map(Cpu::total).unwrap_or_default();
        let others = self.machine.saturating_sub(ours).as_secs_f64();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
        v.insert(
            "other_cpu_share".into(),
            others / (self.wall.elapsed().as_secs_f64() * cores),
        );
    }
}

/// Busy CPU time of the whole machine (all cores) from `/proc/stat`.
pub fn machine_busy() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy = user + nice + system + steal
    // (interrupt time is left out: on loopback it is mostly our own network traffic).
    let busy: u64 = [0, 1, 2, 7].iter().filter_map(|&i| fields.get(i)).sum();
    Ok(Duration::from_millis(busy * 10))
}

/// A sample's value from Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

impl Bench {
    /// Sets up the shared parts of a run.
    pub fn new(sizes: Sizes, work: PathBuf, relay_bin: PathBuf, payload: usize) -> Result<Self> {
        std::fs::create_dir_all(&work)?;
        let cert = Cert::generate(&work)?;
        let tls = ClientTls::new(&cert.der)?;
        Ok(Self {
            sizes,
            work,
            relay_bin,
            cert,
            tls,
            payload,
            runs: Mutex::new(0),
        })
    }

    fn start(&self, kind: TargetKind, scenario: &str, wrapper: &[String]) -> Result<Started> {
        let n = {
            let mut runs = self.runs.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            *runs += 1;
            *runs
        };
        let dir = self.work.join(format!("{n:02}-{scenario}-{}", kind.name()));
        let nginx = Nginx::start(&dir.join("nginx"), &self.cert)?;
        let relay = match kind {
            TargetKind::Nchan | TargetKind::HyperMinimal => None,
            TargetKind::Relay => Some(Relay::start(
                &dir.join("relay"),
                &self.relay_bin,
                &self.cert,
                nginx.plain_port,
                wrapper,
            )?),
        };
        let minimal = match kind {
            TargetKind::HyperMinimal => Some(Minimal::start(
                &dir.join("minimal"),
                &self.cert,
                nginx.plain_port,
                wrapper,
            )?),
            TargetKind::Nchan | TargetKind::Relay => None,
        };
        let publisher = Publisher::new(nginx.plain_port, self.payload);
        Ok(Started {
            nginx,
            relay,
            minimal,
            publisher,
            channel: format!("{scenario}-{n}"),
            tallies: Vec::new(),
        })
    }

    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(self.sizes.settle_ms)).await;
    }

    /// Runs `scenario` on `kind`; a failure becomes the record's `failure`.
    pub async fn run(&self, scenario: Scenario, kind: TargetKind) -> Vec<Record> {
        let shapes: Vec<(String, u64, usize)> = match scenario {
            Scenario::Sweep => self
                .sizes
                .sweep
                .iter()
                .map(|&s| (format!("{s} conn × 1 stream (h2)"), s as u64, s))
                .collect(),
            _ => vec![(String::new(), 0, 0)],
        };
        let mut records = Vec::new();
        for (shape, subscribers, size) in shapes {
            eprintln!("== {} on {} {shape}", scenario.name(), kind.name());
            let started = Instant::now();
            let mut record = Record {
                scenario: scenario.name().into(),
                target: kind,
                shape,
                subscribers,
                failure: None,
                values: Values::new(),
                tls: None,
            };
            let outcome = self.run_one(scenario, kind, size, &mut record).await;
            if let Err(e) = outcome {
                eprintln!("   FAILED: {e:#}");
                record.failure = Some(format!("{e:#}"));
            }
            eprintln!("   {:.0?}: {:?}", started.elapsed(), record.values);
            records.push(record);
        }
        records
    }

    async fn run_one(
        &self,
        scenario: Scenario,
        kind: TargetKind,
        size: usize,
        record: &mut Record,
    ) -> Result<()> {
        let mut target = self.start(kind, scenario.name(), &[])?;
        let result = match scenario {
            Scenario::Sweep => self.sweep(&mut target, size, record).await,
            Scenario::Multiplexed => self.multiplexed(&mut target, record).await,
            Scenario::Http1 => self.http1(&mut target, record).await,
            Scenario::Sustained => self.sustained(&mut target, record).await,
            Scenario::Burst => self.burst(&mut target, record).await,
            Scenario::Ramp => self.ramp(&mut target, record).await,
            Scenario::Big => self.big(&mut target, record).await,
        };
        record.tls = target
            .tallies
            .iter()
            .find_map(|t| t.tls_params.get().cloned());
        if result.is_ok() {
            target.measured_mut().check_running()?;
        }
        result
    }

    /// One ad-hoc single-event fan-out: S subscribers over C connections, the relay optionally
    /// run under `wrapper` (e.g. `valgrind --tool=massif`) and ended with SIGTERM.
    pub async fn custom(
        &self,
        kind: TargetKind,
        s: usize,
        c: usize,
        proto: Proto,
        rounds: u64,
        wrapper: &[String],
    ) -> Record {
        let mut record = Record {
            scenario: "custom".into(),
            target: kind,
            shape: format!("{c} conn × {} streams ({proto:?})", s / c.max(1)),
            subscribers: s as u64,
            failure: None,
            values: Values::new(),
            tls: None,
        };
        let outcome = async {
            if c == 0 || s % c != 0 {
                bail!("--subscribers must be a multiple of --connections");
            }
            let mut t = self.start(kind, "custom", wrapper)?;
            self.settle().await;
            let base = t.measured().rss_bytes()?;
            let tally = Tally::new();
            let sub = t.subscribe(self, proto, &tally);
            let (fleet, _) = client::open(&sub, c, s / c, 64, Duration::from_secs(600)).await?;
            t.wait_ready(s as u64).await?;
            self.settle().await;
            let loaded = t.measured().rss_bytes()?;
            record.values.insert(
                "rss_per_sub_bytes".into(),
                (loaded as f64 - base as f64) / s as f64,
            );
            self.fanout(&mut t, &tally, s as u64, rounds, &mut record.values)
                .await?;
            record.tls = tally.tls_params.get().cloned();
            if let (false, Some(relay)) = (wrapper.is_empty(), t.relay.take()) {
                // Let the wrapper (e.g. valgrind) see a clean exit and write its output.
                relay.child.terminate(Duration::from_secs(120))?;
            }
            drop(fleet);
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = outcome {
            record.failure = Some(format!("{e:#}"));
        }
        record
    }

    /// Idle RSS per subscriber and single-event fan-out, S connections × 1 stream.
    async fn sweep(&self, t: &mut Started, s: usize, record: &mut Record) -> Result<()> {
        let v = &mut record.values;
        self.settle().await;
        let base = t.measured().rss_bytes()?;
        let tally = Tally::new();
        let sub = t.subscribe(self, Proto::H2, &tally);
        let (fleet, _conns) = client::open(&sub, s, 1, 64, Duration::from_secs(300)).await?;
        t.wait_ready(s as u64).await?;
        self.settle().await;
        let loaded = t.measured().rss_bytes()?;
        v.insert("rss_base_bytes".into(), base as f64);
        v.insert("rss_loaded_bytes".into(), loaded as f64);
        v.insert(
            "rss_per_sub_bytes".into(),
            (loaded as f64 - base as f64) / s as f64,
        );
        t.origin_figures(v).await?;
        self.fanout(t, &tally, s as u64, self.sizes.rounds, v)
            .await?;
        tls_figures(&tally, v);
        drop(fleet);
        Ok(())
    }

    /// RSS per extra multiplexed stream (C × 1 → C × M), then fan-out over C × M.
    async fn multiplexed(&self, t: &mut Started, record: &mut Record) -> Result<()> {
        let (c, m) = self.sizes.mux;
        record.shape = format!("{c} conn × {m} streams (h2)");
        record.subscribers = (c * m) as u64;
        let v = &mut record.values;
        self.settle().await;
        let base = t.measured().rss_bytes()?;
        let tally = Tally::new();
        let sub = t.subscribe(self, Proto::H2, &tally);
        let (mut fleet, conns) = client::open(&sub, c, 1, 64, Duration::from_secs(120)).await?;
        t.wait_ready(c as u64).await?;
        self.settle().await;
        let one = t.measured().rss_bytes()?;
        let mut adds = tokio::task::JoinSet::new();
        for mut conn in conns {
            let sub = sub.clone();
            adds.spawn(async move {
                let mut f = Fleet::default();
                client::add_streams(&sub, &mut conn, m - 1, &mut f).await?;
                anyhow::Ok(f)
            });
        }
        while let Some(added) = adds.join_next().await {
            fleet.absorb(added??);
        }
        t.wait_ready((c * m) as u64).await?;
        self.settle().await;
        let all = t.measured().rss_bytes()?;
        v.insert("rss_base_bytes".into(), base as f64);
        v.insert("rss_one_stream_bytes".into(), one as f64);
        v.insert("rss_loaded_bytes".into(), all as f64);
        v.insert(
            "rss_per_extra_stream_bytes".into(),
            (all as f64 - one as f64) / (c * (m - 1)) as f64,
        );
        v.insert(
            "rss_per_sub_bytes".into(),
            (all as f64 - base as f64) / (c * m) as f64,
        );
        t.origin_figures(v).await?;
        self.fanout(t, &tally, (c * m) as u64, self.sizes.rounds, v)
            .await?;
        tls_figures(&tally, v);
        drop(fleet);
        Ok(())
    }

    /// Single-event fan-out over HTTP/1.1, one connection per subscriber.
    async fn http1(&self, t: &mut Started, record: &mut Record) -> Result<()> {
        let s = self.sizes.h1;
        record.shape = format!("{s} conn × 1 (HTTP/1.1)");
        record.subscribers = s as u64;
        let v = &mut record.values;
        self.settle().await;
        let base = t.measured().rss_bytes()?;
        let tally = Tally::new();
        let sub = t.subscribe(self, Proto::H1, &tally);
        let (fleet, _) = client::open(&sub, s, 1, 64, Duration::from_secs(120)).await?;
        t.wait_ready(s as u64).await?;
        self.settle().await;
        let loaded = t.measured().rss_bytes()?;
        v.insert(
            "rss_per_sub_bytes".into(),
            (loaded as f64 - base as f64) / s as f64,
        );
        self.fanout(t, &tally, s as u64, self.sizes.rounds, v)
            .await?;
        tls_figures(&tally, v);
        drop(fleet);
        Ok(())
    }

    /// `rounds` single events (after one warm-up), each waited for by every subscriber:
    /// latency quantiles and server CPU per delivery.
    async fn fanout(
        &self,
        t: &mut Started,
        tally: &Tally,
        subscribers: u64,
        rounds: u64,
        v: &mut Values,
    ) -> Result<()> {
        let timeout = Duration::from_secs(60);
        t.publisher.publish(&t.channel, 0).await?;
        tally.wait_delivered(subscribers, timeout).await?;
        tally.reset_latency();
        tally.recording.store(true, Ordering::Release);
        let cpu = CpuMark::take(t)?;
        for round in 1..=rounds {
            tokio::time::sleep(Duration::from_millis(100)).await;
            t.publisher.publish(&t.channel, round).await?;
            tally
                .wait_delivered(subscribers * (round + 1), timeout)
                .await?;
        }
        let cpu = cpu.finish(t)?;
        tally.recording.store(false, Ordering::Release);
        let q = quantiles(&tally.latency());
        v.insert("p50_us".into(), q.p50 as f64);
        v.insert("p99_us".into(), q.p99 as f64);
        v.insert("max_us".into(), q.max as f64);
        v.insert("samples".into(), q.count as f64);
        cpu.per("delivery", subscribers * rounds, v);
        tally.check()
    }

    /// A steady event rate for a duration: latency, loss, CPU.
    async fn sustained(&self, t: &mut Started, record: &mut Record) -> Result<()> {
        let (c, m, rate, secs) = self.sizes.sustained;
        let s = c * m;
        record.shape = format!("{c} conn × {m} streams (h2), {rate} events/s for {secs} s");
        record.subscribers = s as u64;
        let v = &mut record.values;
        let tally = Tally::new();
        let sub = t.subscribe(self, Proto::H2, &tally);
        let (fleet, _) = client::open(&sub, c, m, 64, Duration::from_secs(120)).await?;
        t.wait_ready(s as u64).await?;
        tally.recording.store(true, Ordering::Release);
        let events = rate * secs;
        let cpu = CpuMark::take(t)?;
        let mut pipe = Pipeline::connect(t.nginx.plain_port, self.payload).await?;
        let start = Instant::now();
        let mut ticks = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
        for seq in 0..events {
            ticks.tick().await;
            pipe.publish(&t.channel, seq..seq + 1).await?;
            if seq % rate == 0 {
                tally.check()?;
            }
        }
        let published_in = start.elapsed();
        let (answered, delivered) = tokio::join!(
            pipe.finish(Duration::from_secs(60)),
            tally.wait_delivered(s as u64 * events, Duration::from_secs(60))
        );
        answered.context("the target fell behind the publish rate")?;
        delivered.context("the target fell behind the publish rate")?;
        let cpu = cpu.finish(t)?;
        let q = quantiles(&tally.latency());
        v.insert("events".into(), events as f64);
        v.insert(
            "published_per_s".into(),
            events as f64 / published_in.as_secs_f64(),
        );
        v.insert("p50_us".into(), q.p50 as f64);
        v.insert("p99_us".into(), q.p99 as f64);
        v.insert("max_us".into(), q.max as f64);
        cpu.per("delivery", s as u64 * events, v);
        v.insert(
            "lost".into(),
            (s as u64 * events).saturating_sub(tally.delivered.load(Ordering::Acquire)) as f64,
        );
        tally.check()?;
        drop(fleet);
        Ok(())
    }

    /// Events published back to back (faster than the sockets drain): delivery rate, events
    /// per TLS record and per h2 DATA frame, and RSS some seconds later.
    async fn burst(&self, t: &mut Started, record: &mut Record) -> Result<()> {
        let (s, events) = self.sizes.burst;
        record.shape = format!("{s} conn × 1 (h2), {events} events back to back");
        record.subscribers = s as u64;
        let v = &mut record.values;
        let tally = Tally::new();
        let sub = t.subscribe(self, Proto::H2, &tally);
        let (fleet, _) = client::open(&sub, s, 1, 64, Duration::from_secs(120)).await?;
        t.wait_ready(s as u64).await?;
        self.settle().await;
        let idle = t.measured().rss_bytes()?;
        let (records, frames) = (
            tally.records.load(Ordering::Acquire),
            tally.event_frames.load(Ordering::Acquire),
        );
        tally.recording.store(true, Ordering::Release);
        let cpu = CpuMark::take(t)?;
        let mut pipe = Pipeline::connect(t.nginx.plain_port, self.payload).await?;
        let start = client::now_ns();
        pipe.publish(&t.channel, 0..events).await?;
        let total = s as u64 * events;
        let (answered, delivered) = tokio::join!(
            pipe.finish(Duration::from_secs(180)),
            tally.wait_delivered(total, Duration::from_secs(180))
        );
        let published = answered? - start;
        delivered?;
        let took = tally.last_delivery_ns.load(Ordering::Acquire) - start;
        let cpu = cpu.finish(t)?;
        let peak = t.measured().rss_bytes()?;
        let q = quantiles(&tally.latency());
        let records = tally.records.load(Ordering::Acquire) - records;
        let frames = tally.event_frames.load(Ordering::Acquire) - frames;
        v.insert("deliveries".into(), total as f64);
        v.insert(
            "published_per_s".into(),
            events as f64 * 1e9 / published as f64,
        );
        v.insert("deliveries_per_s".into(), total as f64 * 1e9 / took as f64);
        v.insert(
            "events_per_record".into(),
            total as f64 / records.max(1) as f64,
        );
        v.insert(
            "events_per_frame".into(),
            total as f64 / frames.max(1) as f64,
        );
        v.insert("p99_us".into(), q.p99 as f64);
        v.insert("max_us".into(), q.max as f64);
        cpu.per("delivery", total, v);
        tally.check()?;
        tokio::time::sleep(Duration::from_secs(self.sizes.burst_settle_s)).await;
        let after = t.measured().rss_bytes()?;
        v.insert("rss_idle_bytes".into(), idle as f64);
        v.insert("rss_peak_bytes".into(), peak as f64);
        v.insert("rss_after_bytes".into(), after as f64);
        v.insert("rss_after_over_idle".into(), after as f64 / idle as f64);
        tally.check()?;
        drop(fleet);
        Ok(())
    }

    /// New TLS + h2 + subscribe as fast as they complete (`concurrency` in flight) for a
    /// duration: setups per second and setup latency; then one event must reach them all.
    async fn ramp(&self, t: &mut Started, record: &mut Record) -> Result<()> {
        let (secs, cap, concurrency) = self.sizes.ramp;
        record.shape = format!("new conn + h2 + subscribe, {concurrency} in flight, {secs} s");
        let tally = Tally::new();
        let sub = t.subscribe(self, Proto::H2, &tally);
        let setup = Arc::new(Mutex::new(client::histogram()));
        let cpu = CpuMark::take(t)?;
        let start = Instant::now();
        let deadline = start + Duration::from_secs(secs);
        let mut workers = tokio::task::JoinSet::new();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..concurrency {
            let (sub, setup, next) = (sub.clone(), setup.clone(), next.clone());
            workers.spawn(async move {
                let mut fleet = Fleet::default();
                while Instant::now() < deadline {
                    let index = next.fetch_add(1, Ordering::AcqRel);
                    if index >= cap {
                        break;
                    }
                    let began = Instant::now();
                    let mut conn = client::connect(&sub, index, &mut fleet).await?;
                    client::add_streams(&sub, &mut conn, 1, &mut fleet).await?;
                    let us = began.elapsed().as_micros() as u64;
                    if let Ok(mut h) = setup.lock() {
                        h.saturating_record(us.max(1));
                    }
                }
                anyhow::Ok(fleet)
            });
        }
        let mut fleet = Fleet::default();
        while let Some(done) = workers.join_next().await {
            fleet.absorb(done?.context("ramp setup")?);
        }
        let elapsed = start.elapsed();
        let cpu = cpu.finish(t)?;
        let n = fleet.subscribers;
        record.subscribers = n;
        let v = &mut record.values;
        let q = match setup.lock() {
            Ok(h) => quantiles(&h),
            Err(_) => bail!("setup histogram poisoned"),
        };
        v.insert("subscribers".into(), n as f64);
        v.insert("setups_per_s".into(), n as f64 / elapsed.as_secs_f64());
        v.insert("setup_p50_us".into(), q.p50 as f64);
        v.insert("setup_p99_us".into(), q.p99 as f64);
        cpu.per("setup", n.max(1), v);
        t.wait_ready(n).await?;
        t.publisher.publish(&t.channel, 0).await?;
        tally.wait_delivered(n, Duration::from_secs(60)).await?;
        tally.check()?;
        drop(fleet);
        Ok(())
    }

    /// The big one: C connections × M streams, RSS total and single-event fan-out.
    async fn big(&self, t: &mut Started, record: &mut Record) -> Result<()> {
        let (c, m) = self.sizes.big;
        let s = (c * m) as u64;
        record.shape = format!("{c} conn × {m} streams (h2)");
        record.subscribers = s;
        let v = &mut record.values;
        self.settle().await;
        let base = t.measured().rss_bytes()?;
        let tally = Tally::new();
        let sub = t.subscribe(self, Proto::H2, &tally);
        let (fleet, _) = client::open(&sub, c, m, 32, Duration::from_secs(600)).await?;
        t.wait_ready(s).await?;
        self.settle().await;
        let loaded = t.measured().rss_bytes()?;
        v.insert("rss_base_bytes".into(), base as f64);
        v.insert("rss_loaded_bytes".into(), loaded as f64);
        v.insert(
            "rss_per_sub_bytes".into(),
            (loaded as f64 - base as f64) / s as f64,
        );
        t.origin_figures(v).await?;
        self.fanout(t, &tally, s, self.sizes.rounds.min(BIG_ROUNDS), v)
            .await?;
        let after = t.measured().rss_bytes()?;
        v.insert("rss_after_fanout_bytes".into(), after as f64);
        tls_figures(&tally, v);
        drop(fleet);
        Ok(())
    }

    /// Runs the relay under callgrind (instrumentation switched on only while events flow) on a
    /// moderate load; returns the callgrind output file.
    pub async fn profile(&self, index: usize) -> Result<PathBuf> {
        let (c, m, events, rate) = *self.sizes.profile.get(index).context("no such profile")?;
        let out = self.work.join(format!("callgrind.{index}.out"));
        let wrapper: Vec<String> = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--vgdb=yes",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--callgrind-out-file={}", out.display())])
        .collect();
        let mut t = self.start(TargetKind::Relay, "profile", &wrapper)?;
        let tally = Tally::new();
        let sub = t.subscribe(self, Proto::H2, &tally);
        let (fleet, _) = client::open(&sub, c, m, 4, Duration::from_secs(600)).await?;
        t.wait_ready((c * m) as u64).await?;
        let pid = t.measured().pid().to_string();
        callgrind_control(&["-i", "on", &pid])?;
        let mut ticks = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
        for seq in 0..events {
            ticks.tick().await;
            t.publisher.publish(&t.channel, seq).await?;
        }
        tally
            .wait_delivered((c * m) as u64 * events, Duration::from_secs(600))
            .await?;
        callgrind_control(&["-i", "off", &pid])?;
        tally.check()?;
        drop(fleet);
        let relay = t.relay.take().context("no relay")?;
        relay.child.terminate(Duration::from_secs(120))?;
        Ok(out)
    }
}

fn callgrind_control(args: &[&str]) -> Result<()> {
    let status = std::process::Command::new("callgrind_control")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .context("run callgrind_control")?;
    if !status.success() {
        bail!("callgrind_control {args:?} failed: {status}");
    }
    Ok(())
}

fn tls_figures(tally: &Tally, v: &mut Values) {
    let frames = tally.event_frames.load(Ordering::Acquire).max(1);
    v.insert(
        "events_per_frame".into(),
        tally.delivered.load(Ordering::Acquire) as f64 / frames as f64,
    );
}

/// The scenarios, in run order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Idle RSS per subscriber + single-event fan-out + CPU per delivery, S conn × 1 stream.
    Sweep,
    /// RSS per extra multiplexed stream, fan-out over C conn × M streams.
    Multiplexed,
    /// Single-event fan-out over HTTP/1.1.
    Http1,
    /// A steady event rate for a duration.
    Sustained,
    /// Events published back to back.
    Burst,
    /// New connections + subscriptions per second.
    Ramp,
    /// 1000 connections × 100 streams.
    Big,
}

impl Scenario {
    /// Every scenario, in run order.
    pub const ALL: [Scenario; 7] = [
        Scenario::Sweep,
        Scenario::Multiplexed,
        Scenario::Http1,
        Scenario::Sustained,
        Scenario::Burst,
        Scenario::Ramp,
        Scenario::Big,
    ];

    /// Name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Sweep => "sweep",
            Scenario::Multiplexed => "multiplexed",
            Scenario::Http1 => "http1",
            Scenario::Sustained => "sustained",
            Scenario::Burst => "burst",
            Scenario::Ramp => "ramp",
            Scenario::Big => "big",
        }
    }
}
