"""Sends upstream chunks that are already waiting together, in one write to the client.

Each SSE event an upstream writes is one HTTP chunk. When the proxy keeps up,
every chunk goes out the moment it arrives, alone. When it falls behind (a
fast upstream, a busy machine), several chunks sit in the upstream
connection's buffer; reading them all and writing them in one send saves a
syscall and a trip through the event loop per event, which is exactly the
cost that caps a streaming proxy.

The first chunk always goes out alone, the moment it arrives: a client
waiting for a stream's first event must not wait while the proxy reads what
the upstream wrote behind it (a fast stream's first 64 KiB took ~4 ms). Only
what follows is batched.

Knowing whether more is waiting takes a non-blocking peek at the upstream
connection (``transport.chunk_waiting``); where that cannot be known the
chunks pass through one by one.
"""

from __future__ import annotations

from typing import Callable, Iterator

import requests

from app.relay.transport import arriving, chunk_waiting

MAX_BATCH = 64 * 1024  # bytes: keeps a burst from being held back too long


def batched_chunks(response: requests.Response,
                   more_waiting: Callable[[], bool] | None = None) -> Iterator[bytes]:
    """The body of a streamed response, each item all the chunks that had arrived by then.

    ``more_waiting``: the response's ``transport.chunk_waiting`` check, when
    the caller has it already.
    """
    chunks = arriving(response)
    for first in chunks:
        yield first
        break
    more_waiting = more_waiting or chunk_waiting(response)
    if more_waiting is None:
        yield from chunks
        return
    batch: list[bytes] = []
    size = 0
    for chunk in chunks:
        batch.append(chunk)
        size += len(chunk)
        if size < MAX_BATCH and more_waiting():
            continue
        yield batch[0] if len(batch) == 1 else b"".join(batch)
        batch.clear()
        size = 0
    if batch:
        yield b"".join(batch)
