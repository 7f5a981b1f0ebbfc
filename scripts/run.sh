#!/usr/bin/env bash
# Installs whatever is missing, builds the release site and server, and serves Vestige on
# http://127.0.0.1:3000 with embedded storage in ./data. Extra arguments go to the server
# (see `--help`); VESTIGE_BIND / VESTIGE_DATA_DIR work too.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --app-only
source scripts/env.sh
cargo leptos build --release
exec "${CARGO_TARGET_DIR:-target}/server-release/vestige" --site-root target/site "$@"
