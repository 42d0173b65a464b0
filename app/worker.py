"""The gunicorn worker: gevent's, with a refused request's connection closed gently.

gunicorn answers a request it cannot parse itself (a request line over
``limit_request_line``: 414; a bad header: 400) and closes the connection
while the client may still be sending: closing a socket with unread bytes
makes the kernel send a reset, which can destroy the answer before the
client reads it (a 100 KB URL got "connection reset" instead of its 414).
``linger`` ends our side, then reads and drops what the client still
sends, for a bounded time and size, before gunicorn closes.

The same holds for an answer the app gives before reading the body (a
refusal: a wrong ``Content-Type``, an unknown model in a query) on a
connection that then closes (``Connection: close``): the unread body would
turn the close into a reset under the answer, so such a connection lingers
too. (On a kept-alive connection gunicorn reads the rest before the next
request.) Go's server does the same (``closeWriteAndWait``).

Named by ``gunicorn.conf.py``'s ``worker_class``; loaded in the master as
gunicorn loads its own gevent worker, so it imports no Flask.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from gunicorn.workers.ggevent import GeventWorker as _GeventWorker

LINGER_SECONDS = 1.0  # the most a refused connection is read for before it is closed
LINGER_BYTES = 4 << 20  # ... and the most that is read from it


def linger(client: socket.socket, seconds: float = LINGER_SECONDS, limit: int = LINGER_BYTES) -> None:
    """Shut our side of ``client``, then drain it until the client closes, ``seconds`` pass or ``limit`` bytes came."""
    deadline = time.monotonic() + seconds
    drained = 0
    try:
        client.shutdown(socket.SHUT_WR)  # the answer is sent: the client sees its end
        while drained < limit:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            client.settimeout(left)
            data = client.recv(65536)
            if not data:
                return
            drained += len(data)
    except OSError:  # reset, timeout, already closed: nothing more to save
        return


def has_body(req: Any) -> bool:
    """True when gunicorn's request ``req`` announced a body (a length above zero, or chunked)."""
    for name, value in req.headers:
        if name == "TRANSFER-ENCODING" or (name == "CONTENT-LENGTH" and value.strip() not in ("", "0")):
            return True
    return False


class GeventWorker(_GeventWorker):
    def handle_request(self, listener_name: Any, req: Any, sock: socket.socket, addr: Any) -> bool:
        try:
            return super().handle_request(listener_name, req, sock, addr)
        except StopIteration:  # answered; the connection closes now
            if has_body(req):
                linger(sock)
            raise

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        super().handle_error(req, client, addr, exc)
        linger(client)
