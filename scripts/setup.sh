#!/usr/bin/env bash
# Installs what the build and tests need and is missing; safe to run any number of times.
#
#   setup.sh                 everything (the test command)
#   setup.sh edge            wasm target, worker-build, wasm-bindgen CLI, wrangler/esbuild (the start command)
#   setup.sh lambda          cargo-lambda and moto (the start command with --lambda)
#   setup.sh browser         Debian's Chromium for the dashboard's browser test
#   setup.sh vllm            a real vLLM (CPU) and a tiny model made here (scripts/vllm-setup.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
parts=${*:-edge lambda browser vllm}
want() { case " $parts " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# The two build tools compile from source on a new machine: share one target directory (their
# common dependencies build once) and build them without LTO at opt-level 1, which halves the
# wait; each processes one small wasm file per build, so their own speed does not matter.
tool_install() {
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
    CARGO_PROFILE_RELEASE_DEBUG=0 cargo install --target-dir "${CARGO_TARGET_DIR:-$root/target}/tools" "$@"
}

if want edge; then
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
  fi
  # worker-build drives the wasm build; pinned to the `worker` crate's version.
  if ! worker-build --version 2>/dev/null | grep -q "0.8.7"; then
    tool_install worker-build --version 0.8.7 --locked
  fi
  # wasm-bindgen's CLI must match the library version in Cargo.lock exactly.
  wbg=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
  if ! "$HOME/.cargo/bin/wasm-bindgen" --version 2>/dev/null | grep -q " $wbg\$"; then
    # Not --locked: one of its locked dependencies is no longer on the registry.
    tool_install wasm-bindgen-cli --version "$wbg"
  fi
  # wrangler (workerd) and esbuild, pinned by package-lock.json.
  if [ ! -x node_modules/.bin/wrangler ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
  fi
fi

if want lambda; then
  # cargo-lambda (the Lambda Runtime API and Function URL emulator) and moto (DynamoDB).
  if ! cargo lambda --version >/dev/null 2>&1 || ! command -v moto_server >/dev/null 2>&1; then
    python3 -m pip install --quiet 'cargo-lambda==1.9.2' 'moto[server]==5.*'
  fi
fi

if want browser; then
  # Headless Chromium for the dashboard's browser test (driven by playwright-core from package.json).
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then apt_get="apt-get"; else apt_get="sudo apt-get"; fi
    $apt_get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $apt_get install -y -q --no-install-recommends chromium >/dev/null
  fi
fi

if want vllm; then
  ./scripts/vllm-setup.sh >/dev/null
fi
