"""Test upstream for the ``/upstream`` passthrough: HTTP echo and websocket echo on any path.

``python -m tests.helpers.ws_echo --port N [--starts-file F]`` serves:

* ``GET /health``: 200 ``ok``;
* a websocket upgrade on any path: accepted (subprotocol ``echo.v1`` if the
  client offers it); the first message says which path (and query) it was
  opened on, ``open:<path>``; then every text message comes back as
  ``echo:<text>`` and every binary one as ``b"echo:" + data``; the text
  ``bye`` makes the server close with code 4001 and reason ``bye``;
* any other request, any method: 200 JSON ``{"method", "path", "headers",
  "body_base64"}`` (the raw request target and the exact body bytes, which a
  UTF-8 echo could not show).

Stdlib plus simple-websocket (already a dependency of flask-sock).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, Sequence

import simple_websocket

SUBPROTOCOL = "echo.v1"
CLOSE_CODE = 4001


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self.websocket()
        elif self.path == "/health":
            self.reply(200, b"ok", "text/plain")
        else:
            self.echo()

    def do_POST(self) -> None:  # noqa: N802
        self.echo()

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_POST

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def echo(self) -> None:
        body = self.read_body()
        self.reply(200, json.dumps({
            "method": self.command, "path": self.path, "headers": dict(self.headers.items()),
            "body_base64": base64.b64encode(body).decode("ascii")}).encode(), "application/json")

    def reply(self, status: int, body: bytes, content_type: str) -> None:
        head = (f"HTTP/1.1 {status} OK\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
        self.connection.sendall(head + (b"" if self.command == "HEAD" else body))

    def websocket(self) -> None:
        # simple-websocket takes the socket and the handshake headers from a
        # WSGI-like environ; Werkzeug's key is the simplest to fake.
        environ = {"werkzeug.socket": self.connection}
        for name, value in self.headers.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        self.close_connection = True
        ws = simple_websocket.Server(environ, subprotocols=[SUBPROTOCOL])
        try:
            ws.send(f"open:{self.path}")
            while True:
                message = ws.receive()
                if message == "bye":
                    ws.close(reason=CLOSE_CODE, message="bye")
                    return
                ws.send("echo:" + message if isinstance(message, str) else b"echo:" + message)
        except simple_websocket.ConnectionClosed:
            return


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        TCPServer.server_bind(self)  # skip HTTPServer's reverse-DNS lookup
        self.server_name, self.server_port = self.server_address[:2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.helpers.ws_echo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--starts-file", default=None, help="append '<pid>\\n' here on start")
    args = parser.parse_args(argv)
    if args.starts_file:
        with open(args.starts_file, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\n")
    server = Server((args.host, args.port), Handler)
    print(f"ws_echo listening on {args.host}:{args.port}", flush=True)
    server.serve_forever(poll_interval=0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
