#!/usr/bin/env bash
# The load checks of docs/load.md at full size, in release mode, through the local runner on
# 127.0.0.1: CLICKS rating clicks (default 10000) once with last-write-wins and once with
# forbid_rating_change, then DELIVERIES signed webhook deliveries (default 10000, 20% of them
# redelivered, shuffled), over CONNECTIONS keep-alive connections (default 32). Prints each
# run's throughput against the health endpoint at the same concurrency, p50/p99, and the checks.
# Exits non-zero if a check failed. Bounded: each run sends its count once.
set -euo pipefail
cd "$(dirname "$0")/.."
CLICKS=${CLICKS:-10000} DELIVERIES=${DELIVERIES:-10000} CONNECTIONS=${CONNECTIONS:-32}
cargo build --release -p closedloop --example load
"${CARGO_TARGET_DIR:-target}/release/examples/load" "$CLICKS" "$DELIVERIES" "$CONNECTIONS"
