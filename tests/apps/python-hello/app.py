"""python-hello: the smallest Python web app, on the standard library's http.server.

It listens on $PORT (default 8000) at $HOST (default 127.0.0.1) and answers `GET /` with
200 and one line naming the release Shipyard runs ($SHIPYARD_RELEASE).
"""

from __future__ import annotations

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/":
            self.send_error(404)
            return
        release = os.environ.get("SHIPYARD_RELEASE", "unreleased")
        body = f"hello from python-hello, release={release}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def make_server(host: str, port: int) -> ThreadingHTTPServer:
    return ThreadingHTTPServer((host, port), Hello)


if __name__ == "__main__":
    server = make_server(os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8000")))
    host, port = server.server_address[:2]
    print(f"python-hello listening on http://{host}:{port}/", flush=True)
    server.serve_forever()
