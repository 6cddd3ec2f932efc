"""`python3 -m webapp --port N [--host H]`: serve until SIGTERM or SIGINT, then exit 0."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterator

from webapp import GIT_SHA, __version__
from webapp.server import AppInfo, WebappServer, routes_for

DEFAULT_PORT = 8000
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    return port


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m webapp", description=__doc__)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=port_number, help=f"port to bind (default: $PORT, else {DEFAULT_PORT})"
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
        return port_number(value)
    except argparse.ArgumentTypeError as error:
        parser.error(f"$PORT: {error}")


def app_info_from_environment() -> AppInfo:
    return AppInfo(
        version=__version__,
        git_sha=GIT_SHA,
        release=os.environ.get("SHIPYARD_RELEASE") or "unreleased",
        app_env=os.environ.get("APP_ENV") or None,
    )


def wake_only(signum: int, frame: object) -> None:
    """A Python-level handler, without which no byte reaches the wakeup fd."""


@contextlib.contextmanager
def stop_signal_socket() -> Iterator[socket.socket]:
    """A socket that becomes readable once SIGTERM or SIGINT arrives.

    The signal wakes the serving loop directly: no polling, and no exception raised from a
    signal handler (socketserver would swallow it while handing a request to a thread).
    """
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    with reader, writer:
        signal.set_wakeup_fd(writer.fileno())
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, wake_only)
        try:
            yield reader
        finally:
            signal.set_wakeup_fd(-1)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    info = app_info_from_environment()
    try:
        server = WebappServer((options.host, options.port), routes_for(info))
    except OSError as error:
        print(f"webapp: cannot listen on {options.host}:{options.port}: {error}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    with server, stop_signal_socket() as stop:
        print(f"webapp {info.version} listening on http://{host}:{port}/", flush=True)
        server.serve_until_readable(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
