#!/usr/bin/env bash
# Load figures for docs/benchmarks.md: fan-out latency (1000 clients in one room), server memory
# per idle connection (5000), and bytes on the wire per point (fountain-P11, 11 photos).
# Starts the release server on a free port with a temporary data directory, runs the load
# generator against it, and stops the server by its pid.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

clients=${CLIENTS:-1000}
idle=${IDLE:-5000}
datasets=${VESTIGE_DATASETS:-../shared/datasets}

# Through cargo-leptos, like the tests: a plain `cargo build` of the server binary lacks the
# site settings cargo-leptos compiles in, and would leave a binary whose pages never hydrate.
cargo leptos build --release
cargo build --release -p loadgen
# The build leaves hundreds of megabytes of dirty pages; their writeback would stall the server's
# writes and be measured as fan-out latency.
sync
server=target/server-release/vestige
loadgen=target/release/loadgen

data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# 10 000 sockets on each side.
ulimit -n 20000
# The loadgen stands in for thousands of members, all from 127.0.0.1: lift the per-address
# message and connection limits for the benchmark.
"$server" --bind "127.0.0.1:$port" --data-dir "$data" --messages-per-second 100000 \
  --max-clients-per-room 10000 --max-connections 20000 --max-connections-per-address 20000 \
  >"$data/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
"$loadgen" --addr "127.0.0.1:$port" fanout --clients "$clients" --messages 100 --rate 10
"$loadgen" --addr "127.0.0.1:$port" idle --clients "$idle" --server-pid "$pid"
if [ -d "$datasets/fountain-P11-half/images" ]; then
  "$loadgen" --addr "127.0.0.1:$port" points --photos "$datasets/fountain-P11-half/images" --count 11
else
  echo "points: SKIP, no datasets at $datasets"
fi
