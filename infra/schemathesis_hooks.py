"""Schemathesis hooks for infra/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

Ping and the test-event routes make `hookline serve` send HTTP requests to webhook URLs, and
schemathesis makes those URLs up. So every request body that carries a `url` (POST /webhook,
PATCH /webhook/{id}, or any other operation, in every phase) has it rewritten to the receiver
on 127.0.0.1 that the script started: the server only ever holds loopback webhooks, and no
request leaves the machine. The script checks that at the end of the run.

Ping and the other routes of one webhook also get, for about half of the cases, the id of a
webhook that exists (created by the script up front), so they are fuzzed past the 404.
"""

import os
import zlib

import schemathesis

RECEIVER_URL = os.environ["HOOKLINE_FUZZ_RECEIVER_URL"]
KNOWN_WEBHOOK_ID = os.environ.get("HOOKLINE_FUZZ_WEBHOOK_ID")
# The routes of one webhook whose `{id}` may be swapped for the known webhook. DELETE keeps its
# generated ids, so the known webhook stays for the whole run.
ONE_WEBHOOK_PATH = "/api/v3/webhook/{id}"


def _rewrite_urls(body):
    """Points every string `url` at the receiver; other values are left for the server to refuse."""
    if isinstance(body, dict):
        if isinstance(body.get("url"), str):
            body["url"] = RECEIVER_URL
        for value in body.values():
            _rewrite_urls(value)
    elif isinstance(body, list):
        for value in body:
            _rewrite_urls(value)


def _assert_only_loopback(body):
    if isinstance(body, dict):
        url = body.get("url")
        assert not isinstance(url, str) or url == RECEIVER_URL, f"unrewritten url {url!r}"
        for value in body.values():
            _assert_only_loopback(value)
    elif isinstance(body, list):
        for value in body:
            _assert_only_loopback(value)


@schemathesis.hook
def before_call(context, case, kwargs):
    _rewrite_urls(case.body)
    _assert_only_loopback(case.body)
    params = case.path_parameters
    if (
        KNOWN_WEBHOOK_ID
        and case.method.upper() != "DELETE"
        and case.operation.path.startswith(ONE_WEBHOOK_PATH)
        and params
        and isinstance(params.get("id"), str)
        # Deterministic per case (a rerun with the same seed sends the same requests).
        and zlib.crc32(params["id"].encode("utf-8", "surrogatepass")) % 2 == 0
    ):
        params["id"] = KNOWN_WEBHOOK_ID
