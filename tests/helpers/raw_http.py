"""Test helper: one HTTP/1.1 request written byte for byte on a socket, for targets a client library would fix.

``requests`` and ``http.client`` normalise what they send (an absolute-form
target, a 100 KB request line, ``CONNECT``); the server must be seen
answering exactly what a hostile client can write.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes


def raw_request(port: int, method: str, target: str | bytes, headers: dict[str, str] | None = None,
                body: bytes = b"", timeout: float = 30.0) -> RawAnswer:
    """Send ``method target HTTP/1.1`` with ``headers`` and ``body`` (``Connection: close``); read the answer to EOF."""
    target_bytes = target if isinstance(target, bytes) else target.encode("latin-1")
    lines = [b"%s %s HTTP/1.1" % (method.encode(), target_bytes), b"Host: 127.0.0.1:%d" % port,
             b"Connection: close"]
    lines += [f"{name}: {value}".encode("latin-1") for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(b"Content-Length: %d" % len(body))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding") == "chunked":
        rest = _dechunk(rest)
    return RawAnswer(int(status_line.split(" ")[1]), parsed, rest)


def raw_status(port: int, method: str, target: str, headers: dict[str, str] | None = None,
               timeout: float = 30.0) -> int:
    """The status of ``method target`` (no body), read from the status line alone: a stream's body is never awaited."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        lines.append("Content-Length: 0")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        received = b""
        while b"\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    return int(received.split(b" ", 2)[1])


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out
