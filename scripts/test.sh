#!/usr/bin/env bash
# The one test command: unit and property tests of every crate, the Worker bundle
# checked by `wrangler deploy --dry-run`, and the contract suite against both deployments, with
# stand-in vLLM servers and two real vLLM servers (CPU build, tiny model made here).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/setup.sh
sh scripts/build-edge.sh
GATEWAY_EDGE_PREBUILT=1 node_modules/.bin/wrangler deploy --dry-run --outdir target/wrangler-dry-run >target/wrangler-dry-run.log 2>&1 \
  || { cat target/wrangler-dry-run.log; exit 1; }
grep -E "Total Upload" target/wrangler-dry-run.log || true
# Every host crate (core, lambda with its DynamoDB store tests, infra checks, cli, tests), and the
# contract suite against both deployments: the Worker on workerd, then the Lambda on cargo-lambda's
# emulator with moto as DynamoDB. One cargo invocation, so the Lambda binary is built once.
GATEWAY_DEPLOYMENT=all GATEWAY_REAL_VLLM=1 cargo test
sh scripts/check-terraform.sh  # infra/: terraform fmt/validate/test where a local provider mirror fits, provider schemas, module READMEs
# The Prometheus alert rules, their unit tests and the scrape config, with promtool (fetched
# from Debian's package when missing; skipped, saying so, when it cannot be had).
./scripts/check-observability.sh --fetch
# A short coverage-guided fuzzing run of every core target (token decoding, path routing,
# admin JSON); fails on any crash. Long runs: `scripts/fuzz.sh 600`.
./scripts/fuzz.sh 20
