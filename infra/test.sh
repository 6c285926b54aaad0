#!/usr/bin/env bash
# Runs every test on a machine that has only Rust and Python: installs the Python tools,
# lints the SAM template, starts moto, runs the whole Rust test suite, stops moto, then fuzzes
# the local server's API against its OpenAPI document with schemathesis, then drives the portal
# and console in headless Chromium (tests/browser).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

echo "== Python tools (moto, cfn-lint, schemathesis, standardwebhooks) =="
infra/python-tools.sh

echo "== cfn-lint template.yaml =="
.venv/bin/cfn-lint template.yaml

echo "== sam validate --lint template.yaml =="
# Its own venv (infra/sam-tools.sh). Offline: no AWS call and no credentials needed.
infra/sam-tools.sh
SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 \
  .venv-sam/bin/sam validate --lint --template template.yaml
# cfn-lint skips some rules (IAM action names) on SAM templates: lint the transformed one too.
.venv-sam/bin/python infra/sam-lint.py template.yaml

echo "== moto =="
port="${HOOKLINE_MOTO_PORT:-5055}"
infra/moto.sh start "$port"
trap 'infra/moto.sh stop' EXIT
export HOOKLINE_TEST_MOTO_ENDPOINT="http://127.0.0.1:$port"
export HOOKLINE_TEST_PYTHON="$root/.venv/bin/python"

echo "== cargo test =="
cargo test --workspace --locked "$@"

echo "== schemathesis against hookline serve =="
# cargo test built the local binary for its end-to-end tests.
infra/schemathesis.sh "$root/target/debug/hookline"

echo "== browser tests (portal and console, headless Chromium) =="
infra/browser-tests.sh "$root/target/debug/hookline"
