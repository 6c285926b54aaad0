#!/usr/bin/env python3
"""A webhook receiver for trying Hookline by hand: prints every POST (headers and body) and
answers 200. Usage: python3 infra/receiver.py [PORT]  (default 9000, binds 127.0.0.1)."""
import http.server
import json
import sys


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
        print(f"--- POST {self.path}")
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type"):
            print(f"{name}: {self.headers.get(name)}")
        try:
            print(json.dumps(json.loads(body), indent=2))
        except ValueError:
            print(body)
        sys.stdout.flush()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
print(f"receiver on http://127.0.0.1:{port}/", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Receiver).serve_forever()
