//! `RESULTS.md`: machine and versions, method, the issue's targets marked met / NOT met with
//! the figure, one table per scenario with the sse-relay/nchan ratio, and the callgrind hot
//! spots. Text between the analysis markers of an existing file is kept (hand-written
//! analysis of the profile survives a re-run).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::scenarios::{Record, Sizes, TargetKind};

const ANALYSIS_START: &str = "<!-- analysis:start (kept across runs) -->";
const ANALYSIS_END: &str = "<!-- analysis:end -->";

/// What the report says about the run itself.
pub struct Context<'a> {
    /// `quick` or `full`.
    pub mode: &'static str,
    /// The command that produced it.
    pub command: String,
    /// Sizes used.
    pub sizes: &'a Sizes,
    /// Wall time of the scenarios.
    pub elapsed: Duration,
    /// The relay binary.
    pub relay_bin: &'a Path,
    /// The chart's file name, relative to the report.
    pub chart: &'a str,
    /// Padding bytes per event.
    pub payload: usize,
    /// When the run happened.
    pub date: String,
}

/// A profile's shape (connections, streams, events, events/s) and its outcome.
pub type ProfileRun = ((usize, usize, u64, u64), Result<Profile, String>);

/// The top functions of a callgrind profile: (inclusive table, self table, totals line).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    inclusive: String,
    exclusive: String,
    summary: String,
}

/// Runs `callgrind_annotate` on `out` (inclusive and self cost).
pub fn annotate(out: &Path) -> Result<Profile> {
    let run = |inclusive: bool| -> Result<String> {
        let output = Command::new("callgrind_annotate")
            .arg(format!(
                "--inclusive={}",
                if inclusive { "yes" } else { "no" }
            ))
            .arg("--threshold=100")
            .arg(out)
            .output()
            .context("run callgrind_annotate")?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let inclusive = run(true)?;
    let exclusive = run(false)?;
    let summary = inclusive
        .lines()
        .find(|l| l.contains("PROGRAM TOTALS"))
        .unwrap_or("")
        .trim()
        .to_string();
    Ok(Profile {
        inclusive: top_functions(&inclusive, 30),
        exclusive: top_functions(&exclusive, 30),
        summary,
    })
}

/// The first `n` function rows of callgrind_annotate output: cost, share, function (source
/// file name), shortened.
fn top_functions(text: &str, n: usize) -> String {
    text.lines()
        .skip_while(|l| !l.contains("file:function"))
        .skip(2)
        .filter(|l| l.contains('(') && l.contains('%'))
        .take(n)
        .map(|l| {
            let l = l.trim();
            let Some((cost, rest)) = l.split_once(")  ") else {
                return l.to_string();
            };
            let rest = rest.rsplit_once(" [").map_or(rest, |(f, _)| f);
            let (file, function) = rest.split_once(':').unwrap_or(("", rest));
            let file = file.rsplit('/').next().unwrap_or(file);
            let function: String = function.chars().take(150).collect();
            format!("{cost})  {function}  ({file})")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The time now, for the report.
pub fn now() -> String {
    sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`), as `uptime` prints them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|e| format!("(/proc/loadavg: {e})"))
}

fn sh(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if s.is_empty() {
                s = String::from_utf8_lossy(&o.stderr).trim().to_string();
            }
            s
        })
        .unwrap_or_else(|e| format!("({program}: {e})"))
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo.lines().next().unwrap_or("").to_string();
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .unwrap_or("")
        .trim_matches('"')
        .to_string();
    let mut s = String::new();
    let _ = writeln!(s, "| what | value |\n| --- | --- |");
    let _ = writeln!(
        s,
        "| CPU | {model}, **{} cores** (`nproc`) |",
        sh("nproc", &[])
    );
    let _ = writeln!(
        s,
        "| memory | {} |",
        mem.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
    );
    let _ = writeln!(s, "| OS / kernel | {os} / {} |", sh("uname", &["-r"]));
    let _ = writeln!(
        s,
        "| open-file limit | {} |",
        sh("sh", &["-c", "ulimit -n"])
    );
    let _ = writeln!(
        s,
        "| nginx | {} |",
        sh("nginx", &["-v"]).replace("nginx version: ", "")
    );
    let _ = writeln!(
        s,
        "| nchan | libnginx-mod-nchan {} |",
        sh("dpkg-query", &["-W", "-f=${Version}", "libnginx-mod-nchan"])
    );
    let _ = writeln!(
        s,
        "| OpenSSL (nginx's TLS) | {} |",
        sh("openssl", &["version"])
    );
    let _ = writeln!(s, "| rustc | {} |", sh("rustc", &["-V"]));
    let rev = sh("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = if sh("git", &["status", "--porcelain", "--", "src"]).is_empty() {
        ""
    } else {
        " (+ uncommitted changes in src/)"
    };
    let _ = writeln!(s, "| sse-relay | commit {rev}{dirty} |");
    s
}

pub(crate) fn find<'a>(
    records: &'a [Record],
    scenario: &str,
    target: TargetKind,
    subs: Option<u64>,
) -> Option<&'a Record> {
    records.iter().rev().find(|r| {
        r.scenario == scenario
            && r.target == target
            && match subs {
                Some(s) => r.subscribers == s,
                None => true,
            }
    })
}

fn pair<'a>(
    records: &'a [Record],
    scenario: &str,
    subs: Option<u64>,
) -> (Option<&'a Record>, Option<&'a Record>) {
    (
        find(records, scenario, TargetKind::Relay, subs),
        find(records, scenario, TargetKind::Nchan, subs),
    )
}

/// How a figure is printed.
#[derive(Clone, Copy)]
pub(crate) enum Unit {
    Bytes,
    Micros,
    MicrosCpu,
    Rate,
    Plain,
    Ratio,
    Percent,
}

pub(crate) fn fmt(v: Option<f64>, unit: Unit) -> String {
    let Some(v) = v else { return "–".into() };
    match unit {
        Unit::Bytes if v.abs() >= 1e6 => format!("{:.1} MB", v / 1e6),
        Unit::Bytes if v.abs() >= 1e4 => format!("{:.1} KB", v / 1e3),
        Unit::Bytes => format!("{v:.0} B"),
        Unit::Micros if v >= 1e6 => format!("{:.2} s", v / 1e6),
        Unit::Micros if v >= 1e3 => format!("{:.1} ms", v / 1e3),
        Unit::Micros => format!("{v:.0} µs"),
        Unit::MicrosCpu => format!("{v:.2} µs"),
        Unit::Rate if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        Unit::Rate if v >= 1e3 => format!("{:.1} k/s", v / 1e3),
        Unit::Rate => format!("{v:.1} /s"),
        Unit::Plain => format!("{v:.2}"),
        Unit::Ratio => format!("{v:.2}×"),
        Unit::Percent => format!("{:.0} %", v * 100.0),
    }
}

pub(crate) fn value(r: Option<&Record>, key: &str) -> Option<f64> {
    r.filter(|r| r.failure.is_none())?.get(key)
}

pub(crate) fn ratio(relay: Option<&Record>, nchan: Option<&Record>, key: &str) -> Option<f64> {
    let (a, b) = (value(relay, key)?, value(nchan, key)?);
    (b != 0.0).then(|| a / b)
}

fn failure(r: Option<&Record>) -> Option<String> {
    match r {
        None => Some("not run".into()),
        Some(r) => r
            .failure
            .as_ref()
            .map(|f| format!("FAILED: {}", f.replace('\n', " "))),
    }
}

/// One row of a scenario table: label, record key, unit.
type Row = (&'static str, &'static str, Unit);

/// The CPU rows every scenario that measures deliveries shows.
const CPU_ROWS: &[Row] = &[
    (
        "server CPU per delivery",
        "cpu_per_delivery_us",
        Unit::MicrosCpu,
    ),
    (
        "… of which user",
        "cpu_user_per_delivery_us",
        Unit::MicrosCpu,
    ),
    (
        "… of which system",
        "cpu_sys_per_delivery_us",
        Unit::MicrosCpu,
    ),
    (
        "client CPU per delivery (load generator + publisher)",
        "client_cpu_per_delivery_us",
        Unit::MicrosCpu,
    ),
    (
        "other processes\' share of the 2 cores meanwhile",
        "other_cpu_share",
        Unit::Percent,
    ),
];

/// A scenario table: one row per figure (groups of rows, in order), columns sse-relay, nchan,
/// ratio; and, when the minimal hyper server ([`crate::minimal`]) ran the same scenario and
/// size, its column and the ratio to it ("what you would get without us", issue 13).
fn table(
    out: &mut String,
    records: &[Record],
    relay: Option<&Record>,
    nchan: Option<&Record>,
    rows: &[&[Row]],
) {
    let either = relay.or(nchan);
    let shape = either.map(|r| r.shape.clone()).unwrap_or_default();
    let minimal = either.and_then(|r| {
        find(
            records,
            &r.scenario,
            TargetKind::HyperMinimal,
            Some(r.subscribers),
        )
    });
    let _ = writeln!(out, "Load: {shape}.\n");
    match minimal {
        None => {
            let _ = writeln!(
                out,
                "| figure | sse-relay | nchan | sse-relay / nchan |\n| --- | ---: | ---: | ---: |"
            );
        }
        Some(_) => {
            let _ = writeln!(
                out,
                "| figure | sse-relay | nchan | sse-relay / nchan | hyper-minimal | sse-relay / hyper-minimal |\n| --- | ---: | ---: | ---: | ---: | ---: |"
            );
        }
    }
    for (label, key, unit) in rows.iter().copied().flatten() {
        let _ = write!(
            out,
            "| {label} | {} | {} | {} |",
            fmt(value(relay, key), *unit),
            fmt(value(nchan, key), *unit),
            fmt(ratio(relay, nchan, key), Unit::Ratio)
        );
        if minimal.is_some() {
            let _ = write!(
                out,
                " {} | {} |",
                fmt(value(minimal, key), *unit),
                fmt(ratio(relay, minimal, key), Unit::Ratio)
            );
        }
        out.push('\n');
    }
    let columns = [("sse-relay", relay), ("nchan", nchan)];
    let minimal_column = minimal.map(|m| ("hyper-minimal", Some(m)));
    for (name, r) in columns.into_iter().chain(minimal_column) {
        if let Some(f) = failure(r) {
            let _ = writeln!(out, "\n**{name}: {f}**");
        }
    }
    out.push('\n');
}

/// One row of a targets table.
pub(crate) struct Verdict {
    pub(crate) scenario: String,
    pub(crate) target: String,
    pub(crate) figure: String,
    pub(crate) met: Option<bool>,
}

fn mark(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**NOT met**",
        None => "**NOT met** (no figure)",
    }
}

pub(crate) fn verdicts(records: &[Record], sizes: &Sizes) -> Vec<Verdict> {
    let mut v = Vec::new();
    let top = sizes.sweep.last().copied().unwrap_or(0) as u64;
    let (relay, nchan) = pair(records, "sweep", Some(top));
    let rss = value(relay, "rss_per_sub_bytes");
    let rss_ratio = ratio(relay, nchan, "rss_per_sub_bytes");
    v.push(Verdict {
        scenario: format!("idle RSS per subscriber, {top} conn × 1 stream"),
        target: "≤ 10 KB and ≤ 0.25× nchan".into(),
        figure: format!(
            "{} vs nchan {} ({})",
            fmt(rss, Unit::Bytes),
            fmt(value(nchan, "rss_per_sub_bytes"), Unit::Bytes),
            fmt(rss_ratio, Unit::Ratio)
        ),
        met: rss.zip(rss_ratio).map(|(r, q)| r <= 10_000.0 && q <= 0.25),
    });
    let (mrelay, mnchan) = pair(records, "multiplexed", None);
    let extra = value(mrelay, "rss_per_extra_stream_bytes");
    v.push(Verdict {
        scenario: format!(
            "RSS per extra multiplexed stream, {}",
            mrelay.map(|r| r.shape.as_str()).unwrap_or("")
        ),
        target: "≤ 0.8 KB".into(),
        figure: format!(
            "{} (nchan {})",
            fmt(extra, Unit::Bytes),
            fmt(value(mnchan, "rss_per_extra_stream_bytes"), Unit::Bytes)
        ),
        met: extra.map(|e| e <= 800.0),
    });
    let p = ratio(relay, nchan, "p99_us");
    v.push(Verdict {
        scenario: format!("1 event → {top} subscribers (1 connection each), p99"),
        target: "≤ 0.33× nchan".into(),
        figure: format!(
            "{} vs nchan {} ({})",
            fmt(value(relay, "p99_us"), Unit::Micros),
            fmt(value(nchan, "p99_us"), Unit::Micros),
            fmt(p, Unit::Ratio)
        ),
        met: p.map(|p| p <= 0.33),
    });
    let p = ratio(mrelay, mnchan, "p99_us");
    v.push(Verdict {
        scenario: format!(
            "1 event → {} subscribers over {} connections, p99",
            mrelay.map(|r| r.subscribers).unwrap_or(0),
            sizes.mux.0
        ),
        target: "≤ 0.2× nchan".into(),
        figure: format!(
            "{} vs nchan {} ({})",
            fmt(value(mrelay, "p99_us"), Unit::Micros),
            fmt(value(mnchan, "p99_us"), Unit::Micros),
            fmt(p, Unit::Ratio)
        ),
        met: p.map(|p| p <= 0.2),
    });
    let cpu = value(relay, "cpu_per_delivery_us");
    v.push(Verdict {
        scenario: format!("relay CPU per delivery at {top} connections"),
        target: "≤ 8 µs".into(),
        figure: format!(
            "{} (nchan {})",
            fmt(cpu, Unit::MicrosCpu),
            fmt(value(nchan, "cpu_per_delivery_us"), Unit::MicrosCpu)
        ),
        met: cpu.map(|c| c <= 8.0),
    });
    let (srelay, snchan) = pair(records, "sustained", None);
    let sp = value(srelay, "p99_us");
    v.push(Verdict {
        scenario: format!(
            "sustained {} subscribers ({} conn × {} streams) × {} events/s for {} s",
            sizes.sustained.0 * sizes.sustained.1,
            sizes.sustained.0,
            sizes.sustained.1,
            sizes.sustained.2,
            sizes.sustained.3
        ),
        target: "p99 ≤ 20 ms, nothing lost".into(),
        figure: format!(
            "p99 {}, lost {} (nchan p99 {})",
            fmt(sp, Unit::Micros),
            srelay
                .filter(|r| r.failure.is_none())
                .map(|_| "0".to_string())
                .unwrap_or_else(|| failure(srelay).unwrap_or_default()),
            fmt(value(snchan, "p99_us"), Unit::Micros)
        ),
        met: sp.map(|p| p <= 20_000.0),
    });
    let (brelay, bnchan) = pair(records, "burst", None);
    let rate = value(brelay, "deliveries_per_s");
    let per_record = value(brelay, "events_per_record");
    let back = value(brelay, "rss_after_over_idle");
    v.push(Verdict {
        scenario: format!(
            "burst: {} events back to back to {} subscribers",
            sizes.burst.1, sizes.burst.0
        ),
        target: "≥ 2 M deliveries/s, several (≥ 3) events per TLS record, RSS within 1.5× idle 10 s later".into(),
        figure: format!(
            "{}, {} events/record, RSS {} of idle (nchan {}, {} events/record)",
            fmt(rate, Unit::Rate),
            fmt(per_record, Unit::Plain),
            fmt(back, Unit::Ratio),
            fmt(value(bnchan, "deliveries_per_s"), Unit::Rate),
            fmt(value(bnchan, "events_per_record"), Unit::Plain)
        ),
        met: rate
            .zip(per_record)
            .zip(back)
            .map(|((r, e), b)| r >= 2e6 && e >= 3.0 && b <= 1.5),
    });
    let (grelay, gnchan) = pair(records, "big", None);
    let total = value(grelay, "rss_loaded_bytes");
    let gp = value(grelay, "p99_us");
    v.push(Verdict {
        scenario: format!(
            "{} subscribers, {} connections × {} streams",
            sizes.big.0 * sizes.big.1,
            sizes.big.0,
            sizes.big.1
        ),
        target: "≤ 150 MB RSS total, one event p99 ≤ 250 ms".into(),
        figure: format!(
            "RSS {}, p99 {} (nchan RSS {}, p99 {})",
            fmt(total, Unit::Bytes),
            fmt(gp, Unit::Micros),
            fmt(value(gnchan, "rss_loaded_bytes"), Unit::Bytes),
            fmt(value(gnchan, "p99_us"), Unit::Micros)
        ),
        met: total.zip(gp).map(|(t, p)| t <= 150e6 && p <= 250_000.0),
    });
    let origins: Vec<(String, f64)> = records
        .iter()
        .filter(|r| r.target == TargetKind::Relay)
        .filter_map(|r| {
            Some((
                format!("{} {}", r.scenario, r.subscribers),
                r.get("origin_subscribers")?,
            ))
        })
        .collect();
    v.push(Verdict {
        scenario: "origin connections for N subscribers of one topic".into(),
        target: "exactly 1 (nchan has no origin)".into(),
        figure: if origins.is_empty() {
            "–".into()
        } else {
            origins
                .iter()
                .map(|(s, n)| format!("{s} subs: {n}"))
                .collect::<Vec<_>>()
                .join("; ")
                + " (nchan's own subscriber count on the channel)"
        },
        met: (!origins.is_empty()).then(|| origins.iter().all(|(_, n)| *n == 1.0)),
    });
    v
}

fn method(out: &mut String, ctx: &Context<'_>, records: &[Record]) {
    let tls: Vec<String> = [TargetKind::Nchan, TargetKind::Relay]
        .iter()
        .filter_map(|&t| {
            let r = records.iter().find(|r| r.target == t && r.tls.is_some())?;
            Some(format!("{}: {}", t.name(), r.tls.as_deref().unwrap_or("")))
        })
        .collect();
    let _ = write!(
        out,
        r#"## Method

- **One machine, 2 cores shared by everything**: the load generator (this benchmark's client,
  a tokio runtime with 2 worker threads), the publisher, nginx + nchan and sse-relay all run on
  the same 2 cores. Latencies therefore include the client's own processing and CPU contention;
  both targets are measured under the same conditions, one after the other, never at once.
- **Targets**, each started fresh for every scenario (and every size), on a fresh channel:
  - *nchan*: nginx + Debian `libnginx-mod-nchan`, TLS + h2 (`listen … ssl http2`, this nginx
    predates `http2 on`), `ssl_protocols TLSv1.2 TLSv1.3`, clients subscribe to
    `nchan_subscriber eventsource` (`nchan_subscriber_first_message newest`).
    nginx runs as **one process** (`master_process off`, so one worker: it uses at most one of
    the 2 cores); its RSS and CPU are that process's. `http2_max_concurrent_streams 128`
    (nginx's default, set explicitly), `worker_connections 19500`, `worker_rlimit_nofile 20000`.
  - *sse-relay*: the release build (`cargo build --release`; `run.sh` runs a copy of it, so a
    rebuild during the run cannot change it; default tokio runtime: 2 worker threads) with the
    same nginx + nchan as its origin over loopback plain HTTP/1.1. Relay config: defaults, plus
    `drain_delay_ms = 0`, `limits.max_connections = limits.max_connections_per_ip = 19500`
    (all clients come from 127.0.0.1), `max_streams_per_connection = 256` (default), admin on
    a free loopback port. Its RSS and CPU are the relay process's only (nchan's one upstream
    subscription is not counted for the relay).
  - Both present the same self-signed ECDSA P-256 certificate (rcgen). Negotiated:
    {tls}.
- **Publisher**: the same HTTP/1.1 keep-alive client POSTs to nchan's publisher location
  (plain HTTP on loopback) for both targets; an event's data is `<seq> <publish time> <{pad}
  bytes of padding>`, the time (ns, a monotonic clock shared with the subscribers: same
  process) taken just before the request is written. Single-event rounds wait for each POST's
  answer. The sustained and burst scenarios pipeline their POSTs on one connection (nginx
  answers pipelined requests in order, so events keep their order) and do not wait for
  answers: nchan answers a publish only after writing the message to all of its own
  subscribers, so a waiting publisher would slow down to nchan's fan-out speed.
- **Shapes**: the sustained scenario uses 10 connections × 100 streams: at one stream per
  connection the load generator alone needs about 11 µs of CPU per delivery (see the tables),
  so 1000 × 250 = 250k deliveries/s would need more than the 2 cores for the client alone.
  The burst uses one connection per subscriber.
- **Latency** = time the subscriber's task got the body frame holding the event − publish
  time, per delivery, in an HDR histogram (µs, 3 significant digits). Fan-out figures are over
  {rounds} single events (one warm-up event first, not recorded; the 100 000-subscriber
  scenario: {big_rounds}), each waited for by every subscriber, 100 ms apart.
- **Correctness while measuring**: every stream checks that sequence numbers arrive complete
  and in order; a stream that ends, an event lost, duplicated or reordered, or a delivery
  missing at the deadline makes the scenario **FAILED** (no figure is reported for it).
- **Subscribed** means: every stream got `200 text/event-stream` headers, and nchan's channel
  info counts the expected subscribers (all of them for nchan; exactly 1, the relay's upstream,
  for sse-relay).
- **RSS** = `VmRSS` from `/proc/PID/status` after a {settle} ms pause; per subscriber =
  (RSS with subscribers − RSS of the fresh process) ÷ subscribers. **CPU** = `utime + stime`
  from `/proc/PID/stat` (10 ms ticks) over the measured rounds ÷ deliveries.
- **Other load**: run as root, the benchmark's session (client, publisher, servers) runs at
  nice −10 and its scheduler autogroup at nice −10, so other work on the machine yields to it;
  the tables give the share of the 2 cores that *other* processes used over each measured
  stretch (`/proc/stat` user + nice + system − the benchmark's processes; it includes the
  benchmark's idle gaps between events, which other work may fill).
- **TLS records** are counted under the client's TLS (application-data records received);
  events per record = deliveries ÷ records during the burst. KB = 1000 bytes, MB = 10⁶ bytes.
- Open-file limit 20,000 per process: at most ~9k one-connection subscribers (client and server
  each need a descriptor per connection); beyond that, multiplexed h2 streams.

"#,
        tls = if tls.is_empty() {
            "–".into()
        } else {
            tls.join("; ")
        },
        pad = ctx.payload,
        rounds = ctx.sizes.rounds,
        big_rounds = ctx.sizes.rounds.min(crate::scenarios::BIG_ROUNDS),
        settle = ctx.sizes.settle_ms,
    );
}

fn scenario_tables(out: &mut String, records: &[Record], sizes: &Sizes) {
    let _ = writeln!(out, "## Scenarios\n");
    let _ = writeln!(
        out,
        "### Idle RSS and single-event fan-out, one connection per subscriber\n"
    );
    for &s in &sizes.sweep {
        let (relay, nchan) = pair(records, "sweep", Some(s as u64));
        table(
            out,
            records,
            relay,
            nchan,
            &[
                &[
                    ("idle RSS per subscriber", "rss_per_sub_bytes", Unit::Bytes),
                    ("RSS with subscribers", "rss_loaded_bytes", Unit::Bytes),
                    ("fan-out p50", "p50_us", Unit::Micros),
                    ("fan-out p99", "p99_us", Unit::Micros),
                    ("fan-out max", "max_us", Unit::Micros),
                ],
                CPU_ROWS,
                &[
                    ("events per h2 DATA frame", "events_per_frame", Unit::Plain),
                    (
                        "origin subscriptions (nchan's count)",
                        "origin_subscribers",
                        Unit::Plain,
                    ),
                ],
            ],
        );
    }
    let _ = writeln!(out, "### Multiplexed streams\n");
    let (relay, nchan) = pair(records, "multiplexed", None);
    table(
        out,
        records,
        relay,
        nchan,
        &[
            &[
                (
                    "RSS per extra multiplexed stream",
                    "rss_per_extra_stream_bytes",
                    Unit::Bytes,
                ),
                ("RSS per subscriber (all)", "rss_per_sub_bytes", Unit::Bytes),
                ("fan-out p50", "p50_us", Unit::Micros),
                ("fan-out p99", "p99_us", Unit::Micros),
                ("fan-out max", "max_us", Unit::Micros),
            ],
            CPU_ROWS,
            &[(
                "origin subscriptions (nchan's count)",
                "origin_subscribers",
                Unit::Plain,
            )],
        ],
    );
    let _ = writeln!(out, "### HTTP/1.1, one connection per subscriber\n");
    let (relay, nchan) = pair(records, "http1", None);
    table(
        out,
        records,
        relay,
        nchan,
        &[
            &[
                ("idle RSS per subscriber", "rss_per_sub_bytes", Unit::Bytes),
                ("fan-out p50", "p50_us", Unit::Micros),
                ("fan-out p99", "p99_us", Unit::Micros),
                ("fan-out max", "max_us", Unit::Micros),
            ],
            CPU_ROWS,
            &[],
        ],
    );
    let _ = writeln!(out, "### Sustained rate\n");
    let (relay, nchan) = pair(records, "sustained", None);
    table(
        out,
        records,
        relay,
        nchan,
        &[
            &[
                (
                    "events published per second (achieved)",
                    "published_per_s",
                    Unit::Plain,
                ),
                ("latency p50", "p50_us", Unit::Micros),
                ("latency p99", "p99_us", Unit::Micros),
                ("latency max", "max_us", Unit::Micros),
            ],
            CPU_ROWS,
            &[("lost", "lost", Unit::Plain)],
        ],
    );
    let _ = writeln!(out, "### Burst\n");
    let (relay, nchan) = pair(records, "burst", None);
    table(
        out,
        records,
        relay,
        nchan,
        &[
            &[
                (
                    "publish requests answered by nchan per second",
                    "published_per_s",
                    Unit::Plain,
                ),
                (
                    "deliveries per second (first publish → last delivery)",
                    "deliveries_per_s",
                    Unit::Rate,
                ),
                ("events per TLS record", "events_per_record", Unit::Plain),
                ("events per h2 DATA frame", "events_per_frame", Unit::Plain),
                ("latency p99", "p99_us", Unit::Micros),
                ("latency max", "max_us", Unit::Micros),
            ],
            CPU_ROWS,
            &[
                ("RSS idle (subscribed)", "rss_idle_bytes", Unit::Bytes),
                ("RSS right after the burst", "rss_peak_bytes", Unit::Bytes),
                ("RSS 10 s later", "rss_after_bytes", Unit::Bytes),
                ("RSS 10 s later ÷ idle", "rss_after_over_idle", Unit::Plain),
            ],
        ],
    );
    let _ = writeln!(out, "### Connection ramp\n");
    let (relay, nchan) = pair(records, "ramp", None);
    table(
        out,
        records,
        relay,
        nchan,
        &[&[
            ("subscribers set up", "subscribers", Unit::Plain),
            (
                "new TLS + h2 + subscribe per second",
                "setups_per_s",
                Unit::Plain,
            ),
            ("setup time p50", "setup_p50_us", Unit::Micros),
            ("setup time p99", "setup_p99_us", Unit::Micros),
            ("server CPU per setup", "cpu_per_setup_us", Unit::MicrosCpu),
        ]],
    );
    let _ = writeln!(out, "### The big one\n");
    let (relay, nchan) = pair(records, "big", None);
    table(
        out,
        records,
        relay,
        nchan,
        &[
            &[
                (
                    "RSS total with subscribers",
                    "rss_loaded_bytes",
                    Unit::Bytes,
                ),
                ("RSS per subscriber", "rss_per_sub_bytes", Unit::Bytes),
                ("fan-out p50", "p50_us", Unit::Micros),
                ("fan-out p99", "p99_us", Unit::Micros),
                ("fan-out max", "max_us", Unit::Micros),
            ],
            CPU_ROWS,
            &[
                (
                    "RSS after the fan-out",
                    "rss_after_fanout_bytes",
                    Unit::Bytes,
                ),
                (
                    "origin subscriptions (nchan's count)",
                    "origin_subscribers",
                    Unit::Plain,
                ),
            ],
        ],
    );
}

fn verdict_table(out: &mut String, verdicts: Vec<Verdict>) {
    let _ = writeln!(
        out,
        "| scenario | target | figure (this run) | verdict |\n| --- | --- | --- | --- |"
    );
    for v in verdicts {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            v.scenario,
            v.target,
            v.figure,
            mark(v.met)
        );
    }
}

/// Writes the report to `path`, keeping the analysis section of an existing one.
pub fn write(
    path: &Path,
    ctx: &Context<'_>,
    records: &[Record],
    profiles: Vec<ProfileRun>,
) -> Result<()> {
    let kept = std::fs::read_to_string(path)
        .ok()
        .and_then(|old| {
            let start = old.find(ANALYSIS_START)?;
            let end = old.find(ANALYSIS_END)?;
            Some(old[start + ANALYSIS_START.len()..end].trim().to_string())
        })
        .unwrap_or_else(|| "_No analysis written yet._".into());
    let mut out = String::new();
    let _ = writeln!(out, "# Fan-out benchmark: sse-relay vs nginx + nchan\n");
    let _ = writeln!(
        out,
        "Generated by `{}` ({} mode, `cargo bench --bench fanout`) on {}; the scenarios took {:.1} min. \
         Relay binary: `{}`. Every figure below is from this one run.\n",
        ctx.command,
        ctx.mode,
        ctx.date,
        ctx.elapsed.as_secs_f64() / 60.0,
        ctx.relay_bin.display(),
    );
    let _ = writeln!(
        out,
        "![fan-out p99 and RSS per subscriber vs subscribers]({})\n",
        ctx.chart
    );
    let _ = writeln!(out, "## Machine and versions\n\n{}", machine());
    let _ = writeln!(out, "## Targets (issue 4)\n");
    if ctx.mode == "quick" {
        let _ = writeln!(
            out,
            "**Quick mode: smaller sizes than the targets name; each verdict applies to the \
             size shown in its row, not to the issue's target size.**\n"
        );
    }
    verdict_table(&mut out, verdicts(records, ctx.sizes));
    out.push('\n');
    let _ = writeln!(
        out,
        "## Targets (issue 13): against the minimal hyper server\n\n{}\n",
        crate::minimal_targets::NOTE
    );
    verdict_table(
        &mut out,
        crate::minimal_targets::verdicts(records, ctx.sizes),
    );
    out.push('\n');
    method(&mut out, ctx, records);
    scenario_tables(&mut out, records, ctx.sizes);
    let _ = writeln!(out, "## Profile\n");
    if profiles.is_empty() {
        let _ = writeln!(
            out,
            "Not profiled in this run (`bash benches/run.sh --profile`).\n"
        );
    }
    for ((c, m, events, rate), profile) in profiles {
        let _ = writeln!(out, "### {c} connections × {m} streams\n");
        match profile {
            Ok(p) => {
                let _ =
                    writeln!(
                    out,
                    "`valgrind --tool=callgrind --instr-atstart=no` on the relay; instrumentation \
                     switched on (`callgrind_control -i on`) after {c} connections × {m} streams \
                     had subscribed, for {events} events at {rate}/s, off after the last delivery \
                     ({} deliveries). Instruction counts (Ir), user space only (the kernel's \
                     share is not seen by callgrind). Total: {}.\n\nInclusive cost (top 30):\n\n\
                     ```\n{}\n```\n\nSelf cost (top 30):\n\n```\n{}\n```\n",
                    c as u64 * m as u64 * events,
                    p.summary, p.inclusive, p.exclusive
                );
            }
            Err(e) => {
                let _ = writeln!(out, "The profile run FAILED: {e}\n");
            }
        }
    }
    let _ = writeln!(out, "{ANALYSIS_START}\n{kept}\n{ANALYSIS_END}");
    std::fs::write(path, out).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// Run by `tests/fanout_instrument.rs`; the bench target itself (`harness = false`) compiles
/// them without a test runner, hence `dead_code` there.
#[cfg(test)]
#[allow(dead_code)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A record of `scenario` on `target` with these figures (shared with
    /// `minimal_targets.rs`'s tests).
    pub(crate) fn record(
        scenario: &str,
        target: TargetKind,
        subscribers: u64,
        values: &[(&str, f64)],
    ) -> Record {
        Record {
            scenario: scenario.into(),
            target,
            shape: String::new(),
            subscribers,
            failure: None,
            values: values
                .iter()
                .map(|&(k, v)| (k.to_string(), v))
                .collect::<BTreeMap<_, _>>(),
            tls: None,
        }
    }

    /// Records of every scenario, each relay figure exactly at its target (nchan 4× worse).
    fn at_targets() -> Vec<Record> {
        use TargetKind::{Nchan, Relay};
        vec![
            record(
                "sweep",
                Nchan,
                9000,
                &[
                    ("rss_per_sub_bytes", 40_000.0),
                    ("p99_us", 300_000.0),
                    ("cpu_per_delivery_us", 16.0),
                ],
            ),
            record(
                "sweep",
                Relay,
                9000,
                &[
                    ("rss_per_sub_bytes", 10_000.0),
                    ("p99_us", 99_000.0),
                    ("cpu_per_delivery_us", 8.0),
                    ("origin_subscribers", 1.0),
                ],
            ),
            record(
                "multiplexed",
                Nchan,
                10_000,
                &[
                    ("rss_per_extra_stream_bytes", 10_000.0),
                    ("p99_us", 100_000.0),
                ],
            ),
            record(
                "multiplexed",
                Relay,
                10_000,
                &[("rss_per_extra_stream_bytes", 800.0), ("p99_us", 20_000.0)],
            ),
            record("sustained", Relay, 1000, &[("p99_us", 20_000.0)]),
            record(
                "burst",
                Relay,
                1000,
                &[
                    ("deliveries_per_s", 2e6),
                    ("events_per_record", 3.0),
                    ("rss_after_over_idle", 1.5),
                ],
            ),
            record(
                "big",
                Relay,
                100_000,
                &[
                    ("rss_loaded_bytes", 150e6),
                    ("p99_us", 250_000.0),
                    ("origin_subscribers", 1.0),
                ],
            ),
        ]
    }

    #[test]
    fn figures_at_their_targets_are_met() {
        let v = verdicts(&at_targets(), &Sizes::full());
        assert_eq!(v.len(), 9);
        for verdict in &v {
            assert_eq!(
                verdict.met,
                Some(true),
                "{}: {}",
                verdict.scenario,
                verdict.figure
            );
        }
    }

    #[test]
    fn a_figure_past_its_target_is_not_met() {
        let mut records = at_targets();
        records[1].values.insert("cpu_per_delivery_us".into(), 8.01);
        let v = verdicts(&records, &Sizes::full());
        let cpu = v
            .iter()
            .find(|v| v.scenario.contains("CPU per delivery"))
            .unwrap();
        assert_eq!(cpu.met, Some(false));
        assert_eq!(mark(cpu.met), "**NOT met**");
        assert_eq!(v.iter().filter(|v| v.met == Some(true)).count(), 8);
    }

    /// A benchmark that loses events reports failure, not a number (issue 4).
    #[test]
    fn a_failed_scenario_gives_no_figure_and_is_not_met() {
        let mut records = at_targets();
        let sustained = records
            .iter_mut()
            .find(|r| r.scenario == "sustained")
            .unwrap();
        sustained.failure =
            Some("1 events arrived out of sequence (lost, duplicated or reordered)".into());
        let v = verdicts(&records, &Sizes::full());
        let s = v
            .iter()
            .find(|v| v.scenario.starts_with("sustained"))
            .unwrap();
        assert_eq!(s.met, None);
        assert_eq!(mark(s.met), "**NOT met** (no figure)");
        assert!(s.figure.starts_with("p99 –"), "{}", s.figure);
        assert!(
            s.figure
                .contains("FAILED: 1 events arrived out of sequence"),
            "{}",
            s.figure
        );
    }

    #[test]
    fn more_than_one_origin_subscription_is_not_met() {
        let mut records = at_targets();
        records[6].values.insert("origin_subscribers".into(), 2.0);
        let v = verdicts(&records, &Sizes::full());
        let origin = v.iter().find(|v| v.scenario.starts_with("origin")).unwrap();
        assert_eq!(origin.met, Some(false));
    }
}
