//! The compression benchmark (`cargo bench --bench compression`): what the relay's shared
//! per-topic compression puts on the wire and costs, against its own identity streams,
//! against each event gzipped on its own, and against nginx `gzip on` in front of nchan. Three
//! feeds ([`feeds`]), each published to a fresh server per variant ([`run`], what a run is in
//! [`model`]; the gzip proxy in [`peer`]) with the fan-out benchmark's client, publisher and CPU/RSS readings; the relay's
//! identity runs first and again last, so its spread is known. Every stream is decoded and its
//! events checked for order, and sample streams are compared byte for byte with an identity
//! witness ([`verify`]); [`report`] prints the tables and goals and writes them as markdown.
//! It owns the runs and the report, never a server's code or settings beyond its config file.

mod feeds;
mod model;
mod peer;
mod report;
mod run;
mod verify;

pub use feeds::{Feed, FeedKind};

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Parser;

use crate::procs;
use model::{Record, Sizes, Variant};
use run::Rig;

/// Compression benchmark: sse-relay's shared gzip and zstd vs identity, per-event gzip and
/// nginx gzip in front of nchan.
#[derive(Parser, Debug)]
#[command(name = "compression")]
struct Args {
    /// The smoke run (about 2 minutes); the default is the full run (about 10 minutes).
    #[arg(long)]
    quick: bool,
    /// Feeds to run (comma-separated; default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    feeds: Vec<FeedKind>,
    /// Variants to run (comma-separated; default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    variants: Vec<Variant>,
    /// Runs of the relay's identity variant per feed: the first before the other variants,
    /// the rest after them (their spread is what the goals compare with).
    #[arg(long, default_value_t = 2)]
    identity_runs: u32,
    /// Pause before each RSS reading, ms (default 10500, --quick 500: the relay hands freed
    /// memory back every 10 s when its allocator holds over 16 MiB free).
    #[arg(long, value_name = "MS")]
    settle_ms: Option<u64>,
    /// The relay binary (`cargo build --release`; default
    /// `$CARGO_TARGET_DIR/release/sse-relay`, else `target/release/sse-relay`).
    #[arg(long)]
    relay_bin: Option<PathBuf>,
    /// Working directory for configs, logs and the raw results.
    #[arg(long, default_value = "target/compression-bench")]
    work_dir: PathBuf,
    /// Where to write the markdown (default: `<work dir>/<mode>/COMPRESSION.md`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The command line to print in the report.
    #[arg(long, default_value = "cargo bench --bench compression")]
    command: String,
    /// Rewrite the report from a saved `compression.json` (no measuring).
    #[arg(long, value_name = "JSON")]
    replot: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Everything the report is made from (saved as `compression.json`; `--replot` reads it).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct RunData {
    /// `quick` or `full`.
    pub mode: String,
    /// The command line.
    pub command: String,
    /// When it ran.
    pub date: String,
    /// The relay's commit.
    pub commit: String,
    /// Load average before and after.
    pub load: (String, String),
    /// Wall time of all runs, s.
    pub elapsed_s: f64,
    /// Sizes used.
    pub sizes: Sizes,
    /// Every run.
    pub records: Vec<Record>,
}

/// The compression benchmark's entry point (`cargo bench --bench compression -- ARGS`).
pub fn main() -> Result<()> {
    procs::run_guarded(run(Args::parse()))
}

async fn run(args: Args) -> Result<()> {
    let mode = if args.quick { "quick" } else { "full" };
    let work = std::path::absolute(&args.work_dir)?.join(mode);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| work.join("COMPRESSION.md"));
    if let Some(saved) = &args.replot {
        let text =
            std::fs::read_to_string(saved).with_context(|| format!("read {}", saved.display()))?;
        return report::write(&out, &serde_json::from_str(&text)?);
    }
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clean {}", work.display()))?;
    }
    let relay_bin = args.relay_bin.clone().unwrap_or_else(|| {
        let dir =
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), PathBuf::from);
        dir.join("release/sse-relay")
    });
    let mut sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    if let Some(ms) = args.settle_ms {
        sizes.settle_ms = ms;
    }
    let rig = Rig::new(sizes, work.clone(), std::path::absolute(relay_bin)?)?;
    let feeds = if args.feeds.is_empty() {
        FeedKind::ALL.to_vec()
    } else {
        args.feeds.clone()
    };
    let variants = if args.variants.is_empty() {
        Variant::ALL.to_vec()
    } else {
        args.variants.clone()
    };
    let load_before = crate::report::load_average();
    let started = Instant::now();
    let mut records = Vec::new();
    for feed in feeds {
        for (variant, pass) in order(&variants, args.identity_runs) {
            records.push(rig.run(feed, variant, pass).await);
        }
    }
    let data = RunData {
        mode: mode.into(),
        command: args.command.clone(),
        date: crate::report::now(),
        commit: git_commit(),
        load: (load_before, crate::report::load_average()),
        elapsed_s: started.elapsed().as_secs_f64(),
        sizes: rig.sizes.clone(),
        records,
    };
    std::fs::write(
        work.join("compression.json"),
        serde_json::to_string_pretty(&data)?,
    )?;
    report::write(&out, &data)?;
    match data.records.iter().find(|r| r.failure.is_some()) {
        Some(r) => anyhow::bail!(
            "{} on {} failed: {}",
            r.variant.name(),
            r.feed.name(),
            r.failure.as_deref().unwrap_or("")
        ),
        None => Ok(()),
    }
}

/// The runs of one feed: the relay's identity first, then the other variants, then identity's
/// further runs.
fn order(variants: &[Variant], identity_runs: u32) -> Vec<(Variant, u32)> {
    let identity = variants.contains(&Variant::RelayIdentity);
    let mut runs = Vec::new();
    if identity && identity_runs > 0 {
        runs.push((Variant::RelayIdentity, 1));
    }
    runs.extend(
        variants
            .iter()
            .filter(|&&v| v != Variant::RelayIdentity)
            .map(|&v| (v, 1)),
    );
    if identity {
        runs.extend((2..=identity_runs).map(|pass| (Variant::RelayIdentity, pass)));
    }
    runs
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_runs_first_and_last() {
        assert_eq!(
            order(&Variant::ALL, 2),
            vec![
                (Variant::RelayIdentity, 1),
                (Variant::RelayGzip, 1),
                (Variant::RelayZstd, 1),
                (Variant::NginxGzip, 1),
                (Variant::RelayIdentity, 2),
            ]
        );
        assert_eq!(
            order(&[Variant::NginxGzip], 2),
            vec![(Variant::NginxGzip, 1)]
        );
    }
}
