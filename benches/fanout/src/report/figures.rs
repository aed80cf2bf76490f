//! Looking up a figure in the records and printing it: the record of a scenario on a target,
//! a figure (none when the scenario failed), a ratio, and their text with units.

use crate::scenarios::{Record, TargetKind};

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

pub(crate) fn pair<'a>(
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

pub(crate) fn failure(r: Option<&Record>) -> Option<String> {
    match r {
        None => Some("not run".into()),
        Some(r) => r
            .failure
            .as_ref()
            .map(|f| format!("FAILED: {}", f.replace('\n', " "))),
    }
}
