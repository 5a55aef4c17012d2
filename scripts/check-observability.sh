#!/usr/bin/env bash
# Checks infra/observability's Prometheus files with promtool: the alert rules
# (`promtool check rules`), their unit tests (`promtool test rules alerts.test.yml`)
# and the scrape config (`promtool check config --syntax-only`, since the token
# file it names exists only on the Prometheus host).
#
#   scripts/check-observability.sh           # skips, saying so, when promtool is absent
#   scripts/check-observability.sh --fetch   # else takes promtool from Debian's
#                                            # `prometheus` package into target/promtool
#
# PROMTOOL=/path/to/promtool picks a binary. The metric names and the dashboard are
# checked by `cargo test -p gateway-core --test observability_assets`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dir=infra/observability/prometheus

promtool=${PROMTOOL:-$(command -v promtool || true)}
cached=target/promtool/usr/bin/promtool
if [[ -z $promtool && -x $cached ]]; then
  promtool=$cached
fi
if [[ -z $promtool && ${1:-} == --fetch ]]; then
  # The .deb only, unpacked here: installing the package would also set up a service.
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  chmod a+rwx "$tmp"  # apt fetches as _apt
  if (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) && mkdir -p target/promtool \
    && dpkg-deb -x "$tmp"/prometheus_*.deb target/promtool; then
    promtool=$cached
  else
    echo "check-observability: could not fetch Debian's prometheus package"
  fi
fi
if [[ -z $promtool ]]; then
  echo "check-observability: SKIPPED, no promtool (install Debian's prometheus package, set PROMTOOL, or pass --fetch)"
  exit 0
fi

"$promtool" --version 2>&1 | head -n 1
"$promtool" check rules "$dir/alerts.yml"
"$promtool" test rules "$dir/alerts.test.yml"
"$promtool" check config --syntax-only "$dir/scrape.yml"
echo "check-observability: OK"
