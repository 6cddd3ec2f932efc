"""What the app answers: a fixed table of routes served by a threading HTTP server."""

from __future__ import annotations

import html
import selectors
import socket
import sys
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple


# NamedTuple rather than a dataclass: `dataclasses` imports `inspect`, slowing start-up.
class Response(NamedTuple):
    status: int
    content_type: str
    body: bytes


class AppInfo(NamedTuple):
    version: str
    git_sha: str
    release: str
    app_env: str | None

    @property
    def summary(self) -> str:
        """The machine-checkable line that smoke tests look for in the page."""
        return f"version={self.version} git={self.git_sha} release={self.release}"


# A silent client may hold a request thread, and so delay shutdown, this long at most.
REQUEST_TIMEOUT = 5.0
NOT_FOUND = Response(404, "text/plain; charset=utf-8", b"not found\n")


def render_page(info: AppInfo) -> bytes:
    env_line = f"<p>env={html.escape(info.app_env)}</p>\n" if info.app_env else ""
    page = (
        "<!doctype html>\n"
        '<html lang="en">\n'
        f'<head><meta charset="utf-8"><title>webapp {html.escape(info.version)}</title></head>\n'
        "<body>\n"
        "<h1>webapp</h1>\n"
        f'<p id="build">{html.escape(info.summary)}</p>\n'
        f"{env_line}"
        "</body>\n"
        "</html>\n"
    )
    return page.encode("utf-8")


def routes_for(info: AppInfo) -> dict[str, Response]:
    return {
        "/": Response(200, "text/html; charset=utf-8", render_page(info)),
        "/healthz": Response(200, "text/plain; charset=utf-8", b"ok"),
    }


class RequestHandler(BaseHTTPRequestHandler):
    server: WebappServer
    server_version = "webapp"
    timeout = REQUEST_TIMEOUT

    def do_GET(self) -> None:
        self._respond(include_body=True)

    def do_HEAD(self) -> None:
        self._respond(include_body=False)

    def _respond(self, *, include_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        response = self.server.routes.get(path, NOT_FOUND)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if include_body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"webapp {self.address_string()} {format % args}\n")


class WebappServer(ThreadingHTTPServer):
    allow_reuse_address = True
    # Closing the server waits for requests in flight: daemon threads could still be writing
    # a log line while the interpreter finalises, which aborts it.
    daemon_threads = False
    block_on_close = True
    # serve_until_readable calls handle_request only when a connection is waiting; a zero
    # timeout keeps it from blocking if that connection has gone by the time it looks.
    timeout = 0

    def __init__(self, address: tuple[str, int], routes: Mapping[str, Response]) -> None:
        self.routes = routes
        super().__init__(address, RequestHandler)

    def serve_until_readable(self, stop: socket.socket) -> None:
        """Serve requests until `stop` has something to read."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(stop, selectors.EVENT_READ)
            while not any(key.fileobj is stop for key, _ in selector.select()):
                self.handle_request()
