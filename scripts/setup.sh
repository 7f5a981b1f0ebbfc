#!/usr/bin/env bash
# Installs whatever Vestige needs that this machine lacks, and nothing it already has.
# Usage: scripts/setup.sh [--app-only]   (--app-only skips what only the tests need: Chromium)
# Everything comes from the package registries: rustup's channel, crates.io, npm and Debian.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LEPTOS_VERSION=0.3.11
app_only=false
[ "${1:-}" = "--app-only" ] && app_only=true

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=false
apt_install() {
  if [ "$apt_updated" = false ]; then as_root apt-get update -qq; apt_updated=true; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@"
}

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
command -v rustup >/dev/null || { echo "rustup is required (https://rustup.rs); install it, then run this again" >&2; exit 1; }
command -v cc >/dev/null || { say "installing a C compiler"; apt_install build-essential; }
command -v pkg-config >/dev/null || { say "installing pkg-config"; apt_install pkg-config; }

# rust-toolchain.toml pins the toolchain and the wasm target; this installs them if absent.
say "toolchain: $(rustup show active-toolchain 2>/dev/null | head -1 || true)"
rustup toolchain install "$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)" \
  --profile minimal --target wasm32-unknown-unknown --component clippy,rustfmt >/dev/null 2>&1 || true
rustc --version

if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
  say "installing cargo-leptos $CARGO_LEPTOS_VERSION (long: about half an hour on 2 cores)"
  # no_downloads: use wasm-opt / wasm-bindgen from PATH and fail loudly instead of fetching
  # binaries from GitHub, which these machines cannot reach.
  cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked --features no_downloads
fi

# The wasm-bindgen CLI must match the wasm-bindgen crate in Cargo.lock exactly.
wbg_version=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q "$wbg_version"; then
  say "installing wasm-bindgen-cli $wbg_version"
  cargo install wasm-bindgen-cli --version "$wbg_version"
fi

command -v npm >/dev/null || { say "installing node and npm"; apt_install nodejs npm; }
# npm's binaryen provides wasm-opt; Debian's older binaryen silently breaks the release wasm.
if [ ! -x end2end/node_modules/.bin/wasm-opt ] || [ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]; then
  say "installing node packages (Playwright test runner, binaryen)"
  (cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

if [ "$app_only" = false ] && [ ! -x /usr/bin/chromium ]; then
  say "installing Debian's chromium for the browser tests"
  apt_install chromium
fi
say "ready"
