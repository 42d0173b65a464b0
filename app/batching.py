"""Sends upstream chunks that are already waiting together, in one write to the client.

Each SSE event an upstream writes is one HTTP chunk. When the proxy keeps up,
every chunk goes out the moment it arrives, alone. When it falls behind (a
fast upstream, a busy machine), several chunks sit in the upstream
connection's buffer; reading them all and writing them in one send saves a
syscall and a trip through the event loop per event, which is exactly the
cost that caps a streaming proxy.

Knowing whether more is waiting takes a non-blocking peek at the upstream
connection (its buffered reader and socket, which requests does not expose
publicly); where those cannot be found the chunks pass through one by one.
"""

from __future__ import annotations

import io
import socket
from typing import Iterator

import requests

MAX_BATCH = 64 * 1024  # bytes: keeps a burst from being held back too long


def _reader_and_socket(response: requests.Response) -> tuple[io.BufferedReader, socket.socket] | None:
    raw = response.raw
    fp = getattr(getattr(raw, "_fp", None), "fp", None)
    sock = getattr(getattr(raw, "_connection", None), "sock", None)
    if not hasattr(fp, "peek") or sock is None:
        return None
    return fp, sock


def _more_waiting(fp: io.BufferedReader, sock: socket.socket) -> bool:
    """True when the next chunk has (at least partly) arrived already; never blocks."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        return bool(fp.peek(1))
    except (OSError, ValueError):
        return False
    finally:
        sock.settimeout(timeout)


def batched_chunks(response: requests.Response) -> Iterator[bytes]:
    """The body of a streamed response, each item all the chunks that had arrived by then."""
    chunks = response.iter_content(None)
    conn = _reader_and_socket(response)
    if conn is None:
        yield from chunks
        return
    fp, sock = conn
    batch: list[bytes] = []
    size = 0
    for chunk in chunks:
        batch.append(chunk)
        size += len(chunk)
        if size < MAX_BATCH and _more_waiting(fp, sock):
            continue
        yield batch[0] if len(batch) == 1 else b"".join(batch)
        batch.clear()
        size = 0
    if batch:
        yield b"".join(batch)
