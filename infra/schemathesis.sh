#!/usr/bin/env bash
# Fuzzes the API of a running `hookline serve` against its own OpenAPI document with
# schemathesis: once with the admin key, once with an account key. Fails on any server error
# or any response that breaks the document (status, content type, schema).
# The operations that send HTTP requests to webhook URLs (ping, test events) are left out:
# schemathesis makes up those URLs, and tests send traffic only to loopback. The end-to-end
# tests cover them against real receivers.
# Usage: infra/schemathesis.sh [path/to/hookline] (default target/debug/hookline)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
binary="${1:-$root/target/debug/hookline}"
examples="${HOOKLINE_SCHEMATHESIS_EXAMPLES:-30}"
work="$(mktemp -d)"
admin_key="schemathesis-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

HOOKLINE_ADMIN_KEY="$admin_key" RUST_LOG=warn \
  "$binary" serve --addr 127.0.0.1:0 --data-dir "$work/data" >"$work/out.log" 2>"$work/err.log" &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

base=""
for _ in $(seq 1 100); do
  base="$(grep -o 'http://[0-9.:]*' "$work/out.log" | head -n1 || true)"
  [ -n "$base" ] && break
  sleep 0.1
done
if [ -z "$base" ]; then
  echo "hookline did not start:" >&2
  cat "$work/err.log" >&2
  exit 1
fi

account_key="$("$root/.venv/bin/python" - "$base" "$admin_key" <<'PY'
import json, sys, urllib.request
base, admin = sys.argv[1], sys.argv[2]
request = urllib.request.Request(
    f"{base}/api/v3/accounts",
    data=json.dumps({"name": "Schemathesis"}).encode(),
    headers={"X-Api-Key": admin, "Content-Type": "application/json"},
)
print(json.load(urllib.request.urlopen(request))["apiKey"])
PY
)"

run() {
  local who="$1" key="$2"
  echo "-- schemathesis as $who ($examples examples per operation)"
  # Run from a scratch directory: schemathesis leaves caches in the working directory.
  (cd "$work" && "$root/.venv/bin/schemathesis" run "$base/api/v3/openapi.json" \
    -H "X-Api-Key: $key" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$examples" --workers 1 --seed 1 --no-color \
    --generation-database none --generation-with-security-parameters false \
    --exclude-path-regex '/ping$|/test/' \
    --wait-for-schema 30 </dev/null)
}
status=0
run admin "$admin_key" || status=1
run account "$account_key" || status=1
if grep -q '"level":"ERROR"' "$work/err.log"; then
  echo "hookline logged errors during the run:" >&2
  grep '"level":"ERROR"' "$work/err.log" | head -n 20 >&2
  status=1
fi
exit "$status"
