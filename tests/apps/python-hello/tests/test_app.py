from __future__ import annotations

import threading
import urllib.request

from app import make_server


def test_root_answers_200():
    server = make_server("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
            assert answer.status == 200
            assert answer.read().startswith(b"hello from python-hello")
    finally:
        server.shutdown()
        server.server_close()
