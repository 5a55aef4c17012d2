#!/usr/bin/env bash
# Measures the Lambda binary: release size, and time from process start to the first request
# served (healthz through cargo-lambda's Runtime API emulator), over several runs.
# Usage: scripts/lambda-startup.sh [runs]   (builds with `cargo lambda build --release` first)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-7}
cargo lambda build --release -p gateway-lambda --output-format zip >/dev/null 2>&1
zip=target/lambda/gateway-lambda/bootstrap.zip
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$zip" target/lambda/gateway-lambda/unzipped
bin=target/lambda/gateway-lambda/unzipped/bootstrap
chmod +x "$bin"
echo "release binary: $(stat -c %s "$bin") bytes; deployable zip: $(stat -c %s "$zip") bytes"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
setsid cargo lambda watch --only-lambda-apis -A 127.0.0.1 -P "$port" >/tmp/lambda-startup-emulator.log 2>&1 &
emu=$!
trap 'kill -- -$emu 2>/dev/null || true' EXIT
# Wait for the emulator's port (an HTTP request would wait for a function that is not running yet).
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done

keys='[{"kid":"k","alg":"HS256","secret":"c3RhcnR1cC1tZWFzdXJlbWVudC1rZXktMzItYnl0ZXMhIQ=="}]'
times=()
for _ in $(seq 1 "$runs"); do
  start=$(date +%s%N)
  AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$port/.rt" AWS_LAMBDA_FUNCTION_NAME=_ AWS_LAMBDA_FUNCTION_VERSION=1 \
  AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024 GATEWAY_TABLE=gateway GATEWAY_SIGNING_KEYS="$keys" GATEWAY_ALLOW_HTTP=1 GATEWAY_ALLOW_LOCAL_UPSTREAMS=1 \
  AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x "$bin" >/dev/null 2>&1 &
  fn=$!
  until curl -sf -o /dev/null "http://127.0.0.1:$port/_gateway/healthz"; do sleep 0.002; done
  end=$(date +%s%N)
  kill "$fn"; wait "$fn" 2>/dev/null || true
  times+=($(( (end - start) / 1000000 )))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "start to first request served (ms), $runs runs: $(echo $sorted | tr '\n' ' ')"
echo "min $(echo "$sorted" | head -1) ms, median $(echo "$sorted" | sed -n "$(( (runs + 1) / 2 ))p") ms"
