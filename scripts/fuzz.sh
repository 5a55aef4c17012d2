#!/usr/bin/env bash
# Coverage-guided fuzzing of gateway-core with cargo-fuzz (libFuzzer).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Builds the fuzz targets of fuzz/ (its own cargo workspace, nightly toolchain)
# under the repo's target/fuzz, then runs each target (default: all of them)
# for SECONDS (default 20), starting from the committed seeds in
# fuzz/seeds/<target> and the git-ignored working corpus fuzz/corpus/<target>,
# which keeps what earlier runs found. Prints each target's executions and
# crashes and exits non-zero if any target crashed. A crashing input is written
# to fuzz/artifacts/<target>/; replay it with
#   cargo +nightly fuzz run --fuzz-dir fuzz --target-dir target/fuzz <target> <file>
#
# Environment: FUZZ_TOOLCHAIN (default nightly); FUZZ_SANITIZER (default none:
# gateway-core has no `unsafe`, and without AddressSanitizer the targets run 2-9x
# more inputs per second on this 2-core machine; `address` is cargo-fuzz's own
# default, for when unsafe code or a C dependency joins); FUZZ_RSS_LIMIT_MB (2048).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PER_TARGET="${1:-20}"
if ! [[ "$PER_TARGET" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (SECONDS a whole number > 0, default 20)" >&2
    exit 2
fi
shift || true

TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
SANITIZER="${FUZZ_SANITIZER:-none}"
RSS_LIMIT_MB="${FUZZ_RSS_LIMIT_MB:-2048}"
FUZZ_DIR="$ROOT/fuzz"
TARGET_DIR="$ROOT/target/fuzz"
LOG_DIR="$TARGET_DIR/logs"

# libFuzzer needs a nightly compiler (-Zsanitizer, sancov passes).
if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
    echo "fuzz: installing the $TOOLCHAIN toolchain" >&2
    rustup toolchain install "$TOOLCHAIN" --profile minimal
fi
if ! cargo "+$TOOLCHAIN" fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

FUZZ=(cargo "+$TOOLCHAIN" fuzz)
COMMON=(--fuzz-dir "$FUZZ_DIR" --target-dir "$TARGET_DIR" --sanitizer "$SANITIZER")

if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <("${FUZZ[@]}" list --fuzz-dir "$FUZZ_DIR")
fi
if [ "${#TARGETS[@]}" -eq 0 ]; then
    echo "fuzz: no fuzz targets found in $FUZZ_DIR" >&2
    exit 2
fi

mkdir -p "$LOG_DIR"
echo "fuzz: building ${TARGETS[*]} ($TOOLCHAIN, sanitizer $SANITIZER)"
build_start=$(date +%s)
if [ "$#" -gt 0 ]; then
    for t in "${TARGETS[@]}"; do
        "${FUZZ[@]}" build "${COMMON[@]}" "$t"
    done
else
    "${FUZZ[@]}" build "${COMMON[@]}"
fi
build_end=$(date +%s)
echo "fuzz: build took $((build_end - build_start)) s"

failed=0
summary=()
for t in "${TARGETS[@]}"; do
    corpus="$FUZZ_DIR/corpus/$t"
    seeds="$FUZZ_DIR/seeds/$t"
    mkdir -p "$corpus" "$seeds" "$FUZZ_DIR/artifacts/$t"
    log="$LOG_DIR/$t.log"
    echo "fuzz: running $t for ${PER_TARGET} s (log: ${log#"$ROOT"/})"
    set +e
    "${FUZZ[@]}" run "${COMMON[@]}" "$t" "$corpus" "$seeds" -- \
        -max_total_time="$PER_TARGET" -rss_limit_mb="$RSS_LIMIT_MB" -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1
    rc=$?
    set -e
    # libFuzzer's last line on a clean finish: "Done 123456 runs in 21 second(s)".
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)
    runs=$(sed -nE 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1/p' <<<"$done_line")
    secs=$(sed -nE 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\2/p' <<<"$done_line")
    if [ -z "$runs" ]; then
        # A crash ends the run before "Done"; the final stats still count the executions.
        runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)
        secs="?"
    fi
    # libFuzzer stops at the first crash, leak, timeout or OOM and writes the input.
    artifacts=$(sed -nE 's/.*Test unit written to ([^ ]+).*/\1/p' "$log" | sort -u)
    crashes=$(grep -c 'Test unit written to' "$log" || true)
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1
    fi
    line=$(printf '%-14s %10s runs in %3s s  %3s crash(es)' "$t" "${runs:-0}" "${secs:-?}" "$crashes")
    summary+=("$line")
    echo "fuzz: $line"
    if [ "$crashes" -ne 0 ] || [ "$rc" -ne 0 ]; then
        failed=1
        echo "fuzz: $t FAILED (exit $rc); panic and input:" >&2
        grep -E "panicked at|^Error|SUMMARY|ERROR" -A3 "$log" | head -n 40 >&2 || true
        if [ -n "$artifacts" ]; then
            echo "fuzz: crashing input(s): $artifacts" >&2
        else
            tail -n 30 "$log" >&2
        fi
    fi
done

echo
echo "fuzz summary (${PER_TARGET} s per target, build $((build_end - build_start)) s):"
printf '  %s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "fuzz: FAILED: at least one target crashed" >&2
    exit 1
fi
echo "fuzz: all targets ran without a crash"
