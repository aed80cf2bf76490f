//! The fan-out benchmark's binary (`benches/run.sh` runs it from the repository root):
//! `fanout --help`.

fn main() -> anyhow::Result<()> {
    fanout_bench::main()
}
