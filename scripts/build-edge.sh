#!/bin/sh
# Builds the Worker bundle into edge/build with local tools only (worker-build would
# otherwise download wasm-bindgen and esbuild, which this environment cannot reach).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$HOME/.cargo/bin/wasm-bindgen}"
export ESBUILD_BIN="${ESBUILD_BIN:-$root/node_modules/.bin/esbuild}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
# The contract harness builds once, then starts several `wrangler dev`s without rebuilding.
if [ "${GATEWAY_EDGE_PREBUILT:-}" = 1 ] && [ -f "$root/edge/build/worker/shim.mjs" ]; then
  exit 0
fi
cd "$root/edge"
exec worker-build --release
