"""Notices a client that hangs up while its request waits or streams.

gunicorn's gevent worker exposes the client socket as
``environ["gunicorn.socket"]``. After the request body has been read an
HTTP/1.1 client sends nothing until it has the answer, so a peek that returns
end-of-file (or an error) means it has gone. A peek that returns data
(a pipelined request) proves it is still there, and the watch ends.

Behind the thread bridge (a threaded host: ``app.runtime.bridge``) the app
never sees the client's socket: the host's request thread watches it and
sets the event ``environ[HANGUP_KEY]``, which the watch waits on instead.
"""

from __future__ import annotations

from socket import MSG_PEEK
from typing import Any, Callable

import gevent
from gevent.event import Event
from gevent.exceptions import ConcurrentObjectUseError

HANGUP_KEY = "llama_swap.hangup"  # environ: an Event set when the client has gone (set by the thread bridge)


def _watch(sock: Any, watch: "HangupWatch") -> None:
    try:
        data = sock.recv(1, MSG_PEEK)
    except ConcurrentObjectUseError:  # the request body's relay is waiting on the socket: it notices a hang-up
        return
    except OSError:
        data = b""
    if not data:
        watch.on_hangup()


def _wait(gone: Event, watch: "HangupWatch") -> None:
    gone.wait()
    watch.on_hangup()


class HangupWatch:
    """Calls ``on_hangup`` once if the client goes away before ``stop()``.

    ``after``: start watching only that many seconds from now. A short
    answer then never pays for a watch (a greenlet that never ran is
    dropped for nothing); a client that leaves meanwhile is still noticed,
    that much later, or at the next write to it.

    ``on_hangup`` may be replaced while the watch runs (what a hang-up must
    undo changes as a request moves on: the wait for the upstream's headers,
    then the relay of its body); the one in place when the client leaves is
    called.
    """

    __slots__ = ("_greenlet", "_sock", "_gone", "on_hangup")

    def __init__(self, environ: dict, on_hangup: Callable[[], None], after: float = 0.0):
        self.on_hangup = on_hangup
        self._sock = environ.get("gunicorn.socket")
        self._gone: Event | None = environ.get(HANGUP_KEY) if self._sock is None else None
        self._greenlet = None
        self._start(after)

    def _start(self, after: float) -> None:
        if self._sock is not None:
            watch, on = _watch, self._sock
        elif self._gone is not None:
            watch, on = _wait, self._gone
        else:
            return
        if after > 0:
            self._greenlet = gevent.spawn_later(after, watch, on, self)
        else:
            self._greenlet = gevent.spawn(watch, on, self)

    def renew(self) -> None:
        """Watch again if the watch ended on pending bytes (the rest of a request body, relayed since)."""
        if self._greenlet is not None and self._greenlet.dead:
            self._start(0.0)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True)
            self._greenlet = None
