#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time, one at a time, and prints per
# target the inputs tried (libFuzzer's executed units) and the crashes found. Needs the nightly
# toolchain; installs cargo-fuzz when it is missing. docs/fuzzing.md explains the targets.
#
#   scripts/fuzz.sh                 # 180 seconds per target
#   scripts/fuzz.sh 60              # 60 seconds per target
#   scripts/fuzz.sh 60 rules tokens # only these targets
#   FUZZ_MERGE=1 scripts/fuzz.sh    # afterwards, add inputs with new coverage to fuzz/corpus
#
# New inputs go to a scratch corpus under the target dir; fuzz/corpus/<target> is read as seeds
# and only changes with FUZZ_MERGE=1 (shrink it with `cargo fuzz cmin <target>` if it grows).
# Crashes land in fuzz/artifacts/<target>/ (git-ignored):
# fix them, then copy the input into fuzz/regressions/<target>/ (replayed by `cargo test`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"
SECONDS_PER_TARGET="${1:-180}"
shift || true
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/fuzz"
WORK="$TARGET_DIR/corpus-work"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cargo +nightly fuzz list)
fi

# No sanitizer: the code under test is safe Rust, and the throughput matters more on 2 cores.
# Debug assertions (overflow checks) stay on, cargo fuzz's default.
FLAGS=(-s none --target-dir "$TARGET_DIR")
cargo +nightly fuzz build "${FLAGS[@]}"

status=0
declare -a SUMMARY
for target in "${TARGETS[@]}"; do
    mkdir -p "$WORK/$target" "artifacts/$target" "regressions/$target"
    before=$(find "artifacts/$target" -type f | wc -l)
    log="$WORK/$target.log"
    started=$(date +%s)
    set +e
    cargo +nightly fuzz run "${FLAGS[@]}" "$target" "$WORK/$target" "corpus/$target" "regressions/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -jobs=1 -workers=1 -timeout=10 \
        -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    elapsed=$(($(date +%s) - started))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    after=$(find "artifacts/$target" -type f | wc -l)
    crashes=$((after - before))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes="?"; fi
    # libFuzzer stops at the first crash, so a crashing run is shorter than asked.
    line="$target: ${execs:-?} inputs in ${elapsed}s, crashes: $crashes (log: $log)"
    echo "$line"
    SUMMARY+=("$line")
    if [ "$rc" -ne 0 ]; then
        status=1
        grep -m1 -A12 -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" >&2 || true
    fi
    if [ "${FUZZ_MERGE:-0}" = 1 ]; then
        # Into the committed corpus, which keeps its readable seeds: only inputs that reach new
        # edges (hit counts ignored, which keeps the set several times smaller).
        cargo +nightly fuzz run "${FLAGS[@]}" "$target" "corpus/$target" "$WORK/$target" \
            -- -merge=1 -use_counters=0 -max_len=4096 >"$WORK/$target.merge.log" 2>&1
    fi
done

echo
echo "== fuzz summary (${SECONDS_PER_TARGET}s per target) =="
printf '%s\n' "${SUMMARY[@]}"
exit "$status"
