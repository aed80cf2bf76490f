//! The targets table: each target of the fan-out benchmark, this run's figure for it, and
//! whether it is met (a target whose figure is missing or whose scenario failed is not).

use super::figures::{failure, fmt, pair, ratio, value, Unit};
use crate::scenarios::{Record, Sizes, TargetKind};

/// One row of a targets table.
pub(crate) struct Verdict {
    pub(crate) scenario: String,
    pub(crate) target: String,
    pub(crate) figure: String,
    pub(crate) met: Option<bool>,
}

/// A verdict's mark in the table.
pub(super) fn mark(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**NOT met**",
        None => "**NOT met** (no figure)",
    }
}

/// The rows of the targets table, in order: memory and single-event fan-out, then the loaded
/// scenarios, then the origin subscriptions.
pub(crate) fn verdicts(records: &[Record], sizes: &Sizes) -> Vec<Verdict> {
    let mut v = Vec::new();
    fan_out_verdicts(&mut v, records, sizes);
    load_verdicts(&mut v, records, sizes);
    v.push(origin_verdict(records));
    v
}

/// Idle RSS per subscriber and per extra stream, single-event fan-out p99 (one connection per
/// subscriber and multiplexed), relay CPU per delivery.
fn fan_out_verdicts(v: &mut Vec<Verdict>, records: &[Record], sizes: &Sizes) {
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
}

/// The sustained rate, the burst and the 100k-subscriber scenario.
fn load_verdicts(v: &mut Vec<Verdict>, records: &[Record], sizes: &Sizes) {
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
}

/// Exactly one origin subscription in every relay scenario that counted them.
fn origin_verdict(records: &[Record]) -> Verdict {
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
    Verdict {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::record;

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

    /// A benchmark that loses events reports failure, not a number.
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
