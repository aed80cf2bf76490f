//! The fan-out benchmark's instrument (`benches/fanout/`), tested: its modules compiled here
//! with their unit tests, since cargo never runs the tests of a `harness = false` bench. They
//! check that a lost, duplicated or reordered event is caught, that TLS records are counted
//! right in any split, and that a failed scenario is reported as failed, never as a figure.

#![allow(dead_code)]

#[path = "../benches/fanout/chart.rs"]
mod chart;
#[path = "../benches/fanout/client.rs"]
mod client;
#[path = "../benches/fanout/cluster.rs"]
mod cluster;
#[path = "../benches/fanout/minimal.rs"]
mod minimal;
#[path = "../benches/fanout/minimal_targets.rs"]
mod minimal_targets;
#[path = "../benches/fanout/peers.rs"]
mod peers;
#[path = "support/pki.rs"]
mod pki;
#[path = "../benches/fanout/procs.rs"]
mod procs;
#[path = "../benches/fanout/publisher.rs"]
mod publisher;
#[path = "../benches/fanout/report.rs"]
mod report;
#[path = "../benches/fanout/scenarios.rs"]
mod scenarios;
#[path = "../benches/fanout/steady.rs"]
mod steady;
#[path = "../benches/fanout/takeover.rs"]
mod takeover;
