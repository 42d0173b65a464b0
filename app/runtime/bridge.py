"""The thread bridge: a request of a threaded host served by the app on the core hub, streamed back chunk by chunk.

In a host whose requests run in OS threads, the Flask app (routes, relay,
scheduler) lives on the core hub (``app.runtime.core_hub``) and
``install`` replaces its ``wsgi_app`` with this bridge. The host's request
thread keeps everything that belongs to the host (its input stream, its
socket, its ``start_response``, the iteration of the answer) and the core
keeps everything that belongs to the app; they talk in messages:

- the core runs the app in a greenlet on a copy of the request's environ
  whose body is a ``_BodyFromHost``: each read the app makes is asked of the
  request thread, which reads the host's stream (nothing else may) and
  hands back the bytes, or the exception the host raised;
- the app's ``start_response`` becomes a message, and so does each chunk of
  its body, an empty one too (the relay yields one when the upstream's
  headers arrive: a host sends the headers on it, before the first event,
  as gunicorn's gevent worker does): at most ``WINDOW`` chunks are in flight, so a slow client slows
  its upstream down and nothing is buffered whole;
- an exception out of the body (``StreamBroken``: the upstream died
  mid-answer) is raised again in the request thread, so the host drops the
  connection as a gevent host would;
- a client that hangs up: the host stops iterating the answer (a write
  failed, or it closed it), or, while the app is silent (a long prompt
  before the first token, a model still loading), the request thread looks
  at the client every ``HANGUP_POLL_S`` (``peer_closed`` on gunicorn's or
  Werkzeug's socket, TLS ones too; waitress's ``client_disconnected``).
  Either way the core sets the request's hang-up signal (``HANGUP_KEY``),
  which the relay's hang-up watch waits on: the upstream request is closed and the lease released, as
  under gevent. The host's thread ends the answer quietly (a 499 if it had
  not begun): it is writing to nobody. A host that refuses the answer
  (its ``start_response`` raises) counts as a hang-up too: the app never
  waits on a request thread that has left.

A websocket upgrade needs the host's socket on the core and is refused
(501). Under a gevent host none of this is installed.
"""

from __future__ import annotations

import logging
import queue
import socket
from typing import Any, Callable, Iterable, Iterator

from flask import Flask
from gevent.event import Event

from app.errors import error_response
from app.relay.hangup import HANGUP_KEY, HangupSignal, peer_closed
from app.runtime.core_hub import CORE_KEY, CoreHub

log = logging.getLogger("llama-swap")

WINDOW = 8  # chunks the core may send ahead of what the host has taken
HANGUP_POLL_S = 0.25  # how often a silent request's client is looked at
# What only the host's own thread may use; the app on the core never sees them.
HOST_ONLY_KEYS = ("gunicorn.socket", "werkzeug.socket", "waitress.client_disconnected", "wsgi.file_wrapper")

_START, _CHUNK, _END, _FAIL, _READ = range(5)  # core -> request thread messages
_GONE = (5,)  # what the request thread tells itself when its client has hung up
# The answer to a client that left before it began (nginx's code): nobody reads it, the host closes quietly.
GONE_START = ("499 Client Closed Request", [("Content-Length", "0")], None)


def install(app: Flask, core: CoreHub) -> None:
    """Make ``app`` (built on ``core``) answer requests that come in on other threads."""
    app.extensions[CORE_KEY] = core
    app.wsgi_app = Bridge(app.wsgi_app, core)  # type: ignore[method-assign]


class Bridge:
    """The WSGI callable a threaded host calls: hands each request to the core, serves its messages."""

    def __init__(self, inner: Callable[..., Iterable[bytes]], core: CoreHub):
        self._inner = inner
        self._core = core

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self._core.here:  # a request made on the hub itself (a test client there): nothing to bridge
            return self._inner(environ, start_response)
        if environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            return self._refuse_websocket(environ, start_response)
        request = _RequestSide(environ, self._core)
        self._core.spawn(_serve_on_core, self._inner, request.core_environ(), request.core)
        try:
            status, headers, exc_info = request.until_started()
            request.host_write = start_response(status, headers, exc_info)
        except BaseException:  # the host refused the answer (a header it rejects): the app must not wait on
            request.close()
            raise
        return request

    def _refuse_websocket(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        response = error_response(501, "websocket relay needs a gevent host (python -m app, or gunicorn with "
                                       "gunicorn.conf.py); this host runs the app through its thread bridge")
        return response(environ, start_response)


class _CoreSide:
    """The core's half of one request: what the app's greenlet waits on, set only on the hub."""

    __slots__ = ("outbox", "gone", "over", "_wake", "_reply", "_sent", "_taken")

    def __init__(self, outbox: "queue.SimpleQueue[tuple]"):
        self.outbox = outbox  # to the request thread
        self.gone = Event()  # the client hung up: the relay's hang-up watch waits on this
        self.over = Event()  # the app is done with the request: a watch nobody stopped ends
        self._wake = Event()
        self._reply: tuple | None = None
        self._sent = 0
        self._taken = 0

    # -- set by the request thread, through the hub's thread-safe callbacks
    def replied(self, reply: tuple) -> None:
        self._reply = reply
        self._wake.set()

    def took(self) -> None:
        self._taken += 1
        self._wake.set()

    def hung_up(self) -> None:
        self.gone.set()
        self._wake.set()

    # -- used by the app's greenlet
    def _wait_until(self, ready: Callable[[], bool]) -> None:
        """Wait for ``ready()`` or the client's hang-up, whichever comes first."""
        while not ready() and not self.gone.is_set():
            self._wake.clear()
            self._wake.wait()

    def read(self, how: str, size: int) -> bytes:
        """Bytes of the body, read by the request thread (``how``: read or readline); ConnectionResetError
        once the client has left."""
        self._reply = None
        self.outbox.put((_READ, how, size))
        self._wait_until(lambda: self._reply is not None)
        reply, self._reply = self._reply, None
        if reply is None:
            raise ConnectionResetError("the client went away")
        ok, value = reply
        if not ok:
            raise value
        return value

    def send(self, chunk: bytes) -> bool:
        """Hand one chunk to the request thread once the window has room; False if the client has gone."""
        self._wait_until(lambda: self._sent - self._taken < WINDOW)
        if self.gone.is_set():
            return False
        self._sent += 1
        self.outbox.put((_CHUNK, chunk))
        return True


class _BodyFromHost:
    """``wsgi.input`` on the core: every read is done by the request thread, on the host's stream."""

    __slots__ = ("_core",)

    def __init__(self, core: _CoreSide):
        self._core = core

    def read(self, size: int = -1) -> bytes:
        return self._core.read("read", -1 if size is None else size)

    def readline(self, size: int = -1) -> bytes:
        return self._core.read("readline", -1 if size is None else size)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


def _serve_on_core(inner: Callable[..., Iterable[bytes]], environ: dict, core: _CoreSide) -> None:
    """Run the app on the hub for one request; every outcome ends in ``_END`` or ``_FAIL`` to the request thread."""

    def start_response(status: str, headers: list, exc_info: Any = None) -> Callable[[bytes], None]:
        core.outbox.put((_START, status, headers, exc_info))
        return core.send

    result: Iterable[bytes] | None = None
    try:
        result = inner(environ, start_response)
        for chunk in result:  # an empty one too: the relay yields it for the headers to go out at once
            if not core.send(chunk):
                break
    except Exception as exc:  # noqa: BLE001 - raised again in the request thread, where the host handles it
        core.outbox.put((_FAIL, exc))
        return
    except BaseException as exc:  # the greenlet's own (GreenletExit, a Timeout): never into the host's thread
        core.outbox.put((_FAIL, RuntimeError(f"the request was stopped on the core hub: {exc!r}")))
        raise
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - the answer is over either way
                log.exception("closing a bridged response")
        core.over.set()
    core.outbox.put((_END,))


class _RequestSide:
    """The host thread's half of one request: serves the core's messages, yields the answer's chunks."""

    def __init__(self, environ: dict, core: CoreHub):
        self._environ = environ
        self._hub = core
        self._inbox: "queue.SimpleQueue[tuple]" = queue.SimpleQueue()
        self.core = _CoreSide(self._inbox)
        self._client_gone = hangup_probe(environ)
        self._over = False
        self._taken_one = False
        self._began = False  # a byte of the body has gone to the host
        self.host_write: Callable[[bytes], Any] | None = None  # what the host's start_response gave
        _no_delay(environ)

    def core_environ(self) -> dict:
        environ = {key: value for key, value in self._environ.items() if key not in HOST_ONLY_KEYS}
        environ["wsgi.input"] = _BodyFromHost(self.core)
        environ[HANGUP_KEY] = HangupSignal(self.core.gone, self.core.over)
        return environ

    def until_started(self) -> tuple[str, list, Any]:
        """Serve body reads until the app starts its response; its status, headers and exc_info."""
        message = self._next()
        if message[0] == _START:
            return message[1], message[2], message[3]
        self._over = True
        if message[0] == _FAIL:
            raise message[1]
        if message is _GONE:
            return GONE_START
        raise RuntimeError("the app ended without starting a response")

    def _next(self) -> tuple:
        """The core's next message that is not a body read (those are served here)."""
        while True:
            try:
                message = self._inbox.get(timeout=HANGUP_POLL_S)
            except queue.Empty:
                if self._client_gone is not None and self._client_gone():
                    self._hang_up()
                    return _GONE
                continue
            if message[0] != _READ:
                return message
            self._serve_read(message[1], message[2])

    def _serve_read(self, how: str, size: int) -> None:
        stream = self._environ["wsgi.input"]
        try:
            reply = (True, stream.readline(size) if how == "readline" else stream.read(size))
        except BaseException as exc:  # noqa: BLE001 - the app decides what a failed read means
            reply = (False, exc)
        self._hub.post(self.core.replied, reply)

    def _hang_up(self) -> None:
        self._over = True
        self._hub.post(self.core.hung_up)

    # -- the answer, as the host iterates it
    def __iter__(self) -> "_RequestSide":
        return self

    def __next__(self) -> bytes:
        while True:
            if self._over:
                raise StopIteration
            if self._taken_one:
                self._hub.post(self.core.took)  # the host has written the chunk before: room for one more
            message = self._next()
            kind = message[0]
            if kind != _CHUNK:
                break
            self._taken_one = True
            if message[1] or self._began or self.host_write is None:
                self._began = True
                return message[1]
            # The headers, now: from the iteration, waitress and uWSGI send them only with a non-empty
            # chunk (PEP 3333), from write() at once, as gunicorn and Werkzeug do either way.
            self.host_write(b"")
        self._over = True
        if kind == _FAIL:
            raise message[1]
        if kind == _START:  # start_response called again (with exc_info) after the body began
            raise RuntimeError("the app started its response twice")
        raise StopIteration  # the end, or a client gone: the host closes quietly

    def close(self) -> None:
        """The host is done with the answer: if the app is not, the client has gone."""
        if not self._over:
            self._hang_up()


def _host_socket(environ: dict) -> Any:
    """The client's socket, where the host gives it (gunicorn, Werkzeug); None elsewhere."""
    return environ.get("gunicorn.socket") or environ.get("werkzeug.socket")


def hangup_probe(environ: dict) -> Callable[[], bool] | None:
    """A check that the host's client has hung up, where the host lets us look; None where it does not."""
    sock = _host_socket(environ)
    if sock is not None:
        return lambda: peer_closed(sock)
    asked = environ.get("waitress.client_disconnected")  # only with waitress's channel_request_lookahead > 0
    if callable(asked):
        return asked
    return None


def _no_delay(environ: dict) -> None:
    """TCP_NODELAY on the client socket, as ``stamp_arrival`` sets it under gunicorn's gevent worker."""
    sock = _host_socket(environ)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
