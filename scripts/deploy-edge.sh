#!/bin/sh
# Deploys the Worker to one environment of wrangler.toml: its secrets first, then the script.
#
#   scripts/deploy-edge.sh staging|production [secrets.json]
#
# The secrets file (or GATEWAY_SECRETS_FILE) is a JSON object of string values, e.g.
#   {"GATEWAY_SIGNING_KEYS": "[{\"kid\":…}]", "VLLM_API_KEY": "…"}
# Give it a path, never the values: they reach Cloudflare through `wrangler secret bulk`, which
# reads the file itself, and this script never prints or copies them. Keep the file out of git
# (chmod 600, or a tmpfs your secret manager writes to). Without a file the secrets are left as
# they are (a code-only deploy).
#
# Credentials: CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID in the environment.
# Checks, before anything is changed:
#   - the environment's GATEWAY_KV id in wrangler.toml is not the placeholder;
#   - when GATEWAY_TF_DIR names the Terraform root of this environment (e.g.
#     infra/examples/edge, with its state reachable), that id equals
#     `terraform output -raw kv_namespace_id` there (GATEWAY_SKIP_TF_CHECK=1 skips it).
set -eu

usage() {
  echo "usage: $0 staging|production [secrets.json]   (or GATEWAY_SECRETS_FILE=secrets.json)" >&2
  exit 2
}

[ $# -ge 1 ] || usage
env_name=$1
case "$env_name" in
  staging | production) ;;
  *) usage ;;
esac
secrets_file=${2:-${GATEWAY_SECRETS_FILE:-}}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
wrangler=${WRANGLER:-npx --no-install wrangler}

# The GATEWAY_KV id of [env.<name>] in wrangler.toml (kv_namespaces = [{ binding = "GATEWAY_KV", id = "…" }]).
kv_id=$(awk -v section="[env.$env_name]" '
  /^\[/ { in_env = ($0 == section) }
  in_env && /binding *= *"GATEWAY_KV"/ {
    if (match($0, /id *= *"[^"]*"/)) {
      v = substr($0, RSTART, RLENGTH); sub(/^id *= *"/, "", v); sub(/"$/, "", v); print v; exit
    }
  }' wrangler.toml)
if [ -z "$kv_id" ]; then
  echo "wrangler.toml: no GATEWAY_KV binding under [env.$env_name]" >&2
  exit 1
fi
case "$kv_id" in
  REPLACE-*)
    echo "wrangler.toml: [env.$env_name] GATEWAY_KV id is still the placeholder; put \`terraform output -raw kv_namespace_id\` of the $env_name state there" >&2
    exit 1
    ;;
esac

if [ -n "${GATEWAY_TF_DIR:-}" ] && [ "${GATEWAY_SKIP_TF_CHECK:-}" != 1 ]; then
  tf_id=$(terraform -chdir="$GATEWAY_TF_DIR" output -no-color -raw kv_namespace_id 2>/dev/null) || tf_id=
  if ! printf '%s' "$tf_id" | grep -Eq '^[0-9a-f]{32}$'; then
    echo "no kv_namespace_id from terraform output in $GATEWAY_TF_DIR (state not reachable, or not applied?); set GATEWAY_SKIP_TF_CHECK=1 to deploy without the check" >&2
    exit 1
  fi
  if [ "$tf_id" != "$kv_id" ]; then
    echo "wrangler.toml [env.$env_name] GATEWAY_KV id $kv_id differs from Terraform's kv_namespace_id $tf_id ($GATEWAY_TF_DIR)" >&2
    exit 1
  fi
  echo "GATEWAY_KV id matches Terraform ($GATEWAY_TF_DIR)"
fi

if [ -n "$secrets_file" ]; then
  if [ ! -f "$secrets_file" ] || [ ! -r "$secrets_file" ]; then
    echo "secrets file not readable: $secrets_file" >&2
    exit 1
  fi
  # Shape only (an object of strings with the signing keys); values are never printed.
  if command -v node >/dev/null 2>&1; then
    node -e '
      const fs = require("fs");
      let o;
      try { o = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch (e) { console.error("secrets file is not JSON"); process.exit(1); }
      if (o === null || typeof o !== "object" || Array.isArray(o)) { console.error("secrets file must be a JSON object"); process.exit(1); }
      const bad = Object.keys(o).filter((k) => typeof o[k] !== "string");
      if (bad.length) { console.error("secrets file: values must be strings: " + bad.join(", ")); process.exit(1); }
      if (!("GATEWAY_SIGNING_KEYS" in o)) { console.error("secrets file has no GATEWAY_SIGNING_KEYS"); process.exit(1); }
      console.log("secrets: " + Object.keys(o).sort().join(", "));
    ' "$secrets_file"
  fi
  # The Worker must exist before its secrets can be put: the first deploy of an environment
  # uploads the script first (with no secrets it answers 500 until they are in).
  # `wrangler secret bulk` creates a new version with the secrets and deploys it.
  $wrangler secret bulk "$secrets_file" --env "$env_name" >/dev/null || {
    echo "wrangler secret bulk failed; if this is the environment's first deploy, run without a secrets file first, then again with it" >&2
    exit 1
  }
  echo "secrets put for $env_name"
else
  echo "no secrets file: secrets left unchanged"
fi

$wrangler deploy --env "$env_name"
