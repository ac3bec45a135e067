"""A minimal http-01 responder for the raw-client tests (certbot and lego bring their own)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/.well-known/acme-challenge/"
SLOW = "slow:"  # an answer "slow:<seconds>:<body>" is sent after that long


@contextmanager
def http01_responder(port: int, answers: dict[str, str]) -> Iterator[dict[str, str]]:
    """Serve ``answers`` (token -> key authorization) on 127.0.0.1:port while in the block.
    An answer may be ``redirect:<url>`` or ``slow:<seconds>:<body>``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            token = self.path.removeprefix(PREFIX)
            body = answers.get(token)
            if not self.path.startswith(PREFIX) or body is None:
                self.send_error(404)
                return
            if body.startswith("redirect:"):  # RFC 8555 §8.3 allows redirects
                self.send_response(302)
                self.send_header("Location", body.removeprefix("redirect:"))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if body.startswith(SLOW):
                delay, _, body = body.removeprefix(SLOW).partition(":")
                time.sleep(float(delay))  # a slow responder, by design
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield answers
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
