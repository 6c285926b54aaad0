#!/usr/bin/env bash
# Fuzzes the API of a running `hookline serve` against its own OpenAPI document with
# schemathesis: once with the admin key, once with an account key. Fails on any server error
# or any response that breaks the document (status, content type, schema).
# Ping and the test events send HTTP requests to webhook URLs, which schemathesis makes up:
# the hooks in infra/schemathesis_hooks.py rewrite every generated `url` to a receiver on
# 127.0.0.1 started here (infra/receiver.py, which answers pongs), so every operation is fuzzed
# and no request leaves the machine. At the end the script checks that every webhook the server
# holds points at that receiver.
# Usage: infra/schemathesis.sh [path/to/hookline] (default target/debug/hookline)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
binary="${1:-$root/target/debug/hookline}"
examples="${HOOKLINE_SCHEMATHESIS_EXAMPLES:-30}"
work="$(mktemp -d)"
admin_key="schemathesis-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

"$root/.venv/bin/python" "$root/infra/receiver.py" 0 --quiet >"$work/receiver.log" 2>&1 &
receiver=$!
# A high limit on test events and pings: the fuzzer sends them faster than a person would.
HOOKLINE_ADMIN_KEY="$admin_key" RUST_LOG=warn HOOKLINE_TEST_RATE_LIMIT="${HOOKLINE_TEST_RATE_LIMIT:-1000,1000}" \
  "$binary" serve --addr 127.0.0.1:0 --data-dir "$work/data" >"$work/out.log" 2>"$work/err.log" &
server=$!
cleanup() {
  kill "$server" "$receiver" 2>/dev/null || true
  wait "$server" "$receiver" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

base=""
receiver_url=""
for _ in $(seq 1 100); do
  base="$(grep -o 'http://[0-9.:]*' "$work/out.log" | head -n1 || true)"
  receiver_url="$(grep -o 'http://127.0.0.1:[0-9]*' "$work/receiver.log" | head -n1 || true)"
  [ -n "$base" ] && [ -n "$receiver_url" ] && break
  sleep 0.1
done
if [ -z "$receiver_url" ]; then
  echo "the receiver did not start:" >&2
  cat "$work/receiver.log" >&2
  exit 1
fi
receiver_url="$receiver_url/hook"
if [ -z "$base" ]; then
  echo "hookline did not start:" >&2
  cat "$work/err.log" >&2
  exit 1
fi

# An account, and one webhook of it (every event type, at the receiver) for the routes of one
# webhook to find: prints the account key and the webhook id.
read -r account_key webhook_id < <("$root/.venv/bin/python" - "$base" "$admin_key" "$receiver_url" <<'PY'
import json, sys, urllib.request
base, admin, receiver = sys.argv[1:4]
def post(path, key, body):
    request = urllib.request.Request(
        f"{base}/api/v3{path}",
        data=json.dumps(body).encode(),
        headers={"X-Api-Key": key, "Content-Type": "application/json"},
    )
    return json.load(urllib.request.urlopen(request))
key = post("/accounts", admin, {"name": "Schemathesis"})["apiKey"]
webhook = post("/webhook", key, {"url": receiver, "type": "*"})["id"]
print(key, webhook)
PY
)

run() {
  local who="$1" key="$2"
  echo "-- schemathesis as $who ($examples examples per operation)"
  # Run from a scratch directory: schemathesis leaves caches in the working directory.
  (cd "$work" && SCHEMATHESIS_HOOKS="$root/infra/schemathesis_hooks.py" \
    HOOKLINE_FUZZ_RECEIVER_URL="$receiver_url" HOOKLINE_FUZZ_WEBHOOK_ID="$webhook_id" \
    "$root/.venv/bin/schemathesis" run "$base/api/v3/openapi.json" \
    -H "X-Api-Key: $key" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$examples" --workers 1 --seed 1 --no-color \
    --generation-database none --generation-with-security-parameters false \
    --wait-for-schema 30 </dev/null)
}
status=0
run admin "$admin_key" || status=1
run account "$account_key" || status=1
# Every webhook the fuzzer left must point at the receiver (the hooks rewrite every url).
if ! "$root/.venv/bin/python" - "$base" "$account_key" "$receiver_url" <<'PY'
import json, sys, urllib.request
base, key, receiver = sys.argv[1:4]
page, elsewhere, total = 0, [], 0
while True:
    request = urllib.request.Request(
        f"{base}/api/v3/webhook?page={page}&size=100", headers={"X-Api-Key": key}
    )
    listing = json.load(urllib.request.urlopen(request))
    total += len(listing["content"])
    elsewhere += [w["url"] for w in listing["content"] if w["url"] != receiver]
    if listing["last"]:
        break
    page += 1
request = urllib.request.Request(f"{base}/api/v3/webhook/status", headers={"X-Api-Key": key})
counts = json.load(urllib.request.urlopen(request))
if not elsewhere:
    print(f"-- {total} webhooks at the end of the run, all at the receiver; deliveries: {counts}")
if elsewhere:
    print(f"webhooks not at the receiver: {elsewhere[:10]}", file=sys.stderr)
    sys.exit(1)
PY
then
  status=1
fi
if grep -q '"level":"ERROR"' "$work/err.log"; then
  echo "hookline logged errors during the run:" >&2
  grep '"level":"ERROR"' "$work/err.log" | head -n 20 >&2
  status=1
fi
exit "$status"
