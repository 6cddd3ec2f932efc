"""What the app answers: a fixed table of routes served by a threading HTTP server."""

from __future__ import annotations

import html
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
    daemon_threads = True

    def __init__(self, address: tuple[str, int], routes: Mapping[str, Response]) -> None:
        self.routes = routes
        super().__init__(address, RequestHandler)
