# Shared by the project's scripts: paths, the Python venv, waiting for ports.
# shellcheck shell=bash
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
STACK_DIR="$ROOT/.stack"
export SAM_CLI_TELEMETRY=0

# A phase line, with the time since the script started, so a slow phase shows where it is.
log() { printf '\033[1m==> [%2dm%02ds] %s\033[0m\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }

# Creates .venv and installs scripts/requirements.txt when it changed (a stamp keeps it idempotent).
ensure_venv() {
  local req="$ROOT/scripts/requirements.txt" con="$ROOT/scripts/constraints.txt"
  local stamp="$VENV/.requirements.stamp"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || ! cat "$req" "$con" | cmp -s - "$stamp"; then
    log "installing Python tools (moto, boto3, cryptography, cargo-lambda, SAM CLI, cfn-lint) into .venv"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req" -c "$con"
    cat "$req" "$con" >"$stamp"
  fi
  # aws-encryption-cli, which bundles the AWS Encryption SDK 3.x, in a venv of its own.
  local cli="$ROOT/.venv-cli" cli_req="$ROOT/scripts/requirements-cli.txt"
  if [ ! -x "$cli/bin/python" ]; then
    python3 -m venv "$cli"
  fi
  if ! cmp -s "$cli_req" "$cli/.requirements.stamp"; then
    log "installing aws-encryption-cli into .venv-cli (the README's emergency command, tested)"
    "$cli/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$cli_req"
    cp "$cli_req" "$cli/.requirements.stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

# wait_for_port PORT SECONDS
wait_for_port() {
  local port=$1 deadline=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    [ $SECONDS -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# cargo-deny, built once into .tools/ (git-ignored); pinned.
ensure_cargo_deny() {
  if [ ! -x "$ROOT/.tools/bin/cargo-deny" ]; then
    log "installing cargo-deny into .tools (one time, a few minutes)"
    # A debug build: cargo-deny's release profile (fat LTO, one codegen unit) takes three times
    # as long to compile, and a check of this workspace takes seconds either way.
    cargo install --quiet --locked --debug cargo-deny --version 0.20.2 --root "$ROOT/.tools"
  fi
  export PATH="$ROOT/.tools/bin:$PATH"
}

# rustack (MIT): a multi-threaded, AWS-like emulator of DynamoDB, KMS and SQS. The bench runs on
# it by default and one end-to-end test proves the function there. Built once into .tools/,
# pinned; not --locked, because its lock file names a crate version the registry lacks.
RUSTACK_VERSION=0.12.0
ensure_rustack() {
  if ! "$ROOT/.tools/bin/rustack" --version 2>/dev/null | grep -qx "rustack $RUSTACK_VERSION"; then
    log "installing rustack $RUSTACK_VERSION into .tools (one time, about 5-11 minutes)"
    cargo install --quiet rustack-cli --version "$RUSTACK_VERSION" --no-default-features \
      --features dynamodb,kms,sqs --root "$ROOT/.tools"
  fi
}
