#!/usr/bin/env bash
# Builds the nine functions, deploys template.yaml into the running ministack (see
# scripts/emulators.sh up), patches ministack's gaps (docs/emulator-gaps.md), and writes the
# stack's coordinates to .emulators/stack.env for the tests.
#
#   scripts/deploy-ministack.sh            # build + sam build + sam deploy + post-deploy
#   scripts/deploy-ministack.sh --delete   # delete the stack (and its retained table)
#
# Environment (all optional):
#   CLOSEDLOOP_STACK_NAME      stack name (closedloop-test)
#   CLOSEDLOOP_MINISTACK_PORT  ministack port (4566)
#   CLOSEDLOOP_MAIL_FROM       MailFrom parameter (feedback@example.com)
#   CLOSEDLOOP_TOKEN_KEYS      TokenSigningKeys; default: generated once, kept in .emulators/token-keys
#   CLOSEDLOOP_SCHEDULES       ENABLED|DISABLED, the ScheduleState parameter (ENABLED)
#   CLOSEDLOOP_LOG_LEVEL       LogLevel parameter (info)
#   CLOSEDLOOP_PUBLIC_BASE_URL PublicBaseUrl parameter; default: the emulator's URL of the stack's API
#   LAMBDA_PROFILE             cargo profile of the bootstraps (emulator)
#   LAMBDA_ARCH                defaults to this host's (ministack runs the bootstraps natively)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STATE="${CLOSEDLOOP_EMULATORS_DIR:-$ROOT/.emulators}"
STACK="${CLOSEDLOOP_STACK_NAME:-closedloop-test}"
PORT="${CLOSEDLOOP_MINISTACK_PORT:-4566}"
MAIL_FROM="${CLOSEDLOOP_MAIL_FROM:-feedback@example.com}"
SCHEDULES="${CLOSEDLOOP_SCHEDULES:-ENABLED}"
LOG_LEVEL="${CLOSEDLOOP_LOG_LEVEL:-info}"
ENV_FILE="$STATE/stack.env"

case "$(uname -m)" in
  x86_64) HOST_ARCH=x86_64 ;;
  aarch64 | arm64) HOST_ARCH=arm64 ;;
  *) echo "deploy-ministack.sh: unsupported host $(uname -m)" >&2; exit 1 ;;
esac
export LAMBDA_ARCH="${LAMBDA_ARCH:-$HOST_ARCH}"
export LAMBDA_PROFILE="${LAMBDA_PROFILE:-emulator}"

VENV="$("$ROOT/scripts/venv.sh")"
export PATH="$VENV/bin:$PATH"
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
unset AWS_SESSION_TOKEN AWS_PROFILE
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export SAM_CLI_TELEMETRY=0

log() { echo "deploy-ministack.sh: $*" >&2; }
phase_start() { PHASE="$1"; PHASE_T0=$(date +%s%N); log "── $PHASE"; }
phase_end() {
  local ms=$((($(date +%s%N) - PHASE_T0) / 1000000))
  printf 'deploy-ministack.sh: ── %s took %d.%01d s\n' "$PHASE" $((ms / 1000)) $((ms % 1000 / 100)) >&2
}

# One output of the stack (empty when the stack or the output does not exist).
stack_output() {
  "$VENV/bin/python" - "$STACK" "$1" <<'PY'
import sys, boto3
from botocore.exceptions import ClientError
try:
    st = boto3.client("cloudformation").describe_stacks(StackName=sys.argv[1])["Stacks"][0]
except ClientError:
    sys.exit(0)
print({o["OutputKey"]: o["OutputValue"] for o in st.get("Outputs", [])}.get(sys.argv[2], ""))
PY
}

if ! curl -fsS -o /dev/null --max-time 3 "$AWS_ENDPOINT_URL/_ministack/health"; then
  log "ministack is not answering on $AWS_ENDPOINT_URL; run scripts/emulators.sh up first"
  exit 1
fi
mkdir -p "$STATE"

if [[ "${1:-}" == "--delete" ]]; then
  table="$(stack_output TableName)"
  sam delete --stack-name "$STACK" --no-prompts --region us-east-1
  if [[ -n "$table" ]]; then
    # DeletionPolicy: Retain keeps the table in AWS; in the emulator it would only pile up.
    "$VENV/bin/python" - "$table" <<'PY'
import sys, boto3
c = boto3.client("dynamodb")
try:
    c.delete_table(TableName=sys.argv[1])
    print("deploy-ministack.sh: deleted the retained table", sys.argv[1], file=sys.stderr)
except c.exceptions.ResourceNotFoundException:
    pass
PY
  fi
  rm -f "$ENV_FILE"
  exit 0
fi

# Token signing keys: stable across redeploys (links already sent stay valid).
if [[ -n "${CLOSEDLOOP_TOKEN_KEYS:-}" ]]; then
  TOKEN_KEYS="$CLOSEDLOOP_TOKEN_KEYS"
else
  if [[ ! -s "$STATE/token-keys" ]]; then
    (umask 077 && "$VENV/bin/python" -c 'import base64, secrets
print("k1:" + base64.b64encode(secrets.token_bytes(32)).decode())' >"$STATE/token-keys")
  fi
  TOKEN_KEYS="$(cat "$STATE/token-keys")"
fi

phase_start "cargo lambda build of the nine bootstraps (LAMBDA_ARCH=$LAMBDA_ARCH LAMBDA_PROFILE=$LAMBDA_PROFILE)"
make --no-print-directory lambda-bins
phase_end

phase_start "sam build"
# --build-in-source: make runs in this directory against the shared target dir (no copy of the
# workspace per function); each build-<LogicalId> is a cargo no-op plus a copy.
sam build --build-in-source --template-file template.yaml --build-dir .aws-sam/build \
  --parameter-overrides "Architecture=$LAMBDA_ARCH"
phase_end

sam_deploy() {
  sam deploy \
    --template-file .aws-sam/build/template.yaml \
    --stack-name "$STACK" \
    --resolve-s3 \
    --capabilities CAPABILITY_IAM \
    --no-confirm-changeset \
    --no-fail-on-empty-changeset \
    --no-progressbar \
    --region us-east-1 \
    --parameter-overrides \
    "Architecture=$LAMBDA_ARCH" \
    "TokenSigningKeys=\"$TOKEN_KEYS\"" \
    "MailFrom=\"$MAIL_FROM\"" \
    "PublicBaseUrl=\"$1\"" \
    "ScheduleState=$SCHEDULES" \
    "LogLevel=\"$LOG_LEVEL\"" \
    "SesSendResourceScope=any"
}

# Links in mails must carry the emulator's reachable form of the API URL, which needs the API id:
# known up front on a redeploy; on a first deploy: deploy, read it, deploy again (env vars only).
emulator_api_url() { if [[ -n "$1" ]]; then echo "$AWS_ENDPOINT_URL/_aws/execute-api/$1"; fi; }

phase_start "sam deploy (stack $STACK)"
public_url="${CLOSEDLOOP_PUBLIC_BASE_URL:-$(emulator_api_url "$(stack_output ApiId)")}"
sam_deploy "$public_url"
if [[ -z "${CLOSEDLOOP_PUBLIC_BASE_URL:-}" ]]; then
  want_url="$(emulator_api_url "$(stack_output ApiId)")"
  if [[ "$want_url" != "$public_url" ]]; then
    log "deploying again with PublicBaseUrl=$want_url (the API id is known now)"
    sam_deploy "$want_url"
  fi
fi
phase_end

phase_start "post-deploy (emulator gaps, SES identity, $ENV_FILE)"
"$VENV/bin/python" "$ROOT/scripts/ministack_post_deploy.py" \
  --template template.yaml \
  --stack "$STACK" \
  --mail-from "$MAIL_FROM" \
  --token-keys "$TOKEN_KEYS" \
  --endpoint "$AWS_ENDPOINT_URL" \
  --env-file "$ENV_FILE"
phase_end
