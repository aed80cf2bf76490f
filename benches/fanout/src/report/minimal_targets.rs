//! The targets against the minimal hyper server, judged from one run's records: sse-relay against the minimal hyper
//! server (`minimal.rs`, what a user would write without us) and nchan, per subscriber and per
//! delivery. Each row is met or not from this run's figures alone; a target that needs a
//! figure the run lacks (a target not run, a failed scenario) is not met.

use super::figures::{find, fmt, ratio, value, Unit};
use super::targets::{verdicts as main_verdicts, Verdict};
use crate::scenarios::{Record, Sizes, TargetKind};

/// Printed above the table.
pub const NOTE: &str = "Same client, same publisher, same run; the minimal server is \
`benches/fanout/src/minimal.rs` (hyper's auto builder, tokio-rustls, one `broadcast` per topic).";

/// The records of `scenario` (at `subs` subscribers, if given) on sse-relay, the minimal
/// server and nchan.
fn targets<'a>(
    records: &'a [Record],
    scenario: &str,
    subs: Option<u64>,
) -> (Option<&'a Record>, Option<&'a Record>, Option<&'a Record>) {
    (
        find(records, scenario, TargetKind::Relay, subs),
        find(records, scenario, TargetKind::HyperMinimal, subs),
        find(records, scenario, TargetKind::Nchan, subs),
    )
}

/// The rows of the targets table against the minimal hyper server.
pub fn verdicts(records: &[Record], sizes: &Sizes) -> Vec<Verdict> {
    let mut v = Vec::new();
    let top = sizes.sweep.last().copied().unwrap_or(0) as u64;
    let (relay, minimal, nchan) = targets(records, "sweep", Some(top));
    let key = "rss_per_sub_bytes";
    let (to_minimal, to_nchan) = (ratio(relay, minimal, key), ratio(relay, nchan, key));
    v.push(Verdict {
        scenario: format!("idle RSS per subscriber, {top} conn × 1 stream"),
        target: "≤ 1.0× the minimal hyper server, ≤ 0.6× nchan".into(),
        figure: format!(
            "{} vs minimal {} ({}), nchan {} ({})",
            fmt(value(relay, key), Unit::Bytes),
            fmt(value(minimal, key), Unit::Bytes),
            fmt(to_minimal, Unit::Ratio),
            fmt(value(nchan, key), Unit::Bytes),
            fmt(to_nchan, Unit::Ratio)
        ),
        met: to_minimal.zip(to_nchan).map(|(m, n)| m <= 1.0 && n <= 0.6),
    });
    multiplexed_verdicts(&mut v, records, sizes);
    big_and_kept_verdicts(&mut v, records, sizes, relay);
    v
}

/// RSS per extra stream, CPU per delivery and p99 of the multiplexed scenario.
fn multiplexed_verdicts(v: &mut Vec<Verdict>, records: &[Record], sizes: &Sizes) {
    let (mrelay, mminimal, mnchan) = targets(records, "multiplexed", None);
    let shape = mrelay.map(|r| r.shape.as_str()).unwrap_or("");
    let extra = value(mrelay, "rss_per_extra_stream_bytes");
    v.push(Verdict {
        scenario: format!("RSS per extra multiplexed stream, {shape}"),
        target: "≤ 0.8 KB".into(),
        figure: format!(
            "{} (minimal {})",
            fmt(extra, Unit::Bytes),
            fmt(value(mminimal, "rss_per_extra_stream_bytes"), Unit::Bytes)
        ),
        met: extra.map(|e| e <= 800.0),
    });
    let key = "cpu_per_delivery_us";
    let cpu = value(mrelay, key);
    let cpu_ratio = ratio(mrelay, mminimal, key);
    v.push(Verdict {
        scenario: format!("server CPU per delivery, {shape}"),
        target: "≤ 1.0 µs and ≤ 0.25× the minimal hyper server".into(),
        figure: format!(
            "{} vs minimal {} ({})",
            fmt(cpu, Unit::MicrosCpu),
            fmt(value(mminimal, key), Unit::MicrosCpu),
            fmt(cpu_ratio, Unit::Ratio)
        ),
        met: cpu.zip(cpu_ratio).map(|(c, q)| c <= 1.0 && q <= 0.25),
    });
    let p = ratio(mrelay, mnchan, "p99_us");
    v.push(Verdict {
        scenario: format!(
            "1 event → {} subscribers over {} connections, p99",
            mrelay.map(|r| r.subscribers).unwrap_or(0),
            sizes.mux.0
        ),
        target: "≤ 0.33× nchan".into(),
        figure: format!(
            "{} vs nchan {} ({}), minimal {}",
            fmt(value(mrelay, "p99_us"), Unit::Micros),
            fmt(value(mnchan, "p99_us"), Unit::Micros),
            fmt(p, Unit::Ratio),
            fmt(value(mminimal, "p99_us"), Unit::Micros)
        ),
        met: p.map(|p| p <= 0.33),
    });
}

/// The 100k-subscriber scenario, and the main targets' rows that must stay met (`relay` is
/// the largest sweep's relay record, for its p99).
fn big_and_kept_verdicts(
    v: &mut Vec<Verdict>,
    records: &[Record],
    sizes: &Sizes,
    relay: Option<&Record>,
) {
    let top = sizes.sweep.last().copied().unwrap_or(0) as u64;
    let big = find(records, "big", TargetKind::Relay, None);
    let (total, p99) = (value(big, "rss_loaded_bytes"), value(big, "p99_us"));
    v.push(Verdict {
        scenario: format!(
            "{} subscribers, {} connections × {} streams",
            sizes.big.0 * sizes.big.1,
            sizes.big.0,
            sizes.big.1
        ),
        target: "≤ 150 MB RSS, one event p99 ≤ 150 ms".into(),
        figure: format!(
            "RSS {}, p99 {}",
            fmt(total, Unit::Bytes),
            fmt(p99, Unit::Micros)
        ),
        met: total.zip(p99).map(|(t, p)| t <= 150e6 && p <= 150_000.0),
    });

    // "Everything met today": the main targets' sustained, burst and origin-subscription rows.
    let kept: Vec<Verdict> = main_verdicts(records, sizes)
        .into_iter()
        .filter(|r| {
            ["sustained", "burst", "origin connections"]
                .iter()
                .any(|s| r.scenario.starts_with(s))
        })
        .collect();
    v.push(Verdict {
        scenario: "sustained, burst, one origin subscription (the main targets' rows)".into(),
        target: "still met".into(),
        figure: format!(
            "{} of {} met; 1 event → {top} subscribers p99 {}",
            kept.iter().filter(|r| r.met == Some(true)).count(),
            kept.len(),
            fmt(value(relay, "p99_us"), Unit::Micros)
        ),
        met: Some(!kept.is_empty() && kept.iter().all(|r| r.met == Some(true))),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::record;
    use TargetKind::{HyperMinimal, Nchan, Relay};

    /// Every relay figure exactly at its target; the main targets' kept rows met.
    fn at_targets() -> Vec<Record> {
        let rss = "rss_per_sub_bytes";
        vec![
            record("sweep", Nchan, 9000, &[(rss, 50_000.0)]),
            record("sweep", HyperMinimal, 9000, &[(rss, 30_000.0)]),
            record(
                "sweep",
                Relay,
                9000,
                &[
                    (rss, 30_000.0),
                    ("p99_us", 90_000.0),
                    ("origin_subscribers", 1.0),
                ],
            ),
            record("multiplexed", Nchan, 10_000, &[("p99_us", 90_000.0)]),
            record(
                "multiplexed",
                HyperMinimal,
                10_000,
                &[("cpu_per_delivery_us", 4.0), ("p99_us", 60_000.0)],
            ),
            record(
                "multiplexed",
                Relay,
                10_000,
                &[
                    ("rss_per_extra_stream_bytes", 800.0),
                    ("cpu_per_delivery_us", 1.0),
                    ("p99_us", 29_700.0),
                ],
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
                &[("rss_loaded_bytes", 150e6), ("p99_us", 150_000.0)],
            ),
        ]
    }

    #[test]
    fn figures_at_their_targets_are_met() {
        for v in verdicts(&at_targets(), &Sizes::full()) {
            assert_eq!(v.met, Some(true), "{}: {}", v.scenario, v.figure);
        }
    }

    #[test]
    fn more_memory_than_the_minimal_server_is_not_met() {
        let mut records = at_targets();
        records[2]
            .values
            .insert("rss_per_sub_bytes".into(), 30_001.0);
        let v = verdicts(&records, &Sizes::full());
        assert_eq!(v[0].met, Some(false), "{}", v[0].figure);
        assert!(v[1..].iter().all(|r| r.met == Some(true)));
    }

    #[test]
    fn cpu_within_the_absolute_bound_but_not_a_quarter_of_the_minimal_is_not_met() {
        let mut records = at_targets();
        records[4].values.insert("cpu_per_delivery_us".into(), 3.9);
        let v = verdicts(&records, &Sizes::full());
        assert_eq!(v[2].met, Some(false), "{}", v[2].figure);
    }

    #[test]
    fn without_the_minimal_server_its_rows_have_no_figure() {
        let records: Vec<Record> = at_targets()
            .into_iter()
            .filter(|r| r.target != HyperMinimal)
            .collect();
        let v = verdicts(&records, &Sizes::full());
        assert_eq!(v[0].met, None);
        assert_eq!(v[2].met, None);
    }

    #[test]
    fn a_failed_sustained_run_breaks_the_still_met_row() {
        let mut records = at_targets();
        records[6].failure = Some("lost 3 events".into());
        let v = verdicts(&records, &Sizes::full());
        assert_eq!(v.last().map(|r| r.met), Some(Some(false)));
    }
}
