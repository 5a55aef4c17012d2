#!/usr/bin/env bash
# Starts the gateway locally with everything it needs, and prints what exists and how to use it.
#
#   ./scripts/dev.sh            the Cloudflare Worker on workerd (wrangler dev), local KV and Durable Objects
#   ./scripts/dev.sh --lambda   the AWS Lambda under `cargo lambda watch`, moto as DynamoDB
#
# Behind the demo route: two stand-in vLLM servers, or real ones with
#   VLLM_URL=http://host:8000[,http://host2:8000]  [VLLM_API_KEY=… when they need one]
# Safe to run twice; Ctrl-C stops everything it started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mode=edge
for arg in "$@"; do
  case "$arg" in
    --lambda) mode=lambda ;;
    --edge) mode=edge ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "dev.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done
PORT=${PORT:-8787}
target="${CARGO_TARGET_DIR:-$root/target}"
bin="$target/debug"
logs="$root/.wrangler/dev-logs"
mkdir -p "$logs"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Only what this mode runs: the stand-in and gatewayctl are small crates (no AWS SDK).
say "installing what is missing ($mode)"
./scripts/setup.sh "$mode"
say "building gatewayctl and the stand-in vLLM"
cargo build -q -p gatewayctl -p gateway-standin
if [ "$mode" = edge ]; then
  say "building the Worker"
  sh scripts/build-edge.sh
else
  say "building the Lambda function"
  cargo build -q -p gateway-lambda
fi

# A signing key of our own, kept in .dev.vars (git-ignored) so restarts keep tokens valid.
if [ ! -f .dev.vars ]; then
  keys=$("$bin/gatewayctl" key generate --kid local-1 2>/dev/null)
  (umask 077; { echo "GATEWAY_SIGNING_KEYS='$keys'"; echo "GATEWAY_ALLOW_HTTP=1"; } > .dev.vars)
  say "wrote .dev.vars with a fresh signing key"
fi
# Local development only: plain HTTP, and upstreams on loopback (the stand-ins; production refuses them).
grep -q '^GATEWAY_ALLOW_LOCAL_UPSTREAMS=' .dev.vars || echo "GATEWAY_ALLOW_LOCAL_UPSTREAMS=1" >> .dev.vars
set -a; . ./.dev.vars; set +a

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # URL SECONDS LOG
  for _ in $(seq 1 $(($2 * 2))); do
    curl -s -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.5
  done
  echo "not ready after $2 s: $1; see $3" >&2
  tail -20 "$3" >&2
  exit 1
}

# The demo route's endpoints: real vLLM servers when VLLM_URL names them, else two stand-ins.
endpoints=""
secret_field=""
if [ -n "${VLLM_URL:-}" ]; then
  i=0
  IFS=',' read -ra urls <<<"$VLLM_URL"
  for u in "${urls[@]}"; do
    u=${u%/}
    i=$((i + 1))
    endpoints+="${endpoints:+,}{\"id\":\"vllm-$i\",\"url\":\"$u\",\"weight\":1}"
  done
  [ -n "${VLLM_API_KEY:-}" ] && secret_field=',"upstream_api_key_secret":"VLLM_API_KEY"'
  model=$(curl -sf ${VLLM_API_KEY:+-H "authorization: Bearer $VLLM_API_KEY"} "${urls[0]%/}/v1/models" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])' 2>/dev/null || echo "YOUR-MODEL")
  upstreams="real vLLM at $VLLM_URL"
else
  pa=$(free_port); pb=$(free_port)
  setsid "$bin/stand-in-vllm" --name vllm-a --port "$pa" >"$logs/standin-a.log" 2>&1 & pids+=($!)
  setsid "$bin/stand-in-vllm" --name vllm-b --port "$pb" >"$logs/standin-b.log" 2>&1 & pids+=($!)
  endpoints="{\"id\":\"a\",\"url\":\"http://127.0.0.1:$pa\"},{\"id\":\"b\",\"url\":\"http://127.0.0.1:$pb\"}"
  model=stand-in
  upstreams="two stand-in vLLM servers (127.0.0.1:$pa, 127.0.0.1:$pb)"
fi

base="http://127.0.0.1:$PORT"
if [ "$mode" = edge ]; then
  # The Worker's secrets: .dev.vars plus the upstream key, in a file only we can read.
  envfile="$root/.wrangler/dev.env"
  (umask 077; { cat .dev.vars; [ -n "${VLLM_API_KEY:-}" ] && echo "VLLM_API_KEY='$VLLM_API_KEY'"; true; } >"$envfile")
  log="$logs/wrangler.log"
  GATEWAY_EDGE_PREBUILT=1 CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_SEND_METRICS=false setsid node_modules/.bin/wrangler dev \
    --local --ip 127.0.0.1 --port "$PORT" --env-file "$envfile" \
    --show-interactive-dev-session=false >"$log" 2>&1 & pids+=($!)
  what="Cloudflare Worker on workerd (wrangler dev; local KV and Durable Objects in .wrangler/state)"
else
  moto_port=$(free_port)
  setsid moto_server -H 127.0.0.1 -p "$moto_port" >"$logs/moto.log" 2>&1 & pids+=($!)
  wait_for "http://127.0.0.1:$moto_port/" 30 "$logs/moto.log"
  export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
  export GATEWAY_TABLE=gateway
  "$bin/gateway-lambda" create-table
  log="$logs/cargo-lambda.log"
  # The function's environment: .dev.vars, the table on moto, the upstream key; only we can read it.
  envfile="$root/.wrangler/dev-lambda.env"
  (umask 077; { cat .dev.vars
    echo "GATEWAY_TABLE=$GATEWAY_TABLE"; echo "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL"; echo "AWS_REGION=$AWS_REGION"
    echo "AWS_ACCESS_KEY_ID=local"; echo "AWS_SECRET_ACCESS_KEY=local"
    [ -n "${VLLM_API_KEY:-}" ] && echo "VLLM_API_KEY=$VLLM_API_KEY"; true; } >"$envfile")
  # `cargo lambda watch` serves the Runtime API and the Function URL, and rebuilds on change.
  setsid cargo lambda watch -p gateway-lambda --bin gateway-lambda --env-file "$envfile" \
    --invoke-address 127.0.0.1 --invoke-port "$PORT" >"$log" 2>&1 & pids+=($!)
  what="AWS Lambda under cargo lambda watch (moto as DynamoDB at 127.0.0.1:$moto_port; in memory)"
fi

say "waiting for the gateway"
for _ in $(seq 1 240); do
  curl -sf -H 'x-forwarded-proto: https' "$base/_gateway/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -sf -H 'x-forwarded-proto: https' "$base/_gateway/healthz" >/dev/null || { echo "the gateway did not start; see $log" >&2; tail -30 "$log" >&2; exit 1; }

ADMIN=$("$bin/gatewayctl" token mint --subject local-ops --groups admin --ttl 12h 2>/dev/null)
curl -sf -X PUT "$base/_gateway/routes/demo" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d "{\"endpoints\":[$endpoints],\"auth\":{\"required\":true,\"groups\":[\"ml-team\"]},\"models\":[\"$model\"]$secret_field}" >/dev/null \
  || { echo "could not create the demo route; see $log" >&2; exit 1; }
USER_TOKEN=$(curl -sf -X POST "$base/_gateway/tokens" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"subject":"demo-user","kind":"user","groups":["ml-team"],"ttl_seconds":43200,"description":"local demo"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

cat <<EOT

Gateway: $what
  $base
Demo route /demo/ over $upstreams

Admin token (group admin, 12 h):
  $ADMIN
User token (group ml-team, 12 h):
  $USER_TOKEN

Dashboard:  $base/_gateway/dashboard   (paste the admin token to sign in)
Admin API:  $base/_gateway/   e.g.  curl $base/_gateway/routes -H "authorization: Bearer \$ADMIN"
            or: GATEWAY_URL=$base GATEWAY_TOKEN=\$ADMIN $bin/gatewayctl routes list

curl (streamed chat):
  curl $base/demo/v1/chat/completions -H "authorization: Bearer $USER_TOKEN" \\
    -H 'content-type: application/json' -H 'x-session-id: my-session' \\
    -d '{"model":"$model","stream":true,"messages":[{"role":"user","content":"hello"}]}'

OpenAI SDK (Python), one base URL for every route (routed by model, see README):
  from openai import OpenAI
  client = OpenAI(base_url="$base/v1", api_key="$USER_TOKEN",
                  default_headers={"x-session-id": "my-session"})  # keeps a conversation on one instance
  print(client.chat.completions.create(model="$model", messages=[{"role": "user", "content": "hi"}]))

Logs:  $log (one JSON line per request)
       other processes: $logs/
Stop:  Ctrl-C stops everything this command started.
EOT
wait
