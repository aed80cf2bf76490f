//! `cargo bench --bench fanout -- ARGS`: the fan-out benchmark against nginx + nchan and the
//! minimal hyper server. The program is its own crate in `benches/fanout/` (a member of this
//! workspace); this target only runs it, from the repository root, so that `cargo bench`
//! reaches it as before. `bash benches/run.sh` runs the crate's `fanout` binary instead.

fn main() -> anyhow::Result<()> {
    fanout_bench::main()
}
