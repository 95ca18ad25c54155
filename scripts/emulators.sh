#!/usr/bin/env bash
# Local AWS emulators on loopback, for the tests:
#   moto_server  (adapter tests)            127.0.0.1:${CLOSEDLOOP_MOTO_PORT:-5055}
#   ministack    (the deployed SAM stack)   127.0.0.1:${CLOSEDLOOP_MINISTACK_PORT:-4566}, AUTH=true
#
#   scripts/emulators.sh up       # start both (no-op for one already healthy), wait for health
#   scripts/emulators.sh down     # stop both by pid, with their children (warm Lambda bootstraps)
#   scripts/emulators.sh status
#
# Pid files, logs and ministack's TMPDIR live under .emulators/ in the repository root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${CLOSEDLOOP_EMULATORS_DIR:-$ROOT/.emulators}"
MOTO_PORT="${CLOSEDLOOP_MOTO_PORT:-5055}"
MINISTACK_PORT="${CLOSEDLOOP_MINISTACK_PORT:-4566}"
HOST=127.0.0.1
START_TIMEOUT="${CLOSEDLOOP_EMULATORS_TIMEOUT:-60}"

log() { echo "emulators.sh: $*" >&2; }

venv_bin() {
  local venv
  venv="$("$ROOT/scripts/venv.sh")"
  echo "$venv/bin"
}

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

read_pid() { [[ -f "$STATE/$1.pid" ]] && cat "$STATE/$1.pid" || true; }

health_url() {
  case "$1" in
    moto) echo "http://$HOST:$MOTO_PORT/moto-api/" ;;
    ministack) echo "http://$HOST:$MINISTACK_PORT/_ministack/health" ;;
  esac
}

healthy() { curl -fsS -o /dev/null --max-time 2 "$(health_url "$1")" 2>/dev/null; }

port_of() { case "$1" in moto) echo "$MOTO_PORT" ;; ministack) echo "$MINISTACK_PORT" ;; esac; }

# All descendants of a pid, deepest last (ps is enough; no /proc walking needed).
descendants() {
  local kids k
  kids="$(ps -o pid= --ppid "$1" 2>/dev/null || true)"
  for k in $kids; do
    echo "$k"
    descendants "$k"
  done
}

start_one() {
  local name="$1"; shift
  local pid
  pid="$(read_pid "$name")"
  if pid_alive "$pid" && healthy "$name"; then
    log "$name already up (pid $pid)"
    return 0
  fi
  if healthy "$name"; then
    log "port $(port_of "$name") already serves $name but not from $STATE/$name.pid; stop that one first"
    return 1
  fi
  # setsid: own process group, so `down` can signal the whole group by the pid we record.
  setsid "$@" >"$STATE/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/$name.pid"
  log "$name starting (pid $!, log $STATE/$name.log)"
}

wait_healthy() {
  local name="$1" pid deadline
  pid="$(read_pid "$name")"
  deadline=$((SECONDS + START_TIMEOUT))
  until healthy "$name"; do
    if ! pid_alive "$pid"; then
      log "$name exited during startup; last lines of its log:"
      tail -n 30 "$STATE/$name.log" >&2 || true
      return 1
    fi
    if ((SECONDS > deadline)); then
      log "$name not healthy after ${START_TIMEOUT}s; last lines of its log:"
      tail -n 30 "$STATE/$name.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
  log "$name healthy at $(health_url "$name")"
}

stop_one() {
  local name="$1" pid procs p i
  pid="$(read_pid "$name")"
  if ! pid_alive "$pid"; then
    rm -f "$STATE/$name.pid"
    return 0
  fi
  # Collect the tree first (children may have left the process group, e.g. warm bootstraps).
  procs="$pid $(descendants "$pid" | tr '\n' ' ')"
  kill -TERM -- "-$pid" 2>/dev/null || true
  for p in $procs; do kill -TERM "$p" 2>/dev/null || true; done
  for i in $(seq 1 50); do
    local left=""
    for p in $procs; do pid_alive "$p" && left="$left $p"; done
    [[ -z "$left" ]] && break
    sleep 0.1
  done
  for p in $procs; do pid_alive "$p" && kill -KILL "$p" 2>/dev/null || true; done
  rm -f "$STATE/$name.pid"
  log "$name stopped (pid $pid)"
}

up() {
  mkdir -p "$STATE/tmp"
  local bin
  bin="$(venv_bin)"
  start_one moto "$bin/moto_server" -H "$HOST" -p "$MOTO_PORT"
  # ministack runs Lambda bootstraps as its own child processes with its environment: they must
  # see the emulator as their endpoint (AUTH=true gives each one its role's session credentials).
  start_one ministack env \
    AUTH=true \
    BIND_HOST="$HOST" \
    GATEWAY_PORT="$MINISTACK_PORT" \
    IOT_MTLS_ENABLED=0 \
    SFTP_ENABLED=0 \
    TMPDIR="$STATE/tmp" \
    AWS_ENDPOINT_URL="http://$HOST:$MINISTACK_PORT" \
    AWS_ACCESS_KEY_ID=test \
    AWS_SECRET_ACCESS_KEY=test \
    AWS_DEFAULT_REGION=us-east-1 \
    AWS_REGION=us-east-1 \
    SAM_CLI_TELEMETRY=0 \
    "$bin/ministack"
  wait_healthy moto
  wait_healthy ministack
}

down() {
  stop_one ministack
  stop_one moto
}

status() {
  local name pid
  for name in moto ministack; do
    pid="$(read_pid "$name")"
    if pid_alive "$pid" && healthy "$name"; then echo "$name up (pid $pid, port $(port_of "$name"))"
    elif pid_alive "$pid"; then echo "$name running but unhealthy (pid $pid)"
    else echo "$name down"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
