#!/usr/bin/env bash
# Runs one fuzz target for a given time, from the committed seed corpus (new inputs go to a
# scratch directory, so the committed corpus stays small). Needs cargo-fuzz
# (`cargo install cargo-fuzz`); works on stable Rust with `-s none` (no sanitizer).
#   tests/fuzz/run.sh sse_parser 3600
set -euo pipefail
target=${1:?usage: run.sh TARGET SECONDS}
seconds=${2:?usage: run.sh TARGET SECONDS}
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$here/../.."
cargo fuzz run --fuzz-dir tests/fuzz -s none "$target" "$scratch" "tests/fuzz/corpus/$target" -- \
  -max_total_time="$seconds" -max_len=65536 -print_final_stats=1
