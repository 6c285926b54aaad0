#!/usr/bin/env python3
"""A webhook receiver for trying Hookline by hand: prints every POST (headers and body) and
answers 200; a ping (`{"ping":"<x>"}`) gets its pong (`{"pong":"<x>"}`).
Usage: python3 infra/receiver.py [PORT] [--quiet]  (default 9000, binds 127.0.0.1; port 0
picks a free one; the first line printed is the receiver's URL; --quiet prints nothing else)."""
import http.server
import json
import sys

quiet = "--quiet" in sys.argv[1:]


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0))).decode(errors="replace")
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if not quiet:
            print(f"--- POST {self.path}")
            for name in ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type"):
                print(f"{name}: {self.headers.get(name)}")
            print(json.dumps(parsed, indent=2) if parsed is not None else body)
            sys.stdout.flush()
        if isinstance(parsed, dict) and set(parsed) == {"ping"}:
            answer = json.dumps({"pong": parsed["ping"]}).encode()
            content_type = "application/json"
        else:
            answer, content_type = b"ok", "text/plain"
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


ports = [a for a in sys.argv[1:] if not a.startswith("--")]
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(ports[0]) if ports else 9000), Receiver)
print(f"receiver on http://127.0.0.1:{server.server_address[1]}/", flush=True)
server.serve_forever()
