//! The command line: parses the arguments, runs the scenarios (or one ad-hoc fan-out, or the
//! cluster benchmark) and writes the report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;

use crate::client::Proto;
use crate::groups::ClusterSizes;
use crate::scenarios::{Bench, Record, Scenario, Sizes, TargetKind};
use crate::{chart, cluster, minimal, procs, report};

/// Fan-out benchmark of sse-relay against nginx + nchan.
#[derive(Parser, Debug)]
#[command(
    name = "fanout",
    about = "Fan-out benchmark: sse-relay vs nginx + nchan, same client, same publisher"
)]
struct Args {
    /// Smaller sizes for a smoke run (under 3 minutes); the default is the full run (about 9 min of scenarios on 2 cores).
    #[arg(long)]
    quick: bool,
    /// Scenarios to run (comma-separated); default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Targets to run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["nchan", "relay", "hyper-minimal"])]
    targets: Vec<TargetKind>,
    /// Also profile the relay under valgrind's callgrind and put the hot spots in the report.
    #[arg(long)]
    profile: bool,
    /// Instead of the scenarios: one single-event fan-out to S subscribers over C connections
    /// (S/C streams each), printed, no report.
    #[arg(long, value_name = "S")]
    subscribers: Option<usize>,
    /// Connections for `--subscribers` (default: S, one each).
    #[arg(long, value_name = "C")]
    connections: Option<usize>,
    /// Protocol for `--subscribers` (h1 needs C = S).
    #[arg(long, value_enum, default_value = "h2")]
    protocol: Proto,
    /// Events (rounds) for `--subscribers`.
    #[arg(long, default_value_t = 10)]
    events: u64,
    /// For `--subscribers`: run the relay (and the minimal hyper server) under this command
    /// (e.g. `valgrind --tool=massif --massif-out-file=/tmp/massif.out`); it is ended with
    /// SIGTERM so the tool writes its output.
    #[arg(long, default_value = "")]
    relay_wrapper: String,
    /// Instead of the scenarios: three relays in cluster mode (127.0.0.11–13, static peers)
    /// vs one relay, same subscribers and topics: origin subscriptions, owner vs peer-hop
    /// latency, takeover after the owner of the most topics is killed. Printed and saved as
    /// `cluster.json` in the work dir; RESULTS.md is not touched.
    #[arg(long)]
    cluster: bool,
    /// For `--cluster`: the relays' `cluster.refresh_ms`, one cluster each (default 5000,1000).
    #[arg(long, value_delimiter = ',', value_name = "MS")]
    cluster_refresh_ms: Vec<u64>,
    /// For `--cluster`: subscribers per topic, all relays together (a multiple of 3 × the
    /// streams per connection; default 3000, --quick 300).
    #[arg(long, value_name = "N")]
    cluster_subscribers: Option<usize>,
    /// For `--cluster`: events per second per topic of the steady-rate latency measurement
    /// and around the kill (default 2, --quick 20: 60,000 deliveries/s either way).
    #[arg(long, value_name = "R")]
    cluster_rate: Option<u64>,
    /// Padding bytes in each event's data.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// The relay binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/sse-relay")]
    relay_bin: PathBuf,
    /// Working directory for configs, logs and raw results.
    #[arg(long, default_value = "target/fanout-bench")]
    work_dir: PathBuf,
    /// Where to write RESULTS.md and the chart (default: `benches/` for the full run,
    /// `<work dir>/quick/` for --quick).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The command line to print in the report.
    #[arg(long, default_value = "bash benches/run.sh")]
    command: String,
    /// Rewrite the report and chart from a saved `run.json` (no measuring).
    #[arg(long, value_name = "RUN_JSON")]
    replot: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The benchmark's entry point (the `fanout` binary and `cargo bench --bench fanout`).
pub fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(minimal::ARG) {
        return minimal::serve(&argv[2..]);
    }
    let args = Args::parse();
    procs::run_guarded(run(args))
}

async fn run(args: Args) -> Result<()> {
    let sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    if let Some(saved) = &args.replot {
        let text =
            std::fs::read_to_string(saved).with_context(|| format!("read {}", saved.display()))?;
        return write_report(&args, serde_json::from_str(&text)?);
    }
    let mode = match (args.cluster, args.quick) {
        (true, true) => "cluster-quick",
        (true, false) => "cluster",
        (false, true) => "quick",
        (false, false) => "full",
    };
    let work = std::path::absolute(&args.work_dir)?.join(mode);
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clean {}", work.display()))?;
    }
    let relay_bin = std::path::absolute(&args.relay_bin)?;
    let bench = Bench::new(sizes, work.clone(), relay_bin, args.payload)?;
    if let Some(s) = args.subscribers {
        return custom(&bench, &args, s).await;
    }
    if args.cluster {
        return cluster_mode(&bench, &args).await;
    }
    let scenarios = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    let started = Instant::now();
    let mut records: Vec<Record> = Vec::new();
    for scenario in scenarios {
        for &target in &args.targets {
            records.extend(bench.run(scenario, target).await);
        }
    }
    let elapsed = started.elapsed();
    let mut profiles = Vec::new();
    if args.profile {
        for index in 0..bench.sizes.profile.len() {
            eprintln!("== profile {index}: sse-relay under callgrind");
            let profile = match bench.profile(index).await {
                Ok(out) => report::annotate(&out),
                Err(e) => Err(e),
            };
            if let Err(e) = &profile {
                eprintln!("   profile FAILED: {e:#}");
            }
            profiles.push((
                bench.sizes.profile[index],
                profile.map_err(|e| format!("{e:#}")),
            ));
        }
    }
    let data = RunData {
        mode: if args.quick { "quick" } else { "full" }.into(),
        date: report::now(),
        elapsed_s: elapsed.as_secs_f64(),
        sizes: bench.sizes.clone(),
        records,
        profiles,
    };
    std::fs::write(work.join("run.json"), serde_json::to_string_pretty(&data)?)?;
    write_report(&args, data)
}

/// Everything a report is made from (saved as `run.json` in the work dir; `--replot` reads it).
#[derive(serde::Serialize, serde::Deserialize)]
struct RunData {
    mode: String,
    date: String,
    elapsed_s: f64,
    sizes: Sizes,
    records: Vec<Record>,
    profiles: Vec<report::ProfileRun>,
}

fn write_report(args: &Args, data: RunData) -> Result<()> {
    let quick = data.mode == "quick";
    let work = std::path::absolute(&args.work_dir)?.join(&data.mode);
    let out = args.out.clone().unwrap_or_else(|| {
        if quick {
            work.clone()
        } else {
            PathBuf::from("benches")
        }
    });
    std::fs::create_dir_all(&out)?;
    let chart = out.join("fanout.svg");
    chart::draw(&data.records, &chart)?;
    let context = report::Context {
        mode: if quick { "quick" } else { "full" },
        command: args.command.clone(),
        sizes: &data.sizes,
        elapsed: Duration::from_secs_f64(data.elapsed_s),
        relay_bin: &args.relay_bin,
        chart: "fanout.svg",
        payload: args.payload,
        date: data.date.clone(),
    };
    let path = out.join("RESULTS.md");
    report::write(&path, &context, &data.records, data.profiles)?;
    eprintln!("wrote {} and {}", path.display(), chart.display());
    Ok(())
}

/// The cluster benchmark: runs, prints every figure, saves `cluster.json` in the work dir.
async fn cluster_mode(bench: &Bench, args: &Args) -> Result<()> {
    let mut sizes = if args.quick {
        ClusterSizes::quick()
    } else {
        ClusterSizes::full()
    };
    if !args.cluster_refresh_ms.is_empty() {
        sizes.refresh_ms = args.cluster_refresh_ms.clone();
    }
    if let Some(n) = args.cluster_subscribers {
        sizes.per_topic = n;
    }
    if let Some(rate) = args.cluster_rate {
        sizes.rate = rate;
    }
    let started = Instant::now();
    let load_before = report::load_average();
    let records = cluster::run(bench, &sizes).await;
    let elapsed = started.elapsed();
    let load_after = report::load_average();
    println!("cluster benchmark ({:.0?}): {sizes:?}", elapsed);
    println!("load average before: {load_before}; after: {load_after}");
    print_records(&records);
    let saved = serde_json::json!({
        "command": args.command,
        "date": report::now(),
        "elapsed_s": elapsed.as_secs_f64(),
        "load_before": load_before,
        "load_after": load_after,
        "sizes": sizes,
        "records": records,
    });
    let path = bench.work.join("cluster.json");
    std::fs::write(&path, serde_json::to_string_pretty(&saved)?)?;
    eprintln!("wrote {}", path.display());
    match records.iter().find_map(|r| r.failure.as_ref()) {
        Some(f) => anyhow::bail!("the cluster benchmark failed: {f}"),
        None => Ok(()),
    }
}

/// Prints each record's shape and figures (or failure).
fn print_records(records: &[Record]) {
    for r in records {
        println!("{}: {}", r.scenario, r.shape);
        if let Some(f) = &r.failure {
            println!("  FAILED: {f}");
        }
        for (k, v) in &r.values {
            println!("  {k:<28} {v:.3}");
        }
    }
}

/// One ad-hoc fan-out measurement, printed.
async fn custom(bench: &Bench, args: &Args, s: usize) -> Result<()> {
    let c = args.connections.unwrap_or(s);
    for &target in &args.targets {
        let wrapper: Vec<String> = args
            .relay_wrapper
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let r = bench
            .custom(target, s, c, args.protocol, args.events, &wrapper)
            .await;
        println!(
            "{}: {} subscribers over {c} connections ({:?})",
            target.name(),
            s,
            args.protocol
        );
        match &r.failure {
            Some(f) => println!("  FAILED: {f}"),
            None => {
                for (k, v) in &r.values {
                    println!("  {k:<28} {v:.3}");
                }
            }
        }
    }
    Ok(())
}
