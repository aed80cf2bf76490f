//! The scenarios. Each runs against a freshly started target (nginx + nchan alone, or nchan
//! behind sse-relay or the minimal server; [`target`]), on a fresh channel, with the same
//! client and publisher, and yields named figures or a failure (a lost or reordered event is
//! a failure, never a number): the single-event fan-outs in [`fan_out`], the loaded ones in
//! [`load`], the callgrind run in [`profile`].

mod fan_out;
mod load;
mod profile;
mod target;

pub(crate) use target::CpuMark;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::client::{self, ClientTls, Proto, Tally};
use crate::procs::Cert;

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
