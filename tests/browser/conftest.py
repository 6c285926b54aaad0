"""Fixtures of the browser tests: `hookline serve` (target/debug/hookline), a receiver on
127.0.0.1 whose answers a test can switch, and headless Chromium from Debian driven by
Playwright. Run by infra/browser-tests.sh."""

import json
import os
import re
import secrets
import subprocess
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("HOOKLINE_CHROMIUM", "/usr/bin/chromium")
ADMIN_KEY = "browser-tests-admin-" + secrets.token_hex(12)


class Receiver:
    """A webhook receiver: answers 200 (and pongs) while `failing` is false, else 500 with an
    HTML body that would run script if the portal rendered it as HTML; 410 on a path ending
    in /gone."""

    FAILURE_BODY = "<html><body><script>window.__receiverRan = 1</script><h1>boom</h1></body></html>"

    def __init__(self):
        self.failing = False
        self.requests = []
        # What GET answers: a page of the platform's own dashboard (for the embedding test).
        self.page_html = "<!doctype html><title>dashboard</title>"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                if self.path.endswith("/gone"):
                    answer, status, kind = b"gone", 410, "text/plain"
                elif receiver.failing:
                    answer, status, kind = receiver.FAILURE_BODY.encode(), 500, "text/html"
                else:
                    try:
                        ping = json.loads(body).get("ping")
                    except (ValueError, AttributeError):
                        ping = None
                    answer = json.dumps({"pong": ping} if ping else {"ok": True}).encode()
                    status, kind = 200, "application/json"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self):
                page = receiver.page_html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def deliveries(self, path):
        """Event deliveries (not pings) received on `path`."""
        return [r for r in self.requests if r["path"] == path and b'"ping"' not in r["body"]]


class Hookline:
    def __init__(self, binary, data_dir, extra_env=None):
        env = dict(os.environ)
        env.update({
            "HOOKLINE_ADMIN_KEY": ADMIN_KEY,
            "RUST_LOG": "warn",
            # Two attempts one second apart: a failing receiver makes a failed delivery quickly.
            "HOOKLINE_RETRY_SCHEDULE": "1s",
            "HOOKLINE_TEST_RATE_LIMIT": "off",
        })
        env.update(extra_env or {})
        data_dir.mkdir(parents=True, exist_ok=True)
        self.out = open(data_dir / "out.log", "w+")
        self.err = open(data_dir / "err.log", "w+")
        self.process = subprocess.Popen(
            [str(binary), "serve", "--addr", "127.0.0.1:0", "--data-dir", str(data_dir / "data")],
            env=env, stdout=self.out, stderr=self.err)
        for _ in range(300):
            self.out.seek(0)
            found = re.search(r"http://127\.0\.0\.1:\d+", self.out.read())
            if found:
                self.base = found.group(0)
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.err.seek(0)
        raise RuntimeError("hookline serve did not start: " + self.err.read())

    def call(self, method, path, body=None, key=ADMIN_KEY):
        request = urllib.request.Request(
            self.base + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"X-Api-Key": key, **({"Content-Type": "application/json"} if body is not None else {})})
        try:
            with urllib.request.urlopen(request) as response:
                text = response.read()
                return response.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


BINARY = Path(os.environ.get("HOOKLINE_BINARY", ROOT / "target" / "debug" / "hookline"))


@pytest.fixture(scope="session")
def hookline():
    with tempfile.TemporaryDirectory() as work:
        server = Hookline(BINARY, Path(work))
        yield server
        server.stop()


@pytest.fixture
def start_hookline():
    """Starts another `hookline serve` with extra environment; stopped after the test."""
    started = []
    work = tempfile.TemporaryDirectory()

    def start(extra_env):
        server = Hookline(BINARY, Path(work.name) / str(len(started)), extra_env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    work.cleanup()


@pytest.fixture(scope="session")
def receiver():
    server = Receiver()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser, request):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 860}, timezone_id="Europe/Berlin")
    context.set_default_timeout(15_000)
    yield context
    context.close()


def shot(page, name):
    """Saves a full-page screenshot under test-artifacts/browser/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
