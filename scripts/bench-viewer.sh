#!/usr/bin/env bash
# Viewer figures for docs/benchmarks.md: the room page with 1,048,576 synthetic points (16
# shards in the real format, the room's WebSocket answered by the test). Needs the release build
# (`cargo leptos build --release`) and the end2end node_modules, as scripts/test.sh installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
cd end2end
VESTIGE_BENCH=1 npx playwright test tests/viewer-bench.spec.ts
