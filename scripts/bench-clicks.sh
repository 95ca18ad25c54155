#!/usr/bin/env bash
# Rating clicks per second through the local runner (embedded store), against the runner's
# health endpoint in the same run; p50/p99 at a fixed rate; and a check that every click answered
# 200 is a review in the store. Loopback only, bounded: CLICKS links (default 20000), each clicked
# once, CONNECTIONS (32), then RATE req/s (1000) for DURATION seconds (10) per target.
# Exits non-zero if a rating was lost.
set -euo pipefail
cd "$(dirname "$0")/.."
CLICKS=${CLICKS:-20000} CONNECTIONS=${CONNECTIONS:-32} RATE=${RATE:-1000} DURATION=${DURATION:-10}
cargo build --release -p closedloop --example bench_clicks
"${CARGO_TARGET_DIR:-target}/release/examples/bench_clicks" "$CLICKS" "$CONNECTIONS" "$RATE" "$DURATION"
