"""The record of one proxied exchange, and the observers that watch it happen.

A view opens an ``Exchange`` once it knows which model (or peer model) a
request goes to, and the relay fills it in as the request moves: granted
(how long it queued, how much of that the model spent loading), the
upstream's response (status, headers), each chunk sent to the client, and
the end with its outcome. Each step is told to the registered observers as
it happens: ``on_start``, ``on_response``, ``on_end``.

An exchange ends exactly once (``end`` is idempotent, the first word
stands): complete, the client gone, the upstream failing mid-way, refused
before it reached an upstream (with the status of that refusal), or
cancelled by an operator (``cancel``, e.g. ``POST /api/inflight/<id>/cancel``).

``cancel`` asks whoever holds the exchange now to end it: the relay
registers what cancelling means at each stage (``set_canceller``: leave the
router's queue while waiting for a grant, cut the upstream connection while
relaying); a cancel asked between two stages is remembered
(``cancel_requested``) and acted on by the next one.

The exchange keeps the request's WSGI ``environ`` (its headers, for
observers that want them) and, when the proxy buffered it, the request body
as sent upstream (``request_body``): references, never copies.

Chunks cost nothing when nobody watches them: an observer that wants the
body of an exchange says so for that exchange (``watch_chunks``, from its
``on_start``), and only those sinks are called per chunk, with the very
bytes object being sent (never a copy); otherwise a chunk only adds to
``response_bytes``. An observer (or sink) that raises is logged and
skipped: watching never breaks serving.
"""

from __future__ import annotations

import enum
import functools
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

log = logging.getLogger("llama-swap.observe")


class Outcome(str, enum.Enum):
    COMPLETE = "complete"  # the whole answer reached the client
    CLIENT_GONE = "client_gone"  # the client hung up (or a write to it failed) first
    UPSTREAM_ERROR = "upstream_error"  # the upstream broke off, or could not be reached
    REFUSED = "refused"  # answered by the proxy itself: unknown model, limit, failed start, ...
    CANCELLED = "cancelled"  # an operator cancelled it (queued: left the queue; relaying: upstream cut)

    def __str__(self) -> str:
        return self.value


@functools.lru_cache(maxsize=256)
def environ_header_name(key: str) -> str:
    """The header a WSGI environ key holds: ``HTTP_X_API_KEY`` → ``X-Api-Key``, ``CONTENT_TYPE`` → ``Content-Type``."""
    return (key[5:] if key.startswith("HTTP_") else key).replace("_", "-").title()


class ExchangeObserver:
    """Override what you need; the defaults do nothing. For the body, see ``Exchange.watch_chunks``."""

    def on_start(self, exchange: "Exchange") -> None: ...

    def on_response(self, exchange: "Exchange") -> None: ...

    def on_end(self, exchange: "Exchange") -> None: ...


@dataclass(eq=False)
class Exchange:
    """One request on its way through the proxy; times are seconds since ``began`` (monotonic)."""

    id: int
    model: str  # the model id, or ``peer/model`` for a peer's
    method: str
    path: str  # as sent upstream
    began: float  # time.monotonic() when the request arrived
    started_at: float  # time.time() of the same moment, for timestamps
    peer: str | None = None
    remote_addr: str = ""
    request_bytes: int | None = None  # Content-Length, when the client sent one
    queued: float | None = None  # waiting for the router's grant
    loading: float | None = None  # of that wait, the model starting
    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_bytes: int = 0
    first_byte: float | None = None  # the first body byte handed to the server
    total: float | None = None
    outcome: Outcome | None = None
    error: str | None = None
    environ: Mapping[str, object] | None = field(default=None, repr=False)  # the request's, for its headers
    request_body: bytes | None = field(default=None, repr=False)  # as sent upstream, when it was buffered
    metadata: dict[str, str] = field(default_factory=dict)  # e.g. ``selector``, ``fifo_priority``
    cancel_requested: bool = False
    _canceller: Callable[[], None] | None = field(default=None, repr=False)
    _observers: Sequence[ExchangeObserver] = field(default=(), repr=False)
    _sinks: list[Callable[[bytes], None]] = field(default_factory=list, repr=False)
    _byte_limit: float = field(default=float("inf"), repr=False)  # past it, ``_on_limit`` is called once
    _on_limit: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    def granted(self, queued: float, loading: float) -> None:
        self.queued, self.loading = queued, loading

    def responded(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.status, self.response_headers = status, headers
        self._tell("on_response")

    def request_headers(self) -> list[tuple[str, str]]:
        """The client's request headers (``Name-Like-This``, as sent), read from the environ."""
        environ = self.environ or {}
        return [(environ_header_name(key), str(value)) for key, value in environ.items()
                if key.startswith("HTTP_") or (key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value)]

    def watch_chunks(self, sink: Callable[[bytes], None]) -> None:
        """Call ``sink`` with every chunk sent to the client from now on (the bytes themselves, not a copy)."""
        self._sinks.append(sink)

    def unwatch_chunks(self, sink: Callable[[bytes], None]) -> None:
        self._sinks = [s for s in self._sinks if s is not sink]

    def when_bytes_exceed(self, limit: int, then: Callable[[], None]) -> None:
        """Call ``then`` once, as soon as more than ``limit`` response bytes were sent (a watcher's budget,
        checked here so that its sink can be a bare ``list.append``)."""
        self._byte_limit, self._on_limit = limit, then

    def sent(self, chunk: bytes) -> None:
        """``chunk`` is on its way to the client."""
        if self.first_byte is None and chunk:
            self.first_byte = time.monotonic() - self.began
        self.response_bytes += len(chunk)
        if self.response_bytes > self._byte_limit and self._on_limit is not None:
            self._byte_limit, on_limit, self._on_limit = float("inf"), self._on_limit, None
            try:
                on_limit()
            except Exception:
                log.exception("a chunk watcher's byte limit (%r) failed", on_limit)
        for sink in self._sinks:
            try:
                sink(chunk)
            except Exception:
                log.exception("a chunk watcher (%r) failed; it sees no more chunks", sink)
                self._sinks = [s for s in self._sinks if s is not sink]

    def set_canceller(self, canceller: Callable[[], None] | None) -> None:
        """What ``cancel`` does from now on (None: nothing can be done at this stage)."""
        self._canceller = canceller
        if canceller is not None and self.cancel_requested and self.outcome is None:
            canceller()

    def cancel(self) -> bool:
        """End this exchange early on an operator's word; False when it is already over."""
        if self.outcome is not None:
            return False
        self.cancel_requested = True
        if self._canceller is not None:
            self._canceller()
        return True

    def end(self, outcome: Outcome, *, status: int | None = None, error: str | None = None) -> None:
        """The exchange is over; only the first call counts."""
        if self.outcome is not None:
            return
        if self.cancel_requested and outcome is not Outcome.COMPLETE:
            outcome, error = Outcome.CANCELLED, "cancelled"
        self._canceller = None
        self.outcome = outcome
        if status is not None:
            self.status = status
        if error is not None:
            self.error = error
        self.total = time.monotonic() - self.began
        self._tell("on_end")

    def refuse(self, status: int, message: str) -> None:
        """Answered by the proxy with an error before any upstream answer."""
        self.end(Outcome.REFUSED, status=status, error=message)

    def _tell(self, step: str) -> None:
        for observer in self._observers:
            try:
                getattr(observer, step)(self)
            except Exception:
                log.exception("exchange observer %s failed in %s", type(observer).__name__, step)


class Observers:
    """The registry of exchange observers, and where exchanges are opened. Lives as long as the app."""

    def __init__(self) -> None:
        self._all: tuple[ExchangeObserver, ...] = ()
        self._ids = itertools.count(1)

    def add(self, observer: ExchangeObserver) -> None:
        self._all = (*self._all, observer)

    def remove(self, observer: ExchangeObserver) -> None:
        self._all = tuple(o for o in self._all if o is not observer)

    def open(self, model: str, method: str, path: str, *, began: float | None = None, peer: str | None = None,
             remote_addr: str = "", request_bytes: int | None = None, environ: Mapping[str, object] | None = None,
             request_body: bytes | None = None, metadata: dict[str, str] | None = None) -> Exchange:
        """A new exchange, told to every observer (``on_start``) before it is returned."""
        now = time.monotonic()
        began = now if began is None else began
        exchange = Exchange(next(self._ids), model, method, path, began, time.time() - (now - began),
                            peer=peer, remote_addr=remote_addr, request_bytes=request_bytes,
                            environ=environ, request_body=request_body, metadata=metadata or {},
                            _observers=self._all)
        exchange._tell("on_start")
        return exchange
