# Sourced by the run and test scripts: the PATH that makes cargo-leptos find our tools.
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$(pwd)/end2end/node_modules/.bin:$PATH"
