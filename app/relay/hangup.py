"""Notices a client that hangs up while its request waits or streams.

gunicorn's gevent worker exposes the client socket as
``environ["gunicorn.socket"]``. After the request body has been read an
HTTP/1.1 client sends nothing until it has the answer, so a peek that returns
end-of-file (or an error) means it has gone. A peek that returns data
(a pipelined request) proves it is still there, and the watch ends.
"""

from __future__ import annotations

import socket
from typing import Any, Callable

import gevent


def _watch(sock: Any, on_hangup: Callable[[], None]) -> None:
    try:
        data = sock.recv(1, socket.MSG_PEEK)
    except OSError:
        data = b""
    if not data:
        on_hangup()


class HangupWatch:
    """Calls ``on_hangup`` once if the client goes away before ``stop()``."""

    __slots__ = ("_greenlet",)

    def __init__(self, environ: dict, on_hangup: Callable[[], None]):
        sock = environ.get("gunicorn.socket")
        self._greenlet = gevent.spawn(_watch, sock, on_hangup) if sock is not None else None

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True)
            self._greenlet = None
