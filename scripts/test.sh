#!/usr/bin/env bash
# Installs whatever is missing, then runs every test: unit and integration (cargo test), then the
# release build and the Playwright end-to-end tests in Debian's Chromium. Prints the time of each
# stage and a closing "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
log_dir=$(mktemp -d)
t0=$(date +%s)
stage() { printf '\n\033[1m== %s (%ss)\033[0m\n' "$*" "$(( $(date +%s) - t0 ))"; }

stage "setup"
scripts/setup.sh
source scripts/env.sh

stage "cargo test --workspace"
# Failures are collected, not fatal, so the end-to-end stage still runs and the summary is honest.
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$log_dir/cargo.log"
cargo_status=${PIPESTATUS[0]}

stage "release build (cargo leptos build --release)"
cargo leptos build --release 2>&1 | tail -n 20
build_status=${PIPESTATUS[0]}

e2e_status=1
: > "$log_dir/e2e.log"
if [ "$build_status" = 0 ]; then
  stage "end-to-end (Playwright, Debian chromium)"
  (cd end2end && npx playwright test) 2>&1 | tee "$log_dir/e2e.log"
  e2e_status=${PIPESTATUS[0]}
fi
set -e

stage "done"
# Adds up every number matched by the regex $1 in file $2 (0 when nothing matches).
sum() { awk -v re="$1" '{ while (match($0, re)) { s += substr($0, RSTART, RLENGTH) + 0; $0 = substr($0, RSTART + RLENGTH) } } END { print s + 0 }' "$2"; }
passed=$(( $(sum '[0-9]+ passed;' "$log_dir/cargo.log") + $(sum '^ +[0-9]+ passed' "$log_dir/e2e.log") ))
failed=$(( $(sum '[0-9]+ failed;' "$log_dir/cargo.log") + $(sum '^ +[0-9]+ failed' "$log_dir/e2e.log") ))
skipped=$(( $(sum '[0-9]+ ignored;' "$log_dir/cargo.log") + $(sum '^ +[0-9]+ skipped' "$log_dir/e2e.log") ))
echo "wall time: $(( $(date +%s) - t0 )) s; artifacts in $root/end2end/artifacts"
if [ "$cargo_status" != 0 ] || [ "$build_status" != 0 ] || [ "$e2e_status" != 0 ]; then
  [ "$failed" = 0 ] && failed=1
  echo "tests: $passed passed, $failed failed, $skipped skipped"
  exit 1
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
