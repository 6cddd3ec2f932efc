"""`python3 -m webapp --port N [--host H]`: serve until SIGTERM or SIGINT, then exit 0."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from webapp import GIT_SHA, __version__
from webapp.server import AppInfo, WebappServer, routes_for

DEFAULT_PORT = 8000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m webapp", description=__doc__)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, help=f"port to bind (default: $PORT, else {DEFAULT_PORT})"
    )
    options = parser.parse_args(argv)
    if options.port is None:
        options.port = port_from_environment(parser)
    return options


def port_from_environment(parser: argparse.ArgumentParser) -> int:
    value = os.environ.get("PORT", "").strip()
    if not value:
        return DEFAULT_PORT
    try:
        return int(value)
    except ValueError:
        parser.error(f"$PORT is not a port number: {value!r}")


def app_info_from_environment() -> AppInfo:
    return AppInfo(
        version=__version__,
        git_sha=GIT_SHA,
        release=os.environ.get("SHIPYARD_RELEASE") or "unreleased",
        app_env=os.environ.get("APP_ENV") or None,
    )


def stop_on_signals(server: WebappServer) -> None:
    """SIGTERM and SIGINT end `serve_forever`; `shutdown` must run off the serving thread."""

    def request_shutdown(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, name="webapp-shutdown", daemon=True).start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_shutdown)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    info = app_info_from_environment()
    try:
        server = WebappServer((options.host, options.port), routes_for(info))
    except OSError as error:
        print(f"webapp: cannot listen on {options.host}:{options.port}: {error}", file=sys.stderr)
        return 1
    stop_on_signals(server)
    host, port = server.server_address[:2]
    print(f"webapp {info.version} listening on http://{host}:{port}/", flush=True)
    with server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
