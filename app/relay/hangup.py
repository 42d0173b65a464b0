"""Notices a client that hangs up while its request waits or streams.

gunicorn's gevent worker exposes the client socket as
``environ["gunicorn.socket"]``. After the request body has been read an
HTTP/1.1 client sends nothing until it has the answer, so a peek that returns
end-of-file (or an error) means it has gone. A peek that returns data
(a pipelined request) proves it is still there, and the watch ends.

A TLS socket takes no peek (``recv`` with flags is refused): the watch
waits until the connection is readable, then asks the kernel whether the
peer has shut its side (``peer_closed``: ``POLLRDHUP``, never reading).

Behind the thread bridge (a threaded host: ``app.runtime.bridge``) the app
never sees the client's socket: the host's request thread looks at it with
``peer_closed`` and sets ``environ[HANGUP_KEY].gone``, which the watch waits
on instead; the bridge sets ``.over`` when the request is over either way,
which ends a watch nobody stopped.
"""

from __future__ import annotations

import select
from dataclasses import dataclass
from socket import MSG_PEEK
from typing import Any, Callable

import gevent
from gevent.event import Event
from gevent.exceptions import ConcurrentObjectUseError
from gevent.monkey import get_original
from gevent.socket import wait_read

HANGUP_KEY = "llama_swap.hangup"  # environ: the HangupSignal of a request behind the thread bridge
_poll = get_original("select", "poll")  # the kernel's, patched or not: asked with a zero timeout only
_SHUT = select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL


@dataclass(frozen=True)
class HangupSignal:
    """What the thread bridge tells a request's watches: the client has ``gone``; the request is ``over``."""

    gone: Event
    over: Event


def peer_closed(sock: Any) -> bool:
    """Whether ``sock``'s peer has shut its side (or the connection failed), asked without waiting or reading.

    TLS sockets and sockets with a timeout alike: the kernel's ``POLLRDHUP``,
    not a peek (which a TLS socket refuses and a timeout would make wait).
    """
    try:
        fd = sock.fileno()
    except (OSError, ValueError):
        return True
    if fd < 0:
        return True
    poller = _poll()
    poller.register(fd, select.POLLRDHUP)
    return any(events & _SHUT for _, events in poller.poll(0))


def _watch(sock: Any, watch: "HangupWatch") -> None:
    try:
        data = sock.recv(1, MSG_PEEK)
    except ConcurrentObjectUseError:  # the request body's relay is waiting on the socket: it notices a hang-up
        return
    except ValueError:  # a TLS socket: no peek
        try:
            wait_read(sock.fileno())
        except (OSError, ValueError, ConcurrentObjectUseError):
            pass
        data = b"" if peer_closed(sock) else b"?"
    except OSError:
        data = b""
    if not data:
        watch.on_hangup()


def _wait(signal: HangupSignal, watch: "HangupWatch") -> None:
    gevent.wait([signal.gone, signal.over], count=1)
    if signal.gone.is_set():
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

    __slots__ = ("_greenlet", "_sock", "_signal", "on_hangup")

    def __init__(self, environ: dict, on_hangup: Callable[[], None], after: float = 0.0):
        self.on_hangup = on_hangup
        self._sock = environ.get("gunicorn.socket")
        self._signal: HangupSignal | None = environ.get(HANGUP_KEY) if self._sock is None else None
        self._greenlet = None
        self._start(after)

    def _start(self, after: float) -> None:
        if self._sock is not None:
            watch, on = _watch, self._sock
        elif self._signal is not None:
            watch, on = _wait, self._signal
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
