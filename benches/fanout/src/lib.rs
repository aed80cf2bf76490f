//! Fan-out benchmark: sse-relay side by side with nginx + nchan and with a minimal fan-out
//! server written directly on hyper ([`minimal`]), same run, same client, same publisher. A
//! load generator ([`client`]: hyper + rustls, C TLS connections × S/C h2 streams, or
//! HTTP/1.1) subscribes to each target; one HTTP publisher ([`publisher`]) POSTs events
//! carrying their publish time to nchan; every delivery's latency goes into an HDR histogram
//! and every stream is checked for complete, in-order delivery (a lost event fails the
//! scenario). [`report`] writes `RESULTS.md`, [`chart`] the chart. `--cluster` measures a
//! three-relay cluster against one relay instead ([`cluster`]) and only prints and saves its
//! figures.
//!
//! `benches/run.sh` is the one-command entry point; it runs this crate's `fanout` binary from
//! the repository root. `cargo bench --bench fanout -- ARGS` in the root runs the same program.
//! The compression benchmark ([`compression_main`], `cargo bench --bench compression`) reuses
//! the same client, publisher and readings, with subscribers that ask for a content coding.
//!
//! The unit tests (`cargo test -p fanout-bench`) check the instrument itself: that a lost,
//! duplicated or reordered event is caught, that TLS records are counted right in any split,
//! and that a failed scenario is reported as failed, never as a figure.

mod chart;
mod cli;
mod client;
mod cluster;
mod compression;
mod groups;
mod minimal;
mod peers;
/// Shared with the root package's tests: a throw-away CA for the cluster's peer links.
#[path = "../../../tests/support/pki.rs"]
mod pki;
mod procs;
mod publisher;
mod report;
mod scenarios;
mod steady;
mod takeover;

pub use cli::main;
pub use compression::main as compression_main;
/// The compression benchmark's seeded feeds, also compressed by the root's `levels` bench.
pub use compression::{Feed, FeedKind};
