"""Grants: the right to send one request upstream, every kind of it, and the one wait for one.

A ``Grant`` says where to send (``proxy_url``), for whom (``model``, in logs
and errors), how long the request waited for it (``queued``, ``loading``),
and is released exactly once when the exchange is over. The kinds, side by
side:

- the router's ``Lease`` (``scheduler.router``): the model is loaded and
  counted busy until it is released;
- an uncounted lease (``ready_without_lease``): for requests that must not
  start a model nor keep it loaded (``upstream.ignorePaths``, ignored
  websockets, the ComfyUI page socket), served only while it is ready;
- ``PeerGrant``: a request to a peer, counted in ``PeerTraffic`` (selectors
  spill over on that count) until released.

``GrantWait`` is the one wait for a router grant: most requests are granted
on the router's next turn, so the client's socket is watched for a hang-up
(``HangupWatch``) only once the wait outlasts ``IMMEDIATE_GRANT``; a client
that leaves then is taken out of the queue. ``acquire`` waits to the end;
the loading-state stream waits in ticks, writing progress between them.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterator, Protocol

from app.errors import NotLoaded
from app.observe.exchange import Exchange
from app.relay.hangup import HangupWatch
from scheduler.errors import RouteError
from scheduler.events import OriginOf
from scheduler.router import Lease, Router, Ticket
from scheduler.state import ProcessState

IMMEDIATE_GRANT = 0.02  # seconds a request may wait before its client's socket is watched


class Grant(Protocol):
    @property
    def model(self) -> str: ...

    @property
    def proxy_url(self) -> str: ...

    @property
    def queued(self) -> float: ...

    @property
    def loading(self) -> float: ...

    def release(self) -> None: ...


# --------------------------------------------------------------------------- waiting for the router


class GrantWait:
    """One request waiting for the router's grant for ``model``."""

    def __init__(self, router: Router, model: str, environ: dict, exchange: Exchange | None = None):
        self._router = router
        self._environ = environ
        self.model = model
        self.ticket: Ticket = router.submit(model, origin_of(exchange))
        self.lease: Lease | None = None
        if exchange is not None:  # an operator's cancel takes the request out of the queue
            exchange.set_canceller(lambda: router.cancel(
                self.ticket, f"request cancelled while waiting for model {model}"))

    def at_once(self) -> Lease | None:
        """The lease if it comes within ``IMMEDIATE_GRANT``; raises the refusal if one comes first."""
        self.lease = self.ticket.wait(IMMEDIATE_GRANT)
        return self.lease

    def until_granted(self, tick: float | None = None) -> Iterator[None]:
        """Wait, watching the client; yields every ``tick`` seconds while waiting (never, if None).

        When the iteration ends, ``lease`` holds the grant; a refusal is
        raised (``ClientGone`` if the client hung up meanwhile).
        """
        watch = HangupWatch(self._environ, lambda: self._router.cancel(self.ticket))
        try:
            while True:
                lease = self.ticket.wait(tick)
                if lease is not None:
                    self.lease = lease
                    return
                yield
        finally:
            watch.stop()

    def queue_position(self) -> int | None:
        return self._router.queue_position(self.ticket)

    def state(self) -> ProcessState | None:
        return self._router.model_state(self.model)

    def abandon(self) -> None:
        """The caller gives up: leave the queue, or give back a grant that was never used."""
        self._router.cancel(self.ticket)  # a no-op once answered
        try:
            lease = self.ticket.wait(0)
        except RouteError:  # refused: nothing is held
            return
        if lease is not None:
            lease.release()


def origin_of(exchange: Exchange | None) -> OriginOf | None:
    """Who asks for a model, as a swap's ``cause`` tells it: the request (its in-flight id), or None."""
    if exchange is None:
        return None
    return lambda: {"by": "request", "id": str(exchange.id), "method": exchange.method, "path": exchange.path,
                    "client": exchange.remote_addr}


def acquire(router: Router, model: str, environ: dict, exchange: Exchange | None = None) -> Lease:
    """Wait for ``model``'s grant; a client that hangs up (or a cancel of ``exchange``) leaves the queue (``ClientGone``)."""
    wait = GrantWait(router, model, environ, exchange)
    lease = wait.at_once()
    if lease is not None:
        return lease
    for _ in wait.until_granted():
        pass
    assert wait.lease is not None
    return wait.lease


def ready_without_lease(router: Router, model: str, why: str) -> Lease:
    """A lease in shape only, for a request that must not start ``model``; 409 unless it is ready.

    An advisory read, and the one place a state is read without asking its
    owner: such a request only looks. The model may still stop a moment
    later; the request then fails with a 502, the price of not holding a
    lease (llama-swap makes the same trade). The router never sees it, so
    releasing it gives nothing back.
    """
    process = router.processes.get(model)
    if process is None or process.state is not ProcessState.READY:
        raise NotLoaded(f"model {model} is not loaded; {why}")
    return Lease(model, process.spec.proxy_url, release=None)


# --------------------------------------------------------------------------- peers


class PeerTraffic:
    """Requests in flight to each (peer, model); only the server's one worker touches it."""

    def __init__(self) -> None:
        self._in_flight: Counter[tuple[str, str]] = Counter()

    def load(self, peer: str, model: str) -> int:
        return self._in_flight[(peer, model)]

    def begin(self, peer: str, model: str, proxy_url: str) -> "PeerGrant":
        """Count one request to ``model`` on ``peer``; the grant's ``release`` uncounts it, once."""
        key = (peer, model)
        self._in_flight[key] += 1
        return PeerGrant(f"{peer}/{model}", proxy_url, lambda: self._end(key))

    def _end(self, key: tuple[str, str]) -> None:
        self._in_flight[key] -= 1
        if self._in_flight[key] <= 0:
            del self._in_flight[key]


class PeerGrant:
    """A peer request as the relay holds it: nothing waits here for a peer."""

    __slots__ = ("model", "proxy_url", "_done")

    queued = 0.0
    loading = 0.0

    def __init__(self, qualified: str, proxy_url: str, done: Callable[[], None]):
        self.model = qualified  # what the log lines and errors name
        self.proxy_url = proxy_url
        self._done: Callable[[], None] | None = done

    def release(self) -> None:
        if self._done is not None:
            done, self._done = self._done, None
            done()
