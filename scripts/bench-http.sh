#!/usr/bin/env bash
# HTTP benchmark of the local runner against a bare axum hello-world, in the same run.
# Loopback only, bounded: DURATION seconds per target (default 10), CONNECTIONS (default 32).
# Prints requests/s and p50/p99 for each, and the ratio runner/bare.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -p closedloop --bin closedloop --example bare_axum
target=${CARGO_TARGET_DIR:-target}
data=$(mktemp -d)
"$target/release/closedloop" up --data-dir "$data" --port 18080 >/dev/null 2>"$data/runner.log" & runner=$!
"$target/release/examples/bare_axum" 127.0.0.1:18081 & bare=$!
trap 'kill $runner $bare 2>/dev/null; rm -rf "$data"' EXIT
for port in 18080 18081; do
  until curl -fs "http://127.0.0.1:$port/admin/v1/health" >/dev/null; do sleep 0.1; done
done
run() { wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$1/admin/v1/health"; }
bare_out=$(run 18081); runner_out=$(run 18080)
rps() { awk '/Requests\/sec/ {print $2}' <<<"$1"; }
pct() { awk -v p="$2" '$1 == p {print $2}' <<<"$1"; }
printf '%-8s %12s %10s %10s\n' target req/s p50 p99
printf '%-8s %12s %10s %10s\n' bare "$(rps "$bare_out")" "$(pct "$bare_out" 50%)" "$(pct "$bare_out" 99%)"
printf '%-8s %12s %10s %10s\n' runner "$(rps "$runner_out")" "$(pct "$runner_out" 50%)" "$(pct "$runner_out" 99%)"
awk -v a="$(rps "$runner_out")" -v b="$(rps "$bare_out")" 'BEGIN { printf "runner/bare throughput ratio: %.2f\n", a / b }'
