"""Test helper: an OpenAI-ish server that writes down every request it is sent.

``python -m tests.helpers.recorder PORT FILE``: each POST appends one JSON
line ``{"path", "target", "headers", "body"}`` to FILE (``target`` is the
request line's target exactly as sent, ``path`` http.server's reading of
it) and is answered with an empty ``chat.completion`` naming the body's model; GET answers ``{"status": "ok"}``
(a health check passes). The tests read FILE to see exactly what reached an
upstream or a peer: headers included, which the simulated upstream does not
echo.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def command(port: str, record: Path) -> str:
    """The command line (for a model's ``cmd``) of a recorder on ``port`` writing to ``record``."""
    return f"{sys.executable} -m tests.helpers.recorder {port} {record}"


class Handler(BaseHTTPRequestHandler):
    record: Path

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def reply(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self.reply({"status": "ok"})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        with open(self.record, "a") as out:
            target = self.requestline.split(" ")[1] if " " in self.requestline else ""
            out.write(json.dumps({"path": self.path, "target": target, "headers": dict(self.headers.items()),
                                  "body": body}) + "\n")
        self.reply({"object": "chat.completion", "model": body.get("model"), "choices": []})


def main() -> None:
    port, record = int(sys.argv[1]), Path(sys.argv[2])
    Handler.record = record
    HTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
