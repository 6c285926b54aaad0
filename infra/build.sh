#!/usr/bin/env bash
# Builds the three Lambda functions (api, deliver, retry) for provided.al2023 on arm64 with
# `sam build`, which runs `cargo lambda build --release --arm64 --bin <name>` for each
# (BuildMethod: rust-cargolambda in template.yaml). cargo-lambda and zig come from PyPI
# (infra/requirements-lambda-build.txt, installed into .venv-sam by `infra/sam-tools.sh build`), so the machine
# needs only Rust (rustup), Python 3 and access to crates.io and PyPI; no Docker.
# Prints each function's bootstrap size and the build time. Extra arguments go to `sam build`.
#
# The three builds share one cargo target directory, so the dependencies are compiled once; each
# binary then gets its own LTO link. It is not the workspace's `target/` itself, so this release
# cross-build never waits for (or blocks) a `cargo test` running at the same time. Set
# HOOKLINE_LAMBDA_TARGET_DIR to put it elsewhere (a CI cache, say).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

"$root/infra/sam-tools.sh" build
export PATH="$root/.venv-sam/bin:$PATH"
export SAM_CLI_TELEMETRY=0
export CARGO_TARGET_DIR="${HOOKLINE_LAMBDA_TARGET_DIR:-$root/target/lambda-build}"

# cargo-lambda would add the target itself; doing it here gives a clear error if rustup is missing.
if command -v rustup > /dev/null 2>&1; then
  if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    rustup target add aarch64-unknown-linux-gnu
  fi
else
  echo "rustup not found: install the Rust target aarch64-unknown-linux-gnu yourself" >&2
fi

start=$(date +%s)
sam build --template-file template.yaml "$@"
seconds=$(( $(date +%s) - start ))

status=0
echo
echo "Lambda bootstrap binaries (arm64):"
for fn in ApiFunction DeliverFunction RetryFunction StreamFunction; do
  binary=".aws-sam/build/$fn/bootstrap"
  if [ ! -f "$binary" ]; then
    echo "  $fn: missing $binary" >&2
    status=1
    continue
  fi
  bytes=$(stat -c %s "$binary")
  # ELF e_machine (2 bytes, little endian, at offset 18): 183 is AArch64.
  machine=$(od -An -j18 -N2 -tu2 "$binary" | tr -d ' ')
  if [ "$machine" != 183 ]; then
    echo "  $fn: $binary is not an arm64 executable (ELF machine $machine)" >&2
    status=1
  fi
  awk -v fn="$fn" -v b="$bytes" -v p="$binary" \
    'BEGIN { printf "  %-16s %10d bytes  %6.2f MB  %s\n", fn, b, b / 1048576, p }'
done
echo "sam build took ${seconds}s ($(( seconds / 60 ))m $(( seconds % 60 ))s)"
exit "$status"
