#!/usr/bin/env bash
# moto server (DynamoDB, SQS, EventBridge Scheduler emulator) on 127.0.0.1.
#   infra/moto.sh start [PORT]   starts it (default port 5055) and waits until it answers
#   infra/moto.sh stop           stops the one started here
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
pidfile="$root/target/moto.pid"
case "${1:-}" in
  start)
    port="${2:-5055}"
    "$root/infra/python-tools.sh"
    mkdir -p "$root/target"
    "$root/infra/moto.sh" stop
    if curl -fsS "http://127.0.0.1:$port/moto-api/" > /dev/null 2>&1; then
      echo "port $port is already in use; set HOOKLINE_MOTO_PORT to a free port" >&2
      exit 1
    fi
    # moto_server with the fixes infra/moto_server.py describes.
    "$root/.venv/bin/python" "$root/infra/moto_server.py" -H 127.0.0.1 -p "$port" > "$root/target/moto.log" 2>&1 &
    echo $! > "$pidfile"
    for _ in $(seq 1 100); do
      if curl -fsS "http://127.0.0.1:$port/moto-api/" > /dev/null 2>&1; then
        echo "moto listening on http://127.0.0.1:$port"
        exit 0
      fi
      sleep 0.2
    done
    echo "moto did not start; see target/moto.log" >&2
    exit 1
    ;;
  stop)
    if [ -f "$pidfile" ]; then
      pid="$(cat "$pidfile")"
      kill "$pid" 2>/dev/null || true
      # A request still running (a long index query) can hold it past SIGTERM for a while.
      for _ in $(seq 1 25); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
      done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$pidfile"
    fi
    ;;
  *)
    echo "usage: infra/moto.sh start [PORT] | stop" >&2
    exit 2
    ;;
esac
