#!/usr/bin/env bash
# Runs the portal and console browser tests (tests/browser): Playwright for Python (from
# infra/requirements.txt, in .venv) drives Debian's headless Chromium against
# `hookline serve` and a receiver on 127.0.0.1. Installs chromium with apt-get when
# /usr/bin/chromium is missing (Playwright's own browser download is not used).
# Screenshots go to test-artifacts/browser/.
# Usage: infra/browser-tests.sh [path/to/hookline] [pytest args...] (default target/debug/hookline)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
binary="${1:-$root/target/debug/hookline}"
shift || true

"$root/infra/python-tools.sh"
if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium (apt-get)"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get install -y chromium >/dev/null 2>&1 \
    || { $sudo_cmd apt-get update >/dev/null && $sudo_cmd apt-get install -y chromium >/dev/null; }
fi
HOOKLINE_BINARY="$binary" "$root/.venv/bin/python" -m pytest -q -p no:cacheprovider \
  "$root/tests/browser" "$@"
