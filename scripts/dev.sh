#!/usr/bin/env bash
# Starts the gateway locally: the Worker on workerd (wrangler dev) with local KV and
# Durable Objects, two stand-in vLLM instances, a demo route over them, and prints an
# admin token, a user token and examples. Safe to run twice; Ctrl-C stops everything.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PORT=${PORT:-8787}
./scripts/setup.sh
sh scripts/build-edge.sh
cargo build -q -p gateway-tests --bin stand-in-vllm -p gatewayctl
bin="${CARGO_TARGET_DIR:-$root/target}/debug"

# A signing key of our own, kept in .dev.vars (git-ignored) so restarts keep tokens valid.
if [ ! -f .dev.vars ]; then
  keys=$("$bin/gatewayctl" key generate --kid local-1)
  { echo "GATEWAY_SIGNING_KEYS='$keys'"; echo "GATEWAY_ALLOW_HTTP=1"; } > .dev.vars
  echo "wrote .dev.vars with a fresh signing key"
fi
set -a; . ./.dev.vars; set +a

pids=()
cleanup() { for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pa=$(free_port); pb=$(free_port)
setsid "$bin/stand-in-vllm" --name vllm-a --port "$pa" >/tmp/gateway-standin-a.log 2>&1 & pids+=($!)
setsid "$bin/stand-in-vllm" --name vllm-b --port "$pb" >/tmp/gateway-standin-b.log 2>&1 & pids+=($!)
GATEWAY_EDGE_PREBUILT=1 CLOUDFLARE_CF_FETCH_ENABLED=false setsid node_modules/.bin/wrangler dev --local --ip 127.0.0.1 --port "$PORT" \
  --show-interactive-dev-session=false >/tmp/gateway-wrangler.log 2>&1 & pids+=($!)

base="http://127.0.0.1:$PORT"
for _ in $(seq 1 240); do
  curl -sf "$base/_gateway/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -sf "$base/_gateway/healthz" >/dev/null || { echo "gateway did not start; see /tmp/gateway-wrangler.log"; exit 1; }

ADMIN=$("$bin/gatewayctl" token mint --subject local-ops --groups admin --ttl 12h 2>/dev/null)
curl -sf -X PUT "$base/_gateway/routes/demo" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d "{\"endpoints\":[{\"id\":\"a\",\"url\":\"http://127.0.0.1:$pa\"},{\"id\":\"b\",\"url\":\"http://127.0.0.1:$pb\"}],\"auth\":{\"required\":true,\"groups\":[\"ml-team\"]}}" >/dev/null
USER_TOKEN=$(curl -sf -X POST "$base/_gateway/tokens" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"subject":"demo-user","kind":"user","groups":["ml-team"],"ttl_seconds":43200,"description":"local demo"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

cat <<EOT

Gateway (Cloudflare Worker on workerd) at $base
Demo route /demo/ over two stand-in vLLM instances (127.0.0.1:$pa, 127.0.0.1:$pb)

Admin token (group admin, 12 h):
  $ADMIN
User token (group ml-team, 12 h):
  $USER_TOKEN

curl:
  curl $base/demo/v1/chat/completions -H "authorization: Bearer $USER_TOKEN" \\
    -H 'content-type: application/json' -H 'x-session-id: my-session' \\
    -d '{"model":"stand-in","stream":true,"messages":[{"role":"user","content":"hello"}]}'

OpenAI SDK (Python):
  from openai import OpenAI
  client = OpenAI(base_url="$base/demo/v1", api_key="$USER_TOKEN")
  print(client.chat.completions.create(model="stand-in", messages=[{"role": "user", "content": "hi"}]))

Admin API:  GATEWAY_URL=$base GATEWAY_TOKEN=\$ADMIN $bin/gatewayctl routes list
Logs: /tmp/gateway-wrangler.log   Ctrl-C stops everything.
EOT
wait
