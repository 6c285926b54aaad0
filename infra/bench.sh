#!/usr/bin/env bash
# Hookline's benchmark (not part of the test command: it takes about 10 minutes and wants an
# otherwise idle machine). Builds the release binaries, starts moto for the Lambda-path request
# counts, and runs target/release/hookline-bench; the results go to bench/results/latest.json
# and bench/results/latest.md. Arguments go to hookline-bench (serve, aws, lambda, --quick).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# `aws` alone needs only the benchmark itself (the handlers run in it, in-process).
parts=" $* "
if [[ "$parts" == *" aws "* && "$parts" != *" serve "* && "$parts" != *" lambda "* ]]; then
  echo "== cargo build --release (hookline-bench) =="
  cargo build --release --locked --bin hookline-bench
else
  echo "== cargo build --release (hookline, api, deliver, retry, stream, hookline-bench) =="
  cargo build --release --locked --bin hookline --bin api --bin deliver --bin retry --bin stream --bin hookline-bench
fi

port="${HOOKLINE_MOTO_PORT:-5056}"
infra/moto.sh start "$port"
trap 'infra/moto.sh stop' EXIT
export HOOKLINE_BENCH_MOTO_ENDPOINT="http://127.0.0.1:$port"

mkdir -p bench/results
target/release/hookline-bench "$@" --out bench/results/latest.json
