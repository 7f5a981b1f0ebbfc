#!/usr/bin/env bash
# Measures the release build: an incremental rebuild after touching one component, and the wasm
# sizes (rustc output, after wasm-bindgen + wasm-opt, gzipped). A cold build is timed with
# `--cold` (it deletes the release artifacts first; the dependency cache in ~/.cargo stays).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
target=${CARGO_TARGET_DIR:-target}
if [ "${1:-}" = "--cold" ]; then
  rm -rf "$target/site" "$target/server-release" "$target/front" "$target/wasm32-unknown-unknown"
  start=$(date +%s.%N); cargo leptos build --release >/dev/null 2>&1; end=$(date +%s.%N)
  printf 'cold release build: %.0f s\n' "$(echo "$end - $start" | bc)"
fi
cargo leptos build --release >/dev/null 2>&1
touch app/src/pages.rs
start=$(date +%s.%N); cargo leptos build --release >/dev/null 2>&1; end=$(date +%s.%N)
printf 'incremental release build (app/src/pages.rs touched): %.0f s\n' "$(echo "$end - $start" | bc)"
raw=$(find "$target" -path '*wasm32-unknown-unknown/wasm-release/frontend.wasm' | head -1)
final="$target/site/pkg/vestige.wasm"
[ -f "$final" ] || final=$(ls "$target"/site/pkg/*.wasm | head -1)
printf 'wasm from rustc: %s bytes (%s)\n' "$(stat -c %s "$raw")" "$raw"
printf 'wasm served (wasm-bindgen + wasm-opt): %s bytes\n' "$(stat -c %s "$final")"
printf 'wasm served, gzip -9: %s bytes\n' "$(gzip -9 -c "$final" | wc -c)"
printf 'machine load: %s\n' "$(uptime | sed 's/.*load average: //')"
