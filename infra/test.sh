#!/usr/bin/env bash
# Runs every test on a machine that has only Rust and Python: installs the Python tools,
# lints the SAM template, starts moto, runs the whole Rust test suite, stops moto, then fuzzes
# the local server's API against its OpenAPI document with schemathesis.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

echo "== Python tools (moto, cfn-lint, schemathesis) =="
infra/python-tools.sh

echo "== cfn-lint template.yaml =="
.venv/bin/cfn-lint template.yaml

echo "== moto =="
port="${HOOKLINE_MOTO_PORT:-5055}"
infra/moto.sh start "$port"
trap 'infra/moto.sh stop' EXIT
export HOOKLINE_TEST_MOTO_ENDPOINT="http://127.0.0.1:$port"

echo "== cargo test =="
cargo test --workspace --locked "$@"

echo "== schemathesis against hookline serve =="
# cargo test built the local binary for its end-to-end tests.
infra/schemathesis.sh "$root/target/debug/hookline"
