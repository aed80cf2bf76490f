//! The compression benchmark's report: per feed, one table of every variant's figures (bytes
//! on the wire per event, fan-out latency, CPU per delivery, RSS per subscriber; the
//! per-event gzip reference row), then the goals marked met or NOT met with the
//! figures they were judged on, and what was decoded and compared. Printed, and written as
//! markdown. It formats saved records only.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::feeds::FeedKind;
use super::model::{Record, Variant};
use super::RunData;
use crate::report::{fmt, Unit};

/// Ticks' bytes on the wire, at most, as a share of identity's (the goal).
const TICKS_GOAL: f64 = 0.3;

/// Prints the report and writes it to `path`.
pub fn write(path: &Path, data: &RunData) -> Result<()> {
    let text = render(data);
    println!("{text}");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, &text)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn render(data: &RunData) -> String {
    let mut out = String::new();
    let s = &data.sizes;
    let _ = writeln!(
        out,
        "## Compression ({} run, {}, commit {})\n\n`{}`: {:.1} min; load average before {}, \
         after {}. {} subscribers ({} h2 connections × {} streams, TLS) plus one identity \
         witness stream per run; every server started afresh per run.\n\n{}",
        data.mode,
        data.date,
        data.commit,
        data.command,
        data.elapsed_s / 60.0,
        data.load.0,
        data.load.1,
        s.subscribers(),
        s.conns,
        s.streams,
        crate::report::machine(),
    );
    out.push_str(METHOD);
    for feed in FeedKind::ALL {
        let records: Vec<&Record> = data.records.iter().filter(|r| r.feed == feed).collect();
        if records.is_empty() {
            continue;
        }
        let pace = s.feeds[&feed];
        let _ = writeln!(
            out,
            "### {}: {} events measured, one every {} ms, after {} published as fast as \
             delivered\n",
            describe(feed),
            pace.rounds,
            pace.period_ms,
            pace.warm,
        );
        table(&mut out, &records);
        goals(&mut out, feed, &records);
        checks(&mut out, &records);
    }
    out
}

/// How the figures were taken (the same for every run).
const METHOD: &str = "\
Method:

- Each run starts nginx + nchan (the origin) and either sse-relay (its default `[compression]`: \
gzip level 9, zstd level 12, segments of 1024 events / 256 KiB / 30 s) or nginx `gzip on; \
gzip_types text/event-stream;` proxying nchan unbuffered, afresh. Subscribers are h2 streams \
over TLS on loopback asking for the variant's coding in `Accept-Encoding` (none for identity); \
a response whose `Content-Encoding` is not the one asked for fails the run.
- The feeds are seeded: every variant gets the same events. Each event's JSON opens with its \
sequence number and publish time.
- Subscribers join in two halves; after each, the warm-up events are published as fast as they \
are delivered, which takes the relay past a segment boundary so every subscriber is in step \
with the shared bytes when measuring starts. *RSS/subscriber* is the growth of the server's \
VmRSS when the second half joined, per subscriber of it (the topic's compressors were there \
already), each reading taken the settle time after the half's warm-up (full run: 10.5 s, past \
the relay's periodic trim of freed memory); the growth over all subscribers is under the checks.
- Measured events are published one per period and each is waited for by every stream. \
*p50/p99*: receive time of the body frame that completes an event − publish time (taken just \
before the POST to nchan), every delivery. *body B/event*: DATA payload bytes the subscribers \
received, as they came, per delivery; *TLS B/event*: every byte read from their sockets. \
*CPU/delivery*: the server process's user + system time per delivery (the witness's included); \
nchan is another process in both cases. *Client CPU*: this process (client and publisher).
- *Each event gzipped on its own*: every measured event frame of the identity witness gzipped \
alone with flate2 at level 6 (header and trailer included), what per-message compression would \
send; the time is this process's.
- Every stream is decoded (flate2, zstd) and sequence-checked: a lost, duplicated, reordered or \
undecodable event fails the run. The first streams' decoded bytes must equal an identity \
witness stream's events byte for byte.
- Goals: *within identity's spread* is at or below the higher of the relay's identity runs; \
*ahead of nginx* is strictly better.

";

fn describe(feed: FeedKind) -> &'static str {
    match feed {
        FeedKind::Ticks => "Ticks (JSON, ~150 B)",
        FeedKind::Deltas => "LLM delta chunks (chat.completion.chunk JSON, ~250 B)",
        FeedKind::Snapshots => "Snapshots (JSON, 30 KB)",
    }
}

/// The runs of `variant` (successful or not).
fn of<'a>(records: &[&'a Record], variant: Variant) -> Vec<&'a Record> {
    records
        .iter()
        .copied()
        .filter(|r| r.variant == variant)
        .collect()
}

/// A figure over `runs` that succeeded: (lowest, mean, highest).
fn spread(runs: &[&Record], key: &str) -> Option<(f64, f64, f64)> {
    let v: Vec<f64> = runs.iter().filter_map(|r| r.get(key)).collect();
    if v.is_empty() {
        return None;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((lo, mean, hi))
}

fn row_name(r: &Record) -> String {
    let level = match r.variant {
        Variant::RelayGzip => " (level 9)",
        Variant::RelayZstd => " (level 12)",
        Variant::NginxGzip => " (level 1)",
        Variant::RelayIdentity => "",
    };
    match r.variant {
        Variant::RelayIdentity => format!("{}, run {}", r.variant.name(), r.pass),
        _ => format!("{}{level}", r.variant.name()),
    }
}

fn table(out: &mut String, records: &[&Record]) {
    let identity = of(records, Variant::RelayIdentity);
    let base = spread(&identity, "body_bytes_per_event").map(|s| s.1);
    let _ = writeln!(
        out,
        "| variant | body B/event | × identity | TLS B/event | p50 | p99 | CPU/delivery | \
         client CPU/delivery | RSS/subscriber |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    let standalone = spread(&identity, "standalone_gzip_bytes");
    let order = [
        Variant::RelayIdentity,
        Variant::RelayGzip,
        Variant::RelayZstd,
        Variant::NginxGzip,
    ];
    for variant in order {
        if variant == Variant::RelayGzip {
            if let Some((_, bytes, _)) = standalone {
                let us = spread(&identity, "standalone_gzip_us").map(|s| s.1);
                let _ = writeln!(
                    out,
                    "| each event gzipped on its own (level 6, computed) | {} | {} | – | – | – | \
                     {} to gzip one event here | – | – |",
                    fmt(Some(bytes), Unit::Plain),
                    ratio(Some(bytes), base),
                    fmt(us, Unit::MicrosCpu),
                );
            }
        }
        for r in of(records, variant) {
            if let Some(f) = &r.failure {
                let _ = writeln!(
                    out,
                    "| {} | FAILED: {} | | | | | | | |",
                    row_name(r),
                    f.replace('\n', " ").replace('|', "/")
                );
                continue;
            }
            let body = r.get("body_bytes_per_event");
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row_name(r),
                fmt(body, Unit::Plain),
                ratio(body, base),
                fmt(r.get("tls_bytes_per_event"), Unit::Plain),
                fmt(r.get("p50_us"), Unit::Micros),
                fmt(r.get("p99_us"), Unit::Micros),
                fmt(r.get("cpu_per_delivery_us"), Unit::MicrosCpu),
                fmt(r.get("client_cpu_per_delivery_us"), Unit::MicrosCpu),
                fmt(r.get("rss_per_sub_bytes"), Unit::Bytes),
            );
        }
    }
    let _ = writeln!(out);
}

fn ratio(v: Option<f64>, base: Option<f64>) -> String {
    match (v, base) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.3}×", v / b),
        _ => "–".into(),
    }
}

fn mark(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**NOT met**",
        None => "not judged (a run failed or did not run)",
    }
}

fn goals(out: &mut String, feed: FeedKind, records: &[&Record]) {
    let identity = of(records, Variant::RelayIdentity);
    let nginx = of(records, Variant::NginxGzip);
    let _ = writeln!(out, "Goals:\n");
    for variant in [Variant::RelayGzip, Variant::RelayZstd] {
        let runs = of(records, variant);
        if runs.is_empty() {
            continue;
        }
        let name = variant.name();
        let one = |key: &str| spread(&runs, key).map(|s| s.1);
        if feed == FeedKind::Ticks {
            let (v, base) = (
                one("body_bytes_per_event"),
                spread(&identity, "body_bytes_per_event").map(|s| s.1),
            );
            let share = v.zip(base).map(|(v, b)| v / b);
            let _ = writeln!(
                out,
                "- {name}: bytes ≤ {TICKS_GOAL}× identity: {} ({})",
                mark(share.map(|s| s <= TICKS_GOAL)),
                share.map_or("–".into(), |s| format!("{s:.3}×"))
            );
        }
        for (key, what, unit) in [
            ("p99_us", "fan-out p99", Unit::Micros),
            ("rss_per_sub_bytes", "RSS per subscriber", Unit::Bytes),
            ("cpu_per_delivery_us", "CPU per delivery", Unit::MicrosCpu),
        ] {
            let (v, id) = (one(key), spread(&identity, key));
            let _ = writeln!(
                out,
                "- {name}: {what} within identity's spread or below: {} ({} vs identity {})",
                mark(v.zip(id).map(|(v, (_, _, hi))| v <= hi)),
                fmt(v, unit),
                id.map_or("–".into(), |(lo, _, hi)| format!(
                    "{}–{}",
                    fmt(Some(lo), unit),
                    fmt(Some(hi), unit)
                )),
            );
        }
        let mut ahead = Vec::new();
        let mut all = Some(true);
        for (key, what, unit) in [
            ("body_bytes_per_event", "bytes", Unit::Plain),
            ("p99_us", "p99", Unit::Micros),
            ("cpu_per_delivery_us", "CPU/delivery", Unit::MicrosCpu),
            ("rss_per_sub_bytes", "RSS/subscriber", Unit::Bytes),
        ] {
            let (v, n) = (one(key), spread(&nginx, key).map(|s| s.1));
            let met = v.zip(n).map(|(v, n)| v < n);
            all = match (all, met) {
                (Some(a), Some(m)) => Some(a && m),
                _ => None,
            };
            ahead.push(format!(
                "{what} {} vs {} ({})",
                fmt(v, unit),
                fmt(n, unit),
                if met == Some(true) {
                    "ahead"
                } else {
                    "not ahead"
                }
            ));
        }
        let _ = writeln!(
            out,
            "- {name}: every figure ahead of nginx's gzip: {} ({})",
            mark(all),
            ahead.join("; ")
        );
    }
    let _ = writeln!(out);
}

fn checks(out: &mut String, records: &[&Record]) {
    let mut lines = Vec::new();
    for r in records.iter().filter(|r| r.failure.is_none()) {
        let streams = r.get("verified_streams").unwrap_or(0.0);
        let events = r.get("verified_events").unwrap_or(0.0);
        let mut line = format!(
            "{}: {streams:.0} sample streams decoded to the witness's {:.0} events exactly",
            row_name(r),
            events / streams.max(1.0)
        );
        let _ = write!(
            line,
            "; per delivery {} DATA frames and {} TLS records",
            fmt(r.get("body_frames_per_event"), Unit::Plain),
            fmt(r.get("tls_records_per_event"), Unit::Plain)
        );
        let (shared, own) = (
            r.get("compressed_shared_bytes_per_event"),
            r.get("compressed_own_bytes_per_event"),
        );
        if r.variant != Variant::RelayIdentity && (shared.is_some() || own.is_some()) {
            let _ = write!(
                line,
                "; compressed bytes per delivery, shared {} and own {}",
                fmt(shared, Unit::Plain),
                fmt(own, Unit::Plain)
            );
        }
        if let Some(total) = r.get("rss_total_per_sub_bytes") {
            let _ = write!(
                line,
                "; RSS growth over the run per subscriber {}",
                fmt(Some(total), Unit::Bytes)
            );
        }
        if let Some(b) = r.get("buffered_growth_bytes") {
            let _ = write!(
                line,
                "; the relay's rings grew by {} while the second half joined",
                fmt(Some(b), Unit::Bytes)
            );
        }
        if let Some(o) = r.get("origin_rss_per_sub_bytes") {
            let _ = write!(
                line,
                "; nchan behind it: {} RSS per subscriber",
                fmt(Some(o), Unit::Bytes)
            );
        }
        let _ = write!(
            line,
            "; other processes used {} of the cores",
            fmt(r.get("other_cpu_share"), Unit::Percent)
        );
        lines.push(line);
    }
    let _ = writeln!(out, "Checks and context:\n");
    for l in lines {
        let _ = writeln!(out, "- {l}");
    }
    let _ = writeln!(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::Values;

    fn record(variant: Variant, pass: u32, figures: &[(&str, f64)]) -> Record {
        Record {
            feed: FeedKind::Ticks,
            variant,
            pass,
            failure: None,
            values: figures
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<Values>(),
            tls: None,
        }
    }

    fn figures(bytes: f64, p99: f64) -> Vec<(&'static str, f64)> {
        vec![
            ("body_bytes_per_event", bytes),
            ("p99_us", p99),
            ("rss_per_sub_bytes", 900.0),
            ("cpu_per_delivery_us", 1.0),
        ]
    }

    #[test]
    fn goals_are_judged_against_identitys_spread_and_nginx() {
        let records = [
            record(Variant::RelayIdentity, 1, &figures(200.0, 1000.0)),
            record(Variant::RelayIdentity, 2, &figures(200.0, 1400.0)),
            record(Variant::RelayGzip, 1, &figures(50.0, 1300.0)),
            record(Variant::RelayZstd, 1, &figures(70.0, 1500.0)),
            record(Variant::NginxGzip, 1, &figures(90.0, 2000.0)),
        ];
        let refs: Vec<&Record> = records.iter().collect();
        let mut out = String::new();
        goals(&mut out, FeedKind::Ticks, &refs);
        assert!(
            out.contains("relay shared gzip: bytes ≤ 0.3× identity: met (0.250×)"),
            "{out}"
        );
        assert!(out.contains("relay shared zstd: bytes ≤ 0.3× identity: **NOT met** (0.350×)"));
        assert!(
            out.contains("relay shared gzip: fan-out p99 within identity's spread or below: met")
        );
        assert!(out.contains(
            "relay shared zstd: fan-out p99 within identity's spread or below: **NOT met**"
        ));
        // Equal RSS and CPU are not ahead of nginx.
        assert!(out.contains("relay shared gzip: every figure ahead of nginx's gzip: **NOT met**"));
    }

    #[test]
    fn a_failed_run_gives_no_figure_and_no_verdict() {
        let mut failed = record(Variant::RelayGzip, 1, &figures(10.0, 10.0));
        failed.failure = Some("1 subscriber streams did not decode".into());
        let identity = record(Variant::RelayIdentity, 1, &figures(200.0, 1000.0));
        let refs = vec![&identity, &failed];
        let mut out = String::new();
        goals(&mut out, FeedKind::Ticks, &refs);
        assert!(
            out.contains("relay shared gzip: bytes ≤ 0.3× identity: not judged"),
            "{out}"
        );
        let mut table_text = String::new();
        table(&mut table_text, &refs);
        assert!(table_text.contains("FAILED: 1 subscriber streams did not decode"));
    }
}
