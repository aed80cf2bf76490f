//! One table per scenario: each figure for sse-relay and nchan, their ratio, and the minimal
//! hyper server's column when it ran the same scenario and size.

use std::fmt::Write as _;

use super::figures::{failure, find, fmt, pair, ratio, value, Unit};
use crate::scenarios::{Record, Sizes, TargetKind};

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
/// size, its column and the ratio to it ("what you would get without us").
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

/// The rows of the sweep's tables (one per size).
const SWEEP_ROWS: &[&[Row]] = &[
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
];

/// The other scenarios' tables, in run order: heading, scenario, rows.
const TABLES: &[(&str, &str, &[&[Row]])] = &[
    (
        "Multiplexed streams",
        "multiplexed",
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
    ),
    (
        "HTTP/1.1, one connection per subscriber",
        "http1",
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
    ),
    (
        "Sustained rate",
        "sustained",
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
    ),
    (
        "Burst",
        "burst",
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
    ),
    (
        "Connection ramp",
        "ramp",
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
    ),
    (
        "The big one",
        "big",
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
    ),
];

/// The scenarios section: the sweep's tables (one per size), then one table per scenario.
pub(super) fn scenario_tables(out: &mut String, records: &[Record], sizes: &Sizes) {
    let _ = writeln!(out, "## Scenarios\n");
    let _ = writeln!(
        out,
        "### Idle RSS and single-event fan-out, one connection per subscriber\n"
    );
    for &s in &sizes.sweep {
        let (relay, nchan) = pair(records, "sweep", Some(s as u64));
        table(out, records, relay, nchan, SWEEP_ROWS);
    }
    for &(heading, scenario, rows) in TABLES {
        let _ = writeln!(out, "### {heading}\n");
        let (relay, nchan) = pair(records, scenario, None);
        table(out, records, relay, nchan, rows);
    }
}
