#!/usr/bin/env bash
# The benchmark command (not part of the test command). See BENCHMARKS.md.
#
#   scripts/bench.sh
#
# 1. Installs and builds what is missing (not timed; each step's duration is reported):
#    setup.sh (cargo-lambda, moto, wrangler), nginx (Debian), LiteLLM (a venv under
#    target/bench/venv), the Worker bundle, release builds of gateway-lambda and gateway-bench,
#    the criterion benchmark, the Lambda zip.
# 2. Waits (at most 20 min, polling every 30 s) until no test, fuzz or contract run and no
#    compilation is going on.
# 3. The timed part: criterion microbenchmarks of core; the load runs (gateway-bench run:
#    direct, nginx, edge on workerd, Lambda under cargo-lambda's emulator, a no-op function
#    under the emulator, the Lambda handler served natively, LiteLLM); sizes and start-up.
# 4. Writes target/bench/report.md and copies it into BENCHMARKS.md between the markers.
#
# Every process it starts is stopped at the end, on failure too. Safe to run twice.
# Knobs (environment): BENCH_WARMUP (1), BENCH_DURATION (5), BENCH_CONCURRENCY (1,16,64),
# BENCH_SYSTEMS (all), BENCH_NO_WAIT=1 (skip the idle wait), BENCH_NO_INSTALL=1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

out=target/bench
mkdir -p "$out"
facts=$out/facts.txt
sessions=$out/sessions
: >"$facts"
: >"$sessions"
venv=$out/venv
log() { echo "[bench] $*" >&2; }
fact() { echo "$1=$2" >>"$facts"; }
now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }
# timed KEY CMD...: runs CMD and records how long it took, in seconds.
timed() {
  local key=$1
  shift
  local t0 rc=0
  t0=$(now_ns)
  "$@" || rc=$?
  fact "$key" "$(secs "$t0" "$(now_ns)")"
  return "$rc"
}

# Long-running steps run in a session of their own; every process they start (wrangler,
# workerd, moto, cargo lambda, nginx, LiteLLM, function processes) stays in that session,
# so the cleanup stops exactly those, by session id.
in_session() {
  setsid "$@" &
  local pid=$!
  echo "$pid" >>"$sessions"
  wait "$pid"
}
cleanup() {
  local sid pids
  for sid in $(cat "$sessions" 2>/dev/null); do
    pids=$(ps -o pid= -s "$sid" 2>/dev/null | tr -s ' \n' ' ' || true)
    if [ -n "${pids// /}" ]; then
      log "stopping what session $sid left running: $pids"
      # shellcheck disable=SC2086
      kill -TERM $pids 2>/dev/null || true
    fi
  done
  sleep 2
  for sid in $(cat "$sessions" 2>/dev/null); do
    pids=$(ps -o pid= -s "$sid" 2>/dev/null | tr -s ' \n' ' ' || true)
    # shellcheck disable=SC2086
    [ -n "${pids// /}" ] && kill -KILL $pids 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- 1. installs and builds
if [ "${BENCH_NO_INSTALL:-}" != 1 ]; then
  timed setup_s ./scripts/setup.sh
  if ! command -v nginx >/dev/null 2>&1; then
    log "installing nginx (Debian)"
    timed nginx_install_s sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null'
  else
    fact nginx_install_s "0 (already installed)"
  fi
  if [ ! -x "$venv/bin/litellm" ]; then
    log "installing litellm[proxy] into $venv"
    timed litellm_install_s sh -c "python3 -m venv '$venv' && '$venv/bin/pip' install -q 'litellm[proxy]'"
  else
    fact litellm_install_s "0 (already installed)"
  fi
fi
log "building the Worker bundle, the release Lambda, the harness and the criterion benchmark"
timed build_edge_s sh scripts/build-edge.sh
timed build_lambda_s cargo build --release -p gateway-lambda
timed build_bench_s cargo build --release -p gateway-bench --bins
timed build_criterion_s env CRITERION_HOME="$root/$out/criterion" cargo bench -p gateway-bench --bench core --no-run
timed lambda_zip_s cargo lambda build --release -p gateway-lambda --output-format zip

# ---------------------------------------------------------------- 2. an idle machine
waited=0
if [ "${BENCH_NO_WAIT:-}" != 1 ]; then
  # Test, contract and fuzz runs (and anyone's compiler) would skew the figures.
  while pgrep -f "cargo test|scripts/test.sh|fuzz run|libfuzzer" >/dev/null || pgrep -x rustc >/dev/null; do
    if [ "$waited" -ge 1200 ]; then
      log "still busy after 20 min; going on (figures may be skewed)"
      fact busy "yes: $( (pgrep -af 'cargo test|scripts/test.sh|fuzz run|libfuzzer'; pgrep -ax rustc) | head -3 | cut -c1-80 | tr '\n' ';')"
      break
    fi
    log "waiting for other test/fuzz runs to finish ($waited s so far)"
    sleep 30
    waited=$((waited + 30))
  done
fi
fact idle_wait_s "$waited"

# ---------------------------------------------------------------- 3. the timed part
t_start=$(now_ns)
fact date "$(date -u '+%Y-%m-%d %H:%M')"
fact cpu_model "$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
fact cores "$(nproc)"
fact virtualization "$(lscpu | sed -n 's/^Hypervisor vendor:[[:space:]]*//p' | head -1) guest"
fact memory "$(free -h | awk '/^Mem:/ {print $2}') RAM"
fact kernel "$(uname -sr)"
fact rustc "$(rustc --version)"
fact node "$(node --version)"
fact cargo_lambda "$(cargo lambda --version 2>/dev/null | head -1)"

log "criterion microbenchmarks of core"
timed criterion_s env CRITERION_HOME="$root/$out/criterion" cargo bench -p gateway-bench --bench core -- \
  --warm-up-time 1 --measurement-time 3 --noplot >"$out/criterion.log" 2>&1 || { cat "$out/criterion.log"; exit 1; }
grep -B1 "time:" "$out/criterion.log" | grep -v "^--" >&2 || true

log "load: gateway-bench run"
export GATEWAY_EDGE_PREBUILT=1
export GATEWAY_LAMBDA_BIN="$root/target/release/gateway-lambda"
# Miniflare would otherwise try to fetch the `Request.cf` object from the internet.
export CLOUDFLARE_CF_FETCH_ENABLED=false
export WRANGLER_SEND_METRICS=false
load_failed=0
# A failed load run still leaves results.json with every point measured so far: report those.
if ! timed load_s in_session target/release/gateway-bench run --out "$out" \
  --warmup "${BENCH_WARMUP:-1}" --duration "${BENCH_DURATION:-5}" --concurrency "${BENCH_CONCURRENCY:-1,16,64}" \
  ${BENCH_SYSTEMS:+--systems "$BENCH_SYSTEMS"} --litellm-venv "$venv"; then
  load_failed=1
  log "the load run failed; the report shows what it measured"
fi

log "sizes: the Worker bundle (wrangler deploy --dry-run) and the Lambda (scripts/lambda-startup.sh)"
t_sizes=$(now_ns)
node_modules/.bin/wrangler deploy --dry-run --outdir target/wrangler-dry-run >"$out/wrangler-dry-run.log" 2>&1 || { cat "$out/wrangler-dry-run.log"; exit 1; }
upload=$(grep -E "Total Upload" "$out/wrangler-dry-run.log" | head -1)
log "$upload"
fact worker_total_kib "$(echo "$upload" | sed -n 's/.*Total Upload: *\([0-9.]*\) KiB.*/\1/p')"
fact worker_gzip_kib "$(echo "$upload" | sed -n 's/.*gzip: *\([0-9.]*\) KiB.*/\1/p')"
runs=7
in_session ./scripts/lambda-startup.sh "$runs" >"$out/lambda-startup.log" 2>&1 || { cat "$out/lambda-startup.log"; exit 1; }
cat "$out/lambda-startup.log" >&2
fact lambda_binary_bytes "$(sed -n 's/^release binary: \([0-9]*\) bytes.*/\1/p' "$out/lambda-startup.log")"
fact lambda_zip_bytes "$(sed -n 's/.*deployable zip: \([0-9]*\) bytes.*/\1/p' "$out/lambda-startup.log")"
fact lambda_start_min_ms "$(sed -n 's/^min \([0-9]*\) ms.*/\1/p' "$out/lambda-startup.log")"
fact lambda_start_median_ms "$(sed -n 's/.*median \([0-9]*\) ms.*/\1/p' "$out/lambda-startup.log")"
fact lambda_start_runs "$runs"
fact sizes_s "$(secs "$t_sizes" "$(now_ns)")"
fact timed_s "$(secs "$t_start" "$(now_ns)")"

# ---------------------------------------------------------------- 4. the report
target/release/gateway-bench report --out "$out" --criterion "$out/criterion" --facts "$facts"
python3 - "$out/report.md" BENCHMARKS.md <<'EOF'
import sys
report, doc = sys.argv[1], sys.argv[2]
begin, end = "<!-- BEGIN GENERATED by scripts/bench.sh -->", "<!-- END GENERATED -->"
body = open(report, encoding="utf-8").read().rstrip("\n")
try:
    text = open(doc, encoding="utf-8").read()
except FileNotFoundError:
    text = "# Benchmarks\n\n" + begin + "\n" + end + "\n"
if begin not in text or end not in text:
    text = text.rstrip("\n") + "\n\n" + begin + "\n" + end + "\n"
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(doc, "w", encoding="utf-8").write(head + begin + "\n" + body + "\n" + end + tail)
EOF
log "done in $(secs "$t_start" "$(now_ns)") s (timed part); report: $out/report.md, copied into BENCHMARKS.md"
exit "$load_failed"
