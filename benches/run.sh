#!/usr/bin/env bash
# One command: sse-relay side by side with nginx + nchan and the minimal hyper server.
#
#   bash benches/run.sh            full run (~9 min of scenarios, plus the build; targets nchan, sse-relay and
#                                  the minimal hyper server): writes benches/RESULTS.md + benches/fanout.svg
#   bash benches/run.sh --quick    smoke run (< 3 min): writes target/fanout-bench/quick/RESULTS.md
#   bash benches/run.sh --profile  also profile the relay under callgrind (adds a few minutes)
#   bash benches/run.sh --cluster  three relays in cluster mode vs one relay (~5 min):
#                                  prints the figures, saves target/fanout-bench/cluster/cluster.json
#
# The benchmark is the `fanout` binary of the crate in benches/fanout/ (a workspace member); any
# other argument is passed to it (`cargo run --release -p fanout-bench -- --help`).
# On a fresh Debian machine it installs nginx, libnginx-mod-nchan and valgrind with apt-get.
# Every process it starts is stopped on exit, Ctrl-C or SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
profile=0
for a in "$@"; do
    case "$a" in
        --profile) profile=1; args+=("$a") ;;
        *) args+=("$a") ;;
    esac
done

need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_nchan_module.so ] || need+=(libnginx-mod-nchan)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ "$profile" = 1 ]; then
    command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "run.sh: installing ${need[*]}" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Both the benchmark's client and the servers hold one descriptor per connection.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# Release builds carry no debug info (Cargo.toml); a profiled run builds with the limited debug
# info the earlier profiles in RESULTS.md were taken with, so callgrind can name source lines.
[ "$profile" = 1 ] && export CARGO_PROFILE_RELEASE_DEBUG=1
cargo build --release --bin sse-relay
cargo build --release -p fanout-bench --bin fanout
# Private copies: a rebuild during the run must not change the binary under test, nor the
# benchmark (it re-executes itself as the minimal hyper server).
mkdir -p target/fanout-bench
cp "${CARGO_TARGET_DIR:-target}/release/sse-relay" target/fanout-bench/sse-relay
cp "${CARGO_TARGET_DIR:-target}/release/fanout" target/fanout-bench/fanout

# The benchmark runs in its own process group so that everything it started (nginx, the relay,
# valgrind) can be stopped by that group's id whatever happens to it.
pgid=""
cleanup() {
    if [ -n "$pgid" ]; then
        kill -TERM -- "-$pgid" 2>/dev/null || true
        sleep 1
        kill -KILL -- "-$pgid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# As root, run at a higher priority than other work on the machine (both targets alike).
nice_cmd=()
[ "$(id -u)" = 0 ] && nice_cmd=(nice -n -10)
setsid ${nice_cmd[@]+"${nice_cmd[@]}"} target/fanout-bench/fanout --relay-bin target/fanout-bench/sse-relay \
    --command "bash benches/run.sh $*" ${args[@]+"${args[@]}"} &
pgid=$!
# The kernel shares CPU between sessions (autogroups) before nice applies: raise this one's too.
[ "$(id -u)" = 0 ] && echo -10 > "/proc/$pgid/autogroup" 2>/dev/null || true
status=0
wait "$pgid" || status=$?
pgid=""
exit $status
