#!/usr/bin/env bash
# Creates or updates the Python venv holding the local AWS tooling (moto, ministack, SAM CLI,
# cargo-lambda, cfn-lint), then prints its path. Fast no-op when the pinned set is already there.
#
#   scripts/venv.sh            # -> /root/.cache/closedloop/venv
#   CLOSEDLOOP_VENV=/x scripts/venv.sh
#
# Use it as: VENV=$(scripts/venv.sh); export PATH="$VENV/bin:$PATH"
set -euo pipefail

CACHE="${CLOSEDLOOP_CACHE:-$HOME/.cache/closedloop}"
VENV="${CLOSEDLOOP_VENV:-$CACHE/venv}"
PYTHON="${PYTHON:-python3}"

# One resolvable set (ministack pins botocore exactly; boto3 must match it).
REQUIREMENTS=(
  'moto[server]==5.2.5'
  'boto3==1.43.102'
  'ministack[full]==1.5.33'
  'aws-sam-cli==1.167.0'
  'cfn-lint==1.53.3'
  'cargo-lambda==1.9.2'
)
# Commands the scripts use; all must exist for the no-op path.
COMMANDS=(moto_server ministack sam cfn-lint cargo-lambda)

want="$(printf '%s\n' "${REQUIREMENTS[@]}")"
stamp="$VENV/.closedloop-requirements"

satisfied() {
  [[ -x "$VENV/bin/python" && -f "$stamp" ]] || return 1
  [[ "$(cat "$stamp")" == "$want" ]] || return 1
  local c
  for c in "${COMMANDS[@]}"; do [[ -x "$VENV/bin/$c" ]] || return 1; done
}

if ! satisfied; then
  mkdir -p "$(dirname "$VENV")"
  # Serialise concurrent callers (two terminals, CI + a developer).
  exec 9>"$VENV.lock"
  flock 9
  if ! satisfied; then
    echo "venv.sh: installing the pinned tools into $VENV" >&2
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" >&2
    for c in "${COMMANDS[@]}"; do
      [[ -x "$VENV/bin/$c" ]] || { echo "venv.sh: $c missing after install" >&2; exit 1; }
    done
    printf '%s\n' "$want" >"$stamp"
  fi
  exec 9>&-
fi

echo "$VENV"
