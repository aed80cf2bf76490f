//! `cargo bench --bench compression -- ARGS`: what the relay's shared per-topic compression
//! puts on the wire and costs, against identity, per-event gzip and nginx `gzip on` in front of
//! nchan (`--quick` for the smoke run, `--help` for the rest). The program lives in the fan-out
//! benchmark's crate (`benches/fanout/src/compression/`), whose client, publisher and readings
//! it shares; this target only runs it from the repository root.

fn main() -> anyhow::Result<()> {
    fanout_bench::compression_main()
}
