#!/bin/sh
# Checks infra/'s Terraform with the real tools, offline:
#
# 1. `terraform fmt -check -recursive infra`;
# 2. for each module and example: `terraform init -backend=false`, `validate` and `test` (the
#    tests/*.tftest.hcl, with mock providers), when every provider it needs is in a local
#    filesystem mirror at a version its constraints allow; otherwise it says which provider is
#    missing and moves on. Nothing is fetched: the generated CLI config installs from the mirrors
#    only. Mirrors: $TF_PLUGIN_MIRROR (colon-separated), /opt/tf-plugins, ~/.terraform.d/plugins,
#    ~/.local/share/terraform/plugins, /usr/local/share/terraform/plugins,
#    /usr/share/terraform/plugins;
# 3. with Node.js: every .tf file parsed by HashiCorp's HCL parser and checked against the
#    providers' schemas (infra/check/schema/check.mjs, the schemas fetched once with `npm pack`),
#    that check's own tests, and the module READMEs' generated Inputs/Outputs tables are current.
#
# Without terraform (or node) the part that needs it is skipped, saying so. The modules and
# examples are checked in a temporary copy of infra/, so no .terraform directory or
# .terraform.lock.hcl lands in the repository (modules do not commit lock files; a root module
# made from an example should commit its own).
#
#   scripts/check-terraform.sh              # everything available
#   scripts/check-terraform.sh --offline    # schema check only from its cache (no npm pack)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
offline=
[ "${1:-}" = --offline ] && offline=--offline

say() { echo "check-terraform: $*"; }
failed=0

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-terraform.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# ---- terraform ----------------------------------------------------------------------------------

# Does version $1 satisfy the Terraform constraint $2 ("~> 6.28", ">= 1.5, < 2")?
satisfies() {
  awk -v v="$1" -v c="$2" '
    function cmp(a, b,   x, y, i) {
      split(a, x, "."); split(b, y, ".")
      for (i = 1; i <= 3; i++) { if (x[i] + 0 != y[i] + 0) return (x[i] + 0 < y[i] + 0) ? -1 : 1 }
      return 0
    }
    BEGIN {
      n = split(c, parts, ",")
      for (i = 1; i <= n; i++) {
        p = parts[i]; gsub(/[ \t]/, "", p)
        if (p == "") continue
        op = p; sub(/[0-9].*$/, "", op); w = substr(p, length(op) + 1)
        if (op == "") op = "="
        r = cmp(v, w)
        if (op == "=" && r != 0) exit 1
        if (op == "!=" && r == 0) exit 1
        if (op == ">" && r <= 0) exit 1
        if (op == ">=" && r < 0) exit 1
        if (op == "<" && r >= 0) exit 1
        if (op == "<=" && r > 0) exit 1
        if (op == "~>") {
          if (r < 0) exit 1
          k = split(w, ws, "."); split(v, vs, ".")
          if (k == 2 && vs[1] + 0 != ws[1] + 0) exit 1
          if (k >= 3 && (vs[1] + 0 != ws[1] + 0 || vs[2] + 0 != ws[2] + 0)) exit 1
        }
      }
    }'
}

# "source<TAB>constraint" for every provider a module (and the local modules it calls) requires.
requirements() {
  seen=" "
  todo=$1
  while [ -n "$todo" ]; do
    set -- $todo
    dir=$1
    shift
    todo=$*
    case $seen in *" $dir "*) continue ;; esac
    seen="$seen$dir "
    for f in "$dir"/*.tf; do
      [ -f "$f" ] || continue
      # required_providers entries: `name = { source = "...", version = "..." }` over one or more lines.
      awk '
        /required_providers[ \t]*\{/ { inrp = 1; depth = 0 }
        inrp {
          line = $0
          if (match(line, /source[ \t]*=[ \t]*"[^"]*"/)) { s = substr(line, RSTART, RLENGTH); sub(/^[^"]*"/, "", s); sub(/"$/, "", s); src = s }
          if (match(line, /version[ \t]*=[ \t]*"[^"]*"/)) { s = substr(line, RSTART, RLENGTH); sub(/^[^"]*"/, "", s); sub(/"$/, "", s); ver = s }
          if (src != "" && ver != "") { print src "\t" ver; src = ""; ver = "" }
          o = gsub(/\{/, "{", line); cl = gsub(/\}/, "}", line); depth += o - cl
          if (depth <= 0 && cl > 0) inrp = 0
        }' "$f"
      # Local child modules: `source = "./..."` or `"../..."`.
      for s in $(sed -n 's/^[ \t]*source[ \t]*=[ \t]*"\(\.\.\{0,1\}\/[^"]*\)".*/\1/p' "$f"); do
        todo="$todo $(cd "$dir/$s" && pwd)"
      done
    done
  done | sort -u
}

# The newest version of $1 (namespace/name) in a mirror for this platform, among those allowed by
# the constraints in $2 (newline-separated); "best<TAB>all versions seen" on stdout.
mirror_versions() {
  ns_name=$1
  for m in $mirrors; do
    d="$m/registry.terraform.io/$ns_name"
    [ -d "$d" ] || continue
    for e in "$d"/*; do
      b=$(basename "$e")
      case $b in
        *_"$platform".zip) b=${b#terraform-provider-*_}; echo "${b%_"$platform".zip}" ;;
        [0-9]*) [ -d "$e/$platform" ] && echo "$b" ;;
      esac
    done
  done | sort -t. -k1,1n -k2,2n -k3,3n -u
}

terraform_checks() {
  if ! command -v terraform >/dev/null 2>&1; then
    say "skip: no terraform binary on PATH (fmt, validate and terraform test not run)"
    return 0
  fi
  mirrors=
  for m in $(printf '%s' "${TF_PLUGIN_MIRROR:-}" | tr ':' ' ') /opt/tf-plugins "$HOME/.terraform.d/plugins" \
    "$HOME/.local/share/terraform/plugins" /usr/local/share/terraform/plugins /usr/share/terraform/plugins; do
    [ -d "$m/registry.terraform.io" ] && mirrors="$mirrors $m"
  done
  # Install only from the mirrors; never from the network.
  {
    echo "provider_installation {"
    for m in $mirrors; do
      printf '  filesystem_mirror {\n    path    = "%s"\n    include = ["registry.terraform.io/*/*"]\n  }\n' "$m"
    done
    printf '  direct {\n    exclude = ["*/*"]\n  }\n}\n'
  } >"$tmp/cli.tfrc"
  export TF_CLI_CONFIG_FILE="$tmp/cli.tfrc" TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
  unset TF_PLUGIN_CACHE_DIR TF_WORKSPACE 2>/dev/null || true
  say "$(terraform version | head -n 1); provider mirrors:${mirrors:- none}"
  platform=$(terraform version -json | sed -n 's/.*"platform": *"\([^"]*\)".*/\1/p')

  if terraform fmt -check -recursive -diff infra >"$tmp/fmt.log" 2>&1; then
    say "fmt: OK"
  else
    cat "$tmp/fmt.log"
    say "FAILED: terraform fmt -check -recursive infra (run terraform fmt -recursive infra)"
    failed=1
  fi

  # A copy of infra/ without tool directories, so lock files and .terraform stay out of the tree.
  mkdir "$tmp/copy"
  tar -C "$root" --exclude=node_modules --exclude=.terraform --exclude=.terraform.lock.hcl -cf - infra | tar -C "$tmp/copy" -xf -
  # The Lambda example points artifact_path at the cargo lambda build output; validate needs no file.

  for dir in infra/modules/routes infra/modules/routes/edge infra/modules/routes/lambda infra/modules/lambda \
    infra/modules/edge infra/examples/edge infra/examples/lambda; do
    [ -d "$dir" ] || continue
    requirements "$root/$dir" >"$tmp/requirements"
    missing=
    tab=$(printf '\t')
    while IFS=$tab read -r src con; do
      case $src in */*) ;; *) src="hashicorp/$src" ;; esac
      have=$(mirror_versions "$src")
      ok=
      for v in $have; do satisfies "$v" "$con" && ok=$v; done
      if [ -z "$ok" ]; then
        missing="$missing${missing:+; }needs $src $con, $(if [ -n "$have" ]; then echo "mirror has $(echo $have | tr ' ' ',')"; else echo "no mirror has it"; fi)"
      fi
    done <"$tmp/requirements"
    if [ -n "$missing" ]; then
      say "skip: $dir: $missing"
      continue
    fi
    data="$tmp/data-$(echo "$dir" | tr '/' '-')"
    log="$tmp/log"
    start=$(date +%s)
    if ! (cd "$tmp/copy/$dir" && TF_DATA_DIR="$data" terraform init -backend=false -input=false -no-color >"$log" 2>&1); then
      cat "$log"; say "FAILED: $dir: terraform init"; failed=1; continue
    fi
    if ! (cd "$tmp/copy/$dir" && TF_DATA_DIR="$data" terraform validate -no-color >"$log" 2>&1); then
      cat "$log"; say "FAILED: $dir: terraform validate"; failed=1; continue
    fi
    tests=$(ls "$tmp/copy/$dir"/tests/*.tftest.hcl "$tmp/copy/$dir"/*.tftest.hcl 2>/dev/null | wc -l)
    if [ "$tests" -eq 0 ]; then
      say "$dir: init, validate OK; no tests ($(($(date +%s) - start)) s)"
      continue
    fi
    if (cd "$tmp/copy/$dir" && TF_DATA_DIR="$data" terraform test -no-color >"$log" 2>&1); then
      say "$dir: init, validate OK; terraform test: $(tail -n 1 "$log" | sed 's/^Success! //') ($(($(date +%s) - start)) s)"
    else
      cat "$log"; say "FAILED: $dir: terraform test"; failed=1
    fi
  done
}

# ---- schema and README checks (Node.js) --------------------------------------------------------

node_checks() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "skip: no node/npm (provider schema check and README tables not checked)"
    return 0
  fi
  dir=infra/check/schema
  if [ ! -d "$dir/node_modules/@cdktf/hcl2json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    if ! (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts >"$tmp/npm.log" 2>&1); then
      tail -n 5 "$tmp/npm.log"
      say "skip: npm ci in $dir failed (provider schema check and README tables not checked)"
      return 0
    fi
  fi
  node "$dir/check.mjs" $offline || failed=1
  if [ -n "$offline" ]; then export GATEWAY_SCHEMA_OFFLINE=1; fi
  if node --test "$dir/test.mjs" >"$tmp/node-test.log" 2>&1; then
    say "schema check tests: $(grep -E '^# (pass|skipped)' "$tmp/node-test.log" | tr '\n' ' ')"
  else
    cat "$tmp/node-test.log"; say "FAILED: node --test $dir/test.mjs"; failed=1
  fi
  node "$dir/readme.mjs" --check || failed=1
}

terraform_checks
node_checks
if [ "$failed" -ne 0 ]; then
  say FAILED
  exit 1
fi
say OK
