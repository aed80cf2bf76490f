//! The attack suite (issue 5 §3): hostile HTTP/2 clients against the real `sse-relay` binary,
//! one attack at a time, each bounded in count and time, on loopback. The clients are the
//! Python scripts in `tests/attacks/` (abusive frames built with `hyperframe` and `hpack`, a
//! well-formed client from `h2`); the origin is the in-process test origin (it publishes on
//! demand and counts its subscriptions); the normal client is a Rust h2 client over TLS.
//!
//! For each attack:
//! 1. a normal client gets an event within 1 s of its publication (measured publish → receive):
//!    the one connected before the attacks, probed every 250 ms during the attack and once
//!    after it, and a fresh one that connects after it;
//! 2. the relay's RSS (`VmRSS`, sampled every 10 ms from the attack's start to the end of the
//!    checks after it) stayed under 2× its baseline after warm-up;
//! 3. silent connections (TCP, and TLS without the h2 preface) were closed within 10 s;
//! 4. cancelled streams caused no origin work: origin subscriptions ≤ topics attacked;
//!
//! and the relay is back where it was (no subscriber or connection left behind), and its log did
//! not become the attacker's amplifier (a few WARN lines per attack at most). Failures are
//! collected so that one run reports on every attack; the relevant `/metrics` counters are
//! printed after each. Needs python3 with `pip install -r tests/attacks/requirements.txt`.

#[path = "acceptance/mod.rs"]
mod acceptance;
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use acceptance::{free_port, require_program, ChildGuard, LineReader, TempDir};
use serde_json::Value;
use support::{http_get, EventReader, H2Client, TestOrigin};
use tokio::runtime::Runtime;

/// Publish → receive at a normal client, at most.
const LATENCY_LIMIT: Duration = Duration::from_secs(1);
/// A silent connection is closed by the relay within this, at most.
const SILENT_CLOSE_LIMIT_S: f64 = 10.0;
/// RSS may not reach this multiple of the baseline.
const RSS_FACTOR: f64 = 2.0;
/// WARN/ERROR lines one attack may add to the relay's log, at most.
const LOG_LINES_LIMIT: usize = 10;
/// An attack that has not ended by itself after this is killed (and fails).
const ATTACK_LIMIT: Duration = Duration::from_secs(40);
/// The normal clients' topic.
const NORMAL_TOPIC: &str = "normal";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/attacks/attack.py");
const INSTALL: &str = "pip install -r tests/attacks/requirements.txt";

/// How an attack uses its connections.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Floods, then ends.
    No,
    /// Holds event streams open (prints READY); the test publishes on their topics meanwhile.
    Streams,
    /// Holds silent connections (prints READY) until the relay closes them.
    Silent,
}

/// One run of `attack.py`.
struct Attack {
    /// The name in the report.
    label: &'static str,
    /// `attack.py` arguments (split at spaces): the attack and its bounds.
    args: &'static str,
    /// It requests the topics `<prefix>-0 .. <prefix>-<topics - 1>`.
    prefix: &'static str,
    topics: usize,
    hold: Hold,
    /// Every attacking connection must be ended by the relay (the abuse cannot go on).
    relay_ends_connections: bool,
}

const ATTACKS: &[Attack] = &[
    Attack {
        label: "rapid reset (HEADERS+RST_STREAM, CVE-2023-44487)",
        args: "rapid_reset --count 20000 --seconds 4 --connections 400",
        prefix: "rr",
        topics: 4,
        hold: Hold::No,
        relay_ends_connections: false,
    },
    Attack {
        label: "CONTINUATION flood (CVE-2024-27316 style)",
        args: "continuation_flood --count 1000000 --seconds 4 --connections 8",
        prefix: "cont",
        topics: 1,
        hold: Hold::No,
        relay_ends_connections: true,
    },
    Attack {
        label: "HPACK bomb (4 KB entry referenced 16000x per request)",
        args: "hpack_bomb --seconds 4 --connections 8",
        prefix: "hpack",
        topics: 1,
        hold: Hold::No,
        relay_ends_connections: true,
    },
    Attack {
        label: "PING flood, answers never read",
        args: "ping_flood --count 5000000 --seconds 3 --connections 4 --batch 512",
        prefix: "ping",
        topics: 4,
        hold: Hold::No,
        relay_ends_connections: false,
    },
    Attack {
        label: "SETTINGS flood, ACKs never read",
        args: "settings_flood --count 5000000 --seconds 3 --connections 4 --batch 256",
        prefix: "settings",
        topics: 4,
        hold: Hold::No,
        relay_ends_connections: false,
    },
    Attack {
        label: "MadeYouReset: WINDOW_UPDATE 0 (CVE-2025-8671)",
        args: "made_you_reset --primitive window_update_zero --seconds 4 --connections 100",
        prefix: "myr0",
        topics: 4,
        hold: Hold::No,
        relay_ends_connections: false,
    },
    Attack {
        label: "MadeYouReset: stream window overflow",
        args: "made_you_reset --primitive window_overflow --seconds 4 --connections 100",
        prefix: "myrw",
        topics: 4,
        hold: Hold::No,
        relay_ends_connections: false,
    },
    Attack {
        label: "100 zero-window SSE streams held open",
        args: "zero_window_streams --streams 100 --connections 4 --seconds 5 --hold 5",
        prefix: "zw",
        topics: 5,
        hold: Hold::Streams,
        relay_ends_connections: false,
    },
    Attack {
        label: "300 silent TCP connections",
        args: "silent_tcp --count 300 --seconds 15",
        prefix: "none",
        topics: 0,
        hold: Hold::Silent,
        relay_ends_connections: false,
    },
    Attack {
        label: "100 TLS connections without the h2 preface",
        args: "tls_no_preface --count 100 --seconds 15",
        prefix: "none",
        topics: 0,
        hold: Hold::Silent,
        relay_ends_connections: false,
    },
    // Not in the list: a client polite in every way but one, each stream asks for a new
    // topic, and each new topic costs an upstream subscription.
    Attack {
        label: "topic spray: 1000 streams on 1000 distinct topics",
        args: "topic_spray --streams 1000 --connections 4 --seconds 10 --hold 3",
        prefix: "spray",
        topics: 1000,
        hold: Hold::Streams,
        relay_ends_connections: false,
    },
];

#[test]
#[ignore = "acceptance: needs python3 with h2/hyperframe/hpack (pip install -r tests/attacks/requirements.txt); run with --include-ignored (CI does)"]
fn relay_keeps_serving_everyone_else_under_h2_attacks() {
    let python = require_attack_clients();
    let dir = TempDir::new("attacks");
    // The origin gets a runtime of its own, so that its work (it may serve a thousand
    // upstream streams) does not delay the normal client whose latency is measured.
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    };
    let (rt, origin_rt) = (runtime(), runtime());
    let origin = origin_rt.block_on(TestOrigin::start());
    let relay = Relay::start(dir.path(), &origin.template());
    let mut suite = Suite {
        normal: rt.block_on(Subscriber::connect(relay.addr(), &relay.cert)),
        rt,
        _origin_rt: origin_rt,
        origin,
        relay,
        python,
        dir: dir.path().to_owned(),
        baseline_kib: 0,
        seq: 0,
        failures: Vec::new(),
        rows: Vec::new(),
    };
    suite.warm_up();
    for attack in ATTACKS {
        suite.run(attack);
        if let Some(status) = suite.relay.guard.exited() {
            suite.fail(
                "relay",
                format!("the relay exited ({status}); stopping the suite"),
            );
            break;
        }
    }
    println!("\n{}", suite.table());
    assert!(
        suite.failures.is_empty(),
        "{} failure(s) under attack:\n  {}\n(relay log: {})",
        suite.failures.len(),
        suite.failures.join("\n  "),
        suite.relay.log.display()
    );
}

/// The reference the issue compares with: nginx (with nchan loaded, as our reference origin
/// runs it) keeps TLS connections that never send the h2 preface open past 12 s (its
/// `client_header_timeout` defaults to 60 s), where the relay closes them after
/// `first_request_timeout_ms`.
#[test]
#[ignore = "acceptance: needs nginx, libnginx-mod-nchan and python3 with h2/hyperframe/hpack; run with --include-ignored (CI does)"]
fn reference_nginx_keeps_tls_connections_without_a_preface_open_past_12s() {
    let python = require_attack_clients();
    let nginx = require_program("nginx", "apt-get install nginx libnginx-mod-nchan");
    acceptance::require_file(
        acceptance::NCHAN_MODULE,
        "apt-get install libnginx-mod-nchan",
    );
    let dir = TempDir::new("attacks-nginx");
    let d = dir.path();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("a test certificate");
    fs::write(d.join("cert.pem"), certified.cert.pem()).expect("write cert.pem");
    fs::write(d.join("key.pem"), certified.key_pair.serialize_pem()).expect("write key.pem");
    let port = free_port();
    let conf = format!(
        "load_module {module};\nmaster_process off;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{\n    listen 127.0.0.1:{port} ssl http2;\n\
         ssl_certificate {d}/cert.pem;\n    ssl_certificate_key {d}/key.pem;\n\
         location ~ ^/sub/(\\w+)$ {{ nchan_subscriber eventsource; nchan_channel_id $1; }}\n\
         }}\n}}\n",
        module = acceptance::NCHAN_MODULE,
        d = d.display()
    );
    fs::write(d.join("nginx.conf"), conf).expect("write nginx.conf");
    let mut command = Command::new(nginx);
    command
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .arg("-p")
        .arg(d)
        .arg("-g")
        .arg(format!(
            "daemon off; pid {};",
            d.join("nginx.pid").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut guard = ChildGuard::spawn("nginx", &mut command, Some(d.join("error.log")));
    guard.wait_for_port(port);
    let output = Command::new(python)
        .arg(SCRIPT)
        .args([
            "tls_no_preface",
            "--count",
            "20",
            "--seconds",
            "12.5",
            "--port",
        ])
        .arg(port.to_string())
        .arg("--cafile")
        .arg(d.join("cert.pem"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run attack.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_else(|| panic!("no RESULT from attack.py: {stdout}"));
    println!("nginx + nchan, 20 TLS connections without a preface: {result}");
    assert_eq!(
        result["still_open"].as_u64(),
        Some(20),
        "nginx was expected to keep every silent TLS connection open for 12.5 s: {result}"
    );
    guard.assert_running();
}

/// python3 with the pinned packages, or a failure saying how to install them.
fn require_attack_clients() -> PathBuf {
    let python = require_program("python3", "apt-get install python3 python3-pip");
    let check = Command::new(&python)
        .args([SCRIPT, "--check"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} {SCRIPT} --check: {e}", python.display()));
    assert!(
        check.status.success(),
        "the attack clients need Python packages that are not installed ({}); run: {INSTALL}",
        String::from_utf8_lossy(&check.stderr).trim()
    );
    println!(
        "attack clients: {}",
        String::from_utf8_lossy(&check.stdout).trim()
    );
    python
}

/// The relay binary with limits tuned for a quick but realistic run.
struct Relay {
    guard: ChildGuard,
    tls_port: u16,
    admin: SocketAddr,
    cert: PathBuf,
    log: PathBuf,
}

impl Relay {
    fn start(dir: &Path, upstream: &str) -> Relay {
        let (tls_port, admin_port) = (free_port(), free_port());
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:{tls_port}\"\ndev_cert_dir = \"{dir}/dev-cert\"\n\
             drain_delay_ms = 0\n\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n\
             [[route]]\npath = \"/events/{{topic}}\"\nupstream = \"{upstream}\"\n\n\
             [upstream]\nbackoff_min_ms = 50\nbackoff_max_ms = 1000\n\n\
             [replay]\nmax_events = 256\nmax_bytes = 262144\n\n\
             [limits]\nmax_event_bytes = 65536\ntls_handshake_timeout_ms = 3000\nfirst_request_timeout_ms = 3000\n\
             idle_connection_timeout_ms = 5000\nmax_topics = 200\n",
            dir = dir.display()
        );
        let config_path = dir.join("relay.toml");
        fs::write(&config_path, config).expect("write relay.toml");
        let log = dir.join("relay.log");
        let out = fs::File::create(&log).expect("create relay.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sse-relay"));
        command
            .arg("--config")
            .arg(&config_path)
            .env("NO_COLOR", "1")
            .env_remove("SSE_RELAY_LOG") // the default filter is part of what is tested
            .env_remove("SSE_RELAY_LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone log handle"))
            .stderr(out);
        let mut guard = ChildGuard::spawn("sse-relay", &mut command, Some(log.clone()));
        guard.wait_for_port(tls_port);
        guard.wait_for_port(admin_port);
        Relay {
            guard,
            tls_port,
            admin: (Ipv4Addr::LOCALHOST, admin_port).into(),
            cert: dir.join("dev-cert").join("cert.pem"),
            log,
        }
    }

    fn addr(&self) -> SocketAddr {
        (Ipv4Addr::LOCALHOST, self.tls_port).into()
    }

    /// The WARN and ERROR lines logged so far (timestamps cut off).
    fn warnings(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).to_string())
            .collect()
    }
}

/// `VmRSS` of a process, KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples a process's RSS every 10 ms on a thread and keeps the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: thread::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        RssSampler { stop, peak, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed)
    }
}

/// A `/metrics` scrape: series (name with labels) → value.
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect();
        Scrape(series)
    }

    /// The sum of every series of `name` (all label values).
    fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    }

    /// The series of `name` whose value differs from `before`, as `series=value (+delta)`.
    fn changes(&self, before: &Scrape, names: &[&str]) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| names.iter().any(|n| k.split('{').next() == Some(*n)))
            .filter_map(|(k, v)| {
                let was = before.0.get(k).copied().unwrap_or(0.0);
                (*v != was).then(|| format!("{k} = {v} ({:+})", v - was))
            })
            .collect()
    }
}

/// Counters and gauges printed after each attack (when they moved).
const REPORTED: &[&str] = &[
    "sse_relay_connections_accepted_total",
    "sse_relay_connections_closed_total",
    "sse_relay_connections_refused_total",
    "sse_relay_tls_handshake_failures_total",
    "sse_relay_upstream_connects_total",
    "sse_relay_subscribers_lagged_total",
    "sse_relay_subscribers_shed_total",
    "sse_relay_subscriber_stall_seconds_count",
    "sse_relay_events_delivered_total",
    "sse_relay_topics",
];

/// A normal EventSource-like client: one TLS h2 connection with one stream on the normal topic.
struct Subscriber {
    _client: H2Client,
    events: EventReader,
}

impl Subscriber {
    async fn connect(addr: SocketAddr, cert: &Path) -> Subscriber {
        let mut client = H2Client::connect(addr, cert, None).await;
        let events = client
            .subscribe(&format!("/events/{NORMAL_TOPIC}"), &[])
            .await;
        assert_eq!(events.status, 200, "the normal client's subscription");
        Subscriber {
            _client: client,
            events,
        }
    }

    /// Waits for the event `id` (skipping older ones): its delay since `published`.
    async fn receive(&mut self, id: &str, published: Instant) -> Result<Duration, String> {
        let wait = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match self.events.next_event().await {
                    Some(e) if e.id.as_deref() == Some(id) => return Ok(published.elapsed()),
                    Some(_) => continue,
                    None => return Err("its stream ended".to_string()),
                }
            }
        });
        wait.await
            .unwrap_or_else(|_| Err("no event within 3 s".to_string()))
    }
}

/// What the report table shows for one attack.
struct Row {
    label: &'static str,
    seconds: f64,
    rss_peak_kib: u64,
    during_max: Option<Duration>,
    after_long_lived: Option<Duration>,
    after_fresh: Option<Duration>,
    silent_close_max_s: Option<f64>,
    origin_subscriptions: usize,
    topics: usize,
    ended_by_relay: String,
}

struct Suite {
    /// Runs the normal clients and the admin scrapes.
    rt: Runtime,
    _origin_rt: Runtime,
    origin: TestOrigin,
    relay: Relay,
    normal: Subscriber,
    python: PathBuf,
    dir: PathBuf,
    baseline_kib: u64,
    seq: u64,
    failures: Vec<String>,
    rows: Vec<Row>,
}

impl Suite {
    fn fail(&mut self, label: &str, what: String) {
        println!("  FAIL: {what}");
        self.failures.push(format!("{label}: {what}"));
    }

    fn scrape(&self) -> Scrape {
        let (_, text) = self.rt.block_on(http_get(self.relay.admin, "/metrics"));
        Scrape::parse(&text)
    }

    /// Publishes a probe event on the normal topic and waits for it at the long-lived client.
    fn probe(&mut self) -> Result<Duration, String> {
        self.seq += 1;
        let id = format!("probe-{}", self.seq);
        let published = Instant::now();
        self.origin.publish(NORMAL_TOPIC, &id, "probe");
        self.rt.block_on(self.normal.receive(&id, published))
    }

    /// A fresh client connects, subscribes and receives a probe event: its delay.
    fn probe_fresh(&mut self) -> Result<Duration, String> {
        let (addr, cert) = (self.relay.addr(), self.relay.cert.clone());
        let connect = self
            .rt
            .spawn(async move { Subscriber::connect(addr, &cert).await });
        let timed = async move { tokio::time::timeout(Duration::from_secs(5), connect).await };
        let mut fresh = match self.rt.block_on(timed) {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("could not connect and subscribe: {e}")),
            Err(_) => return Err("could not connect and subscribe within 5 s".into()),
        };
        self.seq += 1;
        let id = format!("probe-{}", self.seq);
        let published = Instant::now();
        self.origin.publish(NORMAL_TOPIC, &id, "probe");
        self.rt.block_on(fresh.receive(&id, published))
    }

    /// Realistic steady state before the baseline: connections come and go, the normal topic's
    /// ring fills; then the RSS peak over a quiet second is the baseline.
    fn warm_up(&mut self) {
        // The relay answers the normal client at once and opens its upstream subscription
        // meanwhile; an event the origin publishes before that subscription reaches it goes
        // to no one (this origin replays only on a `Last-Event-ID`). Probing that early would
        // test the race, not the relay: wait until the origin sees the subscription.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.origin.open(NORMAL_TOPIC) == 0 {
            assert!(
                Instant::now() < deadline,
                "warm-up: the relay did not subscribe to the origin within 10 s"
            );
            thread::sleep(Duration::from_millis(10));
        }
        for _ in 0..5 {
            let probe = self.probe_fresh();
            probe.unwrap_or_else(|e| panic!("warm-up: a fresh client failed: {e}"));
        }
        // Fewer events than the ring holds (`replay.max_events = 256`): should the upstream
        // reconnect meanwhile, the origin's replay arrives in one read, and a burst larger than
        // the ring would (correctly) end the normal client's stream by the lag policy.
        let payload = "w".repeat(200);
        for i in 0..240 {
            self.origin
                .publish(NORMAL_TOPIC, &format!("warm-{i}"), &payload);
        }
        self.probe()
            .unwrap_or_else(|e| panic!("warm-up: the normal client failed: {e}"));
        let sampler = RssSampler::start(self.relay.guard.id());
        thread::sleep(Duration::from_secs(1));
        self.baseline_kib = sampler.finish();
        println!(
            "baseline after warm-up: RSS {:.1} MiB (limit {:.1} MiB)",
            mib(self.baseline_kib),
            mib(self.baseline_kib) * RSS_FACTOR
        );
    }

    fn run(&mut self, attack: &Attack) {
        println!("\n=== {} ===", attack.label);
        let before = self.scrape();
        let warnings_before = self.relay.warnings().len();
        let sampler = RssSampler::start(self.relay.guard.id());
        let started = Instant::now();
        let (during, result) = self.attack(attack);
        let seconds = started.elapsed().as_secs_f64();
        let result = result.unwrap_or(Value::Null);
        self.settle(attack.label);
        let after_long_lived = self.check_latency(attack.label, "long-lived client", Self::probe);
        let after_fresh = self.check_latency(attack.label, "fresh client", Self::probe_fresh);
        let peak = sampler.finish();
        self.check_rss(attack.label, peak);
        let after = self.scrape();
        let origin_subscriptions = self.check_origin_work(attack, &before, &after);
        let silent_close_max_s = self.check_silent(attack, &result);
        let ended_by_relay = self.check_ended(attack, &result);
        self.check_log(attack.label, warnings_before);
        for change in after.changes(&before, REPORTED) {
            println!("  metric {change}");
        }
        self.rows.push(Row {
            label: attack.label,
            seconds,
            rss_peak_kib: peak,
            during_max: during.into_iter().max(),
            after_long_lived,
            after_fresh,
            silent_close_max_s,
            origin_subscriptions,
            topics: attack.topics,
            ended_by_relay,
        });
    }

    /// Runs `attack.py` to its end while probing the normal client every 250 ms (and, for
    /// attacks holding streams, publishing on their topics). Returns the probe delays measured
    /// while the attack was under way, and the script's RESULT.
    fn attack(&mut self, attack: &Attack) -> (Vec<Duration>, Option<Value>) {
        let name = attack.args.split(' ').next().unwrap_or("attack");
        let log = self.dir.join(format!("attack-{name}.log"));
        let mut command = Command::new(&self.python);
        command
            .arg(SCRIPT)
            .args(attack.args.split_whitespace())
            .args(["--port", &self.relay.tls_port.to_string(), "--cafile"])
            .arg(&self.relay.cert)
            .args(["--topic-prefix", attack.prefix])
            .args(["--topics", &attack.topics.max(1).to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).expect("create attack log"));
        let mut child = ChildGuard::spawn("attack.py", &mut command, Some(log.clone()));
        let lines = LineReader::new(child.child_mut().stdout.take().expect("stdout"));
        let wanted = |l: &str| l.starts_with("READY ") || l.starts_with("RESULT ");
        let started = Instant::now();
        let (mut during, mut ready, mut result, mut published) = (Vec::new(), false, None, 0);
        let mut next_probe = Instant::now();
        loop {
            if let Some(line) = lines.next_matching(Duration::from_millis(20), wanted) {
                if let Some(json) = line.strip_prefix("RESULT ") {
                    result = serde_json::from_str::<Value>(json).ok();
                } else {
                    println!("  attack in place: {line}");
                    ready = true;
                }
            }
            if result.is_some() || child.exited().is_some() {
                break;
            }
            if started.elapsed() > ATTACK_LIMIT {
                self.fail(
                    attack.label,
                    format!("did not stop by itself in {ATTACK_LIMIT:?}"),
                );
                break;
            }
            if ready && attack.hold == Hold::Streams && published < 600 {
                published += self.publish_on_attacked_topics(attack, 40);
            }
            if Instant::now() >= next_probe {
                next_probe = Instant::now() + Duration::from_millis(250);
                match self.probe() {
                    Ok(delay) => {
                        if delay > LATENCY_LIMIT {
                            let what = format!("during the attack: an event took {delay:?}");
                            self.fail(attack.label, what);
                        }
                        during.push(delay);
                    }
                    Err(e) => self.fail(attack.label, format!("during the attack: {e}")),
                }
            }
        }
        if result.is_none() {
            result = lines
                .next_matching(Duration::from_secs(5), |l| l.starts_with("RESULT "))
                .and_then(|l| serde_json::from_str(&l["RESULT ".len()..]).ok());
        }
        let _ = child.wait_exit(Duration::from_secs(5));
        match &result {
            Some(r) => println!("  result: {}", summarize(r)),
            None => self.fail(
                attack.label,
                format!(
                    "no RESULT from attack.py; its log:\n{}",
                    acceptance::log_tail(&log, 30)
                ),
            ),
        }
        if !during.is_empty() {
            let max = during.iter().max().copied().unwrap_or_default();
            println!(
                "  normal client during the attack: {} probes, max {max:?}",
                during.len()
            );
        }
        (during, result)
    }

    /// `per_topic` events of 1 KiB on each of the first (up to 5) attacked topics; returns
    /// how many per topic.
    fn publish_on_attacked_topics(&mut self, attack: &Attack, per_topic: usize) -> usize {
        let payload = "z".repeat(1024);
        for t in 0..attack.topics.min(5) {
            let topic = format!("{}-{t}", attack.prefix);
            for _ in 0..per_topic {
                self.seq += 1;
                self.origin
                    .publish(&topic, &format!("flood-{}", self.seq), &payload);
            }
        }
        per_topic
    }

    /// The attack's connections are gone: the relay must be back to the normal client alone
    /// (one subscriber, one connection) within 5 s.
    fn settle(&mut self, label: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let started = Instant::now();
        loop {
            let now = self.scrape();
            let subscribers = now.sum("sse_relay_subscribers");
            let open = now.sum("sse_relay_connections_open");
            if subscribers == 1.0 && open == 1.0 {
                println!(
                    "  settled after {:?}: 1 subscriber, 1 connection",
                    started.elapsed()
                );
                return;
            }
            if Instant::now() > deadline {
                let what = format!(
                    "5 s after the attack ended the relay still has {subscribers} subscribers \
                     and {open} open connections (expected 1 and 1: the normal client)"
                );
                self.fail(label, what);
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn check_latency(
        &mut self,
        label: &str,
        who: &str,
        probe: fn(&mut Self) -> Result<Duration, String>,
    ) -> Option<Duration> {
        match probe(self) {
            Ok(delay) => {
                println!("  after: {who} got an event {delay:?} after its publication");
                if delay > LATENCY_LIMIT {
                    self.fail(
                        label,
                        format!("{who}: event took {delay:?} (limit {LATENCY_LIMIT:?})"),
                    );
                }
                Some(delay)
            }
            Err(e) => {
                self.fail(label, format!("{who}: {e}"));
                None
            }
        }
    }

    /// An attacker must not be able to flood the log: warnings are rate-limited per condition
    /// (docs/operations.md, "Logs"), so an attack adds a few lines at most.
    fn check_log(&mut self, label: &str, before: usize) {
        let new = self.relay.warnings().split_off(before);
        println!("  relay log: {} new WARN/ERROR line(s)", new.len());
        if new.len() > LOG_LINES_LIMIT {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for line in &new {
                *counts.entry(line).or_default() += 1;
            }
            let (line, n) = counts
                .into_iter()
                .max_by_key(|(_, n)| *n)
                .unwrap_or_default();
            let what = format!(
                "the relay logged {} WARN/ERROR lines (limit {LOG_LINES_LIMIT}); {n}x {line:?}",
                new.len()
            );
            self.fail(label, what);
        }
    }

    fn check_rss(&mut self, label: &str, peak: u64) {
        let factor = peak as f64 / self.baseline_kib as f64;
        println!("  RSS peak {:.1} MiB = {factor:.2}x baseline", mib(peak));
        if factor >= RSS_FACTOR {
            let what = format!(
                "RSS peaked at {:.1} MiB, {factor:.2}x the baseline {:.1} MiB",
                mib(peak),
                mib(self.baseline_kib)
            );
            self.fail(label, what);
        }
    }

    /// Origin subscriptions opened for the attacked topics, and upstream connects in all,
    /// must not exceed the number of topics attacked.
    fn check_origin_work(&mut self, attack: &Attack, before: &Scrape, after: &Scrape) -> usize {
        let opened: usize = (0..attack.topics)
            .map(|t| {
                self.origin
                    .requests(&format!("{}-{t}", attack.prefix))
                    .len()
            })
            .sum();
        let connects = after.sum("sse_relay_upstream_connects_total")
            - before.sum("sse_relay_upstream_connects_total");
        let topics = attack.topics;
        println!("  origin: {opened} subscription(s) for {topics} topic(s); connects {connects:+}");
        if opened > topics || connects > topics as f64 {
            let what = format!(
                "origin work: {opened} subscriptions, {connects} upstream connects, {topics} topics"
            );
            self.fail(attack.label, what);
        }
        opened
    }

    /// Silent connections: every one closed by the relay, the last within the limit.
    fn check_silent(&mut self, attack: &Attack, result: &Value) -> Option<f64> {
        if attack.hold != Hold::Silent {
            return None;
        }
        let connections = result["connections"].as_u64().unwrap_or(0);
        let closed = result["closed_by_relay"].as_u64().unwrap_or(0);
        let max = result.pointer("/close_after_s/max").and_then(Value::as_f64);
        if closed != connections || connections == 0 {
            let what = format!("only {closed} of {connections} silent connections were closed");
            self.fail(attack.label, what);
        }
        match max {
            Some(max) if max <= SILENT_CLOSE_LIMIT_S => {}
            _ => {
                let what = format!("the last silent connection closed after {max:?} s (limit 10)");
                self.fail(attack.label, what);
            }
        }
        max
    }

    fn check_ended(&mut self, attack: &Attack, result: &Value) -> String {
        let connections = result["connections"].as_u64().unwrap_or(0);
        let ended = result["connections_closed_by_relay"].as_u64();
        let Some(ended) = ended else {
            return "-".into();
        };
        if attack.relay_ends_connections && ended != connections {
            let what = format!("the relay ended only {ended} of {connections} abusive connections");
            self.fail(attack.label, what);
        }
        format!("{ended}/{connections}")
    }

    fn table(&self) -> String {
        let mut out = format!(
            "attack suite: RSS baseline {:.1} MiB; latency limit {LATENCY_LIMIT:?}\n\
             {:<52} {:>6} {:>11} {:>10} {:>10} {:>10} {:>7} {:>7} {:>9}\n",
            mib(self.baseline_kib),
            "attack",
            "secs",
            "RSS peak",
            "during",
            "after",
            "fresh",
            "silent",
            "origin",
            "ended"
        );
        let ms = |d: Option<Duration>| {
            d.map_or("-".into(), |d| format!("{:.1}ms", d.as_secs_f64() * 1e3))
        };
        for r in &self.rows {
            let _ = writeln!(
                out,
                "{:<52} {:>6.1} {:>6.1}MiB {:>3.2}x {:>10} {:>10} {:>10} {:>7} {:>7} {:>9}",
                r.label,
                r.seconds,
                mib(r.rss_peak_kib),
                r.rss_peak_kib as f64 / self.baseline_kib as f64,
                ms(r.during_max),
                ms(r.after_long_lived),
                ms(r.after_fresh),
                r.silent_close_max_s
                    .map_or("-".into(), |s| format!("{s:.2}s")),
                format!("{}/{}", r.origin_subscriptions, r.topics),
                r.ended_by_relay
            );
        }
        out
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The RESULT without its per-connection detail, plus the first connection's.
fn summarize(result: &Value) -> String {
    let mut short = result.clone();
    if let Some(map) = short.as_object_mut() {
        if let Some(Value::Array(per)) = map.remove("per_connection") {
            if let Some(first) = per.first() {
                map.insert("first_connection".into(), first.clone());
            }
        }
    }
    short.to_string()
}
