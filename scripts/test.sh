#!/usr/bin/env bash
# Runs the whole test suite: the browser test's npm packages, tooling venv, emulators (moto +
# ministack), template lint, a deploy of the stack into ministack, then every cargo test with the
# emulator-backed suites switched on (the headless-Chromium test of the rating page among them).
# The emulators are stopped on exit, whatever happens.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -- -p closedloop-tests --test deployed_stack   # extra `cargo test` arguments
#
# Ports: CLOSEDLOOP_MOTO_PORT (5055), CLOSEDLOOP_MINISTACK_PORT (4566). Keep the emulators running
# afterwards with CLOSEDLOOP_KEEP_EMULATORS=1 (stop them with scripts/emulators.sh down).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MOTO_PORT="${CLOSEDLOOP_MOTO_PORT:-5055}"
MINISTACK_PORT="${CLOSEDLOOP_MINISTACK_PORT:-4566}"
export CLOSEDLOOP_MOTO_PORT="$MOTO_PORT" CLOSEDLOOP_MINISTACK_PORT="$MINISTACK_PORT"

CARGO_TEST_ARGS=()
if [[ "${1:-}" == "--" ]]; then shift; CARGO_TEST_ARGS=("$@"); fi

TIMINGS=()
T_ALL=$(date +%s%N)
phase() {
  local name="$1"; shift
  local t0 ms rc=0
  echo "test.sh: ── $name" >&2
  t0=$(date +%s%N)
  "$@" || rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  TIMINGS+=("$(printf '%-34s %6d.%01d s%s' "$name" $((ms / 1000)) $((ms % 1000 / 100)) "$([[ $rc == 0 ]] || echo "  (failed: $rc)")")")
  echo "test.sh: ── $name: $((ms / 1000)).$((ms % 1000 / 100)) s" >&2
  return "$rc"
}
report() {
  local rc=$?
  trap - EXIT
  if [[ "${CLOSEDLOOP_KEEP_EMULATORS:-0}" != 1 ]]; then
    "$ROOT/scripts/emulators.sh" down || true
  fi
  echo "test.sh: timings" >&2
  local line
  for line in "${TIMINGS[@]}"; do echo "  $line" >&2; done
  local ms=$((($(date +%s%N) - T_ALL) / 1000000))
  echo "  $(printf '%-34s %6d.%01d s' total $((ms / 1000)) $((ms % 1000 / 100)))" >&2
  exit "$rc"
}
trap report EXIT

# playwright-core for the browser test (tests/browser; the browser is Debian's chromium). Reinstalls
# only when the lockfile changed since the last `npm ci`.
browser_tools() {
  local dir="$ROOT/tests/browser"
  command -v npm >/dev/null || { echo "test.sh: npm not found (apt-get install nodejs npm)" >&2; return 1; }
  if cmp -s "$dir/package-lock.json" "$dir/node_modules/.installed-lock.json"; then
    echo "test.sh: tests/browser/node_modules matches package-lock.json" >&2
    return 0
  fi
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) &&
    cp "$dir/package-lock.json" "$dir/node_modules/.installed-lock.json"
}
phase "browser test tools (npm ci)" browser_tools

venv() { VENV="$("$ROOT/scripts/venv.sh")"; }
phase "venv" venv
export PATH="$VENV/bin:$PATH"
export SAM_CLI_TELEMETRY=0

phase "emulators up" "$ROOT/scripts/emulators.sh" up

# (phase runs its command in an `||` context, where set -e is off: chain with &&.)
lint() {
  cfn-lint template.yaml &&
    AWS_DEFAULT_REGION=us-east-1 sam validate --lint --template-file template.yaml
}
phase "lint (cfn-lint, sam validate)" lint

phase "deploy into ministack" "$ROOT/scripts/deploy-ministack.sh"

# shellcheck source=/dev/null
source "${CLOSEDLOOP_EMULATORS_DIR:-$ROOT/.emulators}/stack.env"
export AWS_ENDPOINT_URL_MOTO="http://127.0.0.1:$MOTO_PORT"
export CLOSEDLOOP_MINISTACK_URL="http://127.0.0.1:$MINISTACK_PORT"
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL

# The emulator-backed suites (moto adapter tests, tests against the deployed stack).
FEATURES=(--features closedloop-tests/emulators,closedloop-aws/emulators)

phase "cargo test" cargo test --workspace "${FEATURES[@]}" "${CARGO_TEST_ARGS[@]}"
