#!/usr/bin/env bash
# Installs the pinned SAM CLI (infra/requirements-sam.txt) into .venv-sam, and with the argument
# `build` also the Rust Lambda build tools (infra/requirements-lambda-build.txt: cargo-lambda,
# zig), once per change of the requirements. A venv of its own: aws-sam-cli's
# dependencies would clash with the pinned test tools in .venv (infra/python-tools.sh).
# Prints nothing on success but what pip says the first time.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-sam"
stamp="$venv/.requirements.sha256"
requirements=("$root/infra/requirements-sam.txt")
if [ "${1:-}" = build ]; then
  requirements+=("$root/infra/requirements-lambda-build.txt")
fi
want="$(cat "${requirements[@]}" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv "$venv"
  args=()
  for file in "${requirements[@]}"; do args+=(-r "$file"); done
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${args[@]}"
  echo "$want" > "$stamp"
fi
