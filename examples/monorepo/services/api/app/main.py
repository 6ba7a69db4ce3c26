"""A tiny HTTP API: /health and /prices."""

import json
from http.server import BaseHTTPRequestHandler, HTTPServer

from common.money import format_cents


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = {"ok": True}
        else:
            body = {"price": format_cents(1999)}
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)


if __name__ == "__main__":
    HTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
