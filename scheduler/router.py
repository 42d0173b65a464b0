"""The router: one greenlet, one mailbox, all scheduling state.

HTTP views talk to the router only through ``submit``/``cancel`` (a ticket
they wait on), ``Lease.release`` (posts ServeDone), ``unload`` and
``shutdown``. Each of those posts an event to the mailbox; the loop hands it
to the pure FIFO scheduler, which decides and acts back through the
``Effects`` methods implemented here. Slow work (a swap) runs in its own
greenlet and comes back as a ``swap_done`` event, so the loop never waits on
a model load. The scheduler cannot sleep: when it needs to look again at a
moment of its choosing (a queued request reaching ``maxWait``), it asks for a
wake-up and a timer greenlet posts a ``tick`` event then.

Invariants kept here (the scheduler keeps the rest):
- a ticket is granted, failed or cancelled exactly once (``Ticket`` decides
  the race between a grant and a client hanging up, as Go's unbuffered
  channel does);
- every grant the caller took is matched by exactly one ``serve_done``
  (``Lease.release`` is idempotent);
- an unloaded model stays unloaded: a swap still stopping its evict set when
  its target is unloaded does not start the target afterwards.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import gevent
from gevent.event import AsyncResult
from gevent.queue import Queue

from scheduler.errors import ClientGone, RouteError, ShuttingDown, StartFailed, Unloaded
from scheduler.fifo import FifoScheduler, Request
from scheduler.process import UpstreamProcess
from scheduler.state import ProcessState
from scheduler.swappers import Swapper

log = logging.getLogger("llama-swap.router")

_WAITING, _GRANTED, _FAILED, _CANCELLED = range(4)


@dataclass(eq=False)
class Ticket(Request):
    """One request waiting for a decision; the reply slot the router fills."""

    _reply: AsyncResult = field(default_factory=AsyncResult, repr=False)
    _status: int = _WAITING
    submitted_at: float = field(default_factory=time.monotonic)

    def grant(self, lease: "Lease") -> bool:
        """Hand the caller its lease; False when the caller already left."""
        if self._status != _WAITING:
            return False
        self._status = _GRANTED
        self._reply.set(lease)
        return True

    def fail(self, error: RouteError) -> None:
        if self._status == _WAITING:
            self._status = _FAILED
            self._reply.set_exception(error)

    def withdraw(self) -> bool:
        """The caller leaves; True when it left before any answer.

        The waiting view is woken with ClientGone so its greenlet (and the
        client's socket) are freed now, not at shutdown.
        """
        if self._status != _WAITING:
            return False
        self._status = _CANCELLED
        self._reply.set_exception(ClientGone(f"client went away while waiting for model {self.model}"))
        return True

    def wait(self, timeout: float | None = None) -> "Lease | None":
        """The lease (raises the RouteError); None if ``timeout`` passed first."""
        self._reply.wait(timeout)
        if not self._reply.ready():
            return None
        return self._reply.get()


@dataclass(eq=False)
class _SwapRun:
    """One swap greenlet's standing: ``wanted`` turns False when its target is unloaded meanwhile."""

    wanted: bool = True


class Lease:
    """The right to send one request to a ready upstream; release it exactly once."""

    __slots__ = ("model", "process", "_router", "_released")

    def __init__(self, router: "Router", model: str, process: UpstreamProcess):
        self.model = model
        self.process = process
        self._router = router
        self._released = False

    @property
    def proxy_url(self) -> str:
        return self.process.spec.proxy_url

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._router._post(("serve_done", self.model))


class Router:
    """Owns scheduling: runs the FIFO scheduler on one loop and implements its Effects."""

    def __init__(self, processes: Mapping[str, UpstreamProcess], swapper: Swapper, *,
                 limits: Mapping[str, int] | None = None, priority: Mapping[str, int] | None = None,
                 max_wait: float = 0.0, on_event: Callable[[str, dict], None] | None = None):
        self._processes = dict(processes)
        self._mailbox: Queue = Queue()
        self._closed = False
        self._max_wait = max_wait  # seconds; the FIFO scheduler's starvation bound (0 = off)
        self._timers: set[gevent.Greenlet] = set()
        self._swap_runs: dict[str, _SwapRun] = {}  # the latest swap per target, while it runs
        self._scheduler = FifoScheduler(swapper, self, limits=limits, priority=priority,
                                        max_wait=max_wait, now=time.monotonic)
        self._on_event = on_event or (lambda kind, data: None)
        self._loop = gevent.spawn(self._run)

    # ------------------------------------------------------------------ for the HTTP layer
    @property
    def processes(self) -> Mapping[str, UpstreamProcess]:
        return self._processes

    def submit(self, model: str) -> Ticket:
        """Ask for ``model``; wait on the returned ticket for a Lease or a RouteError."""
        ticket = Ticket(model=model)
        if self._closed:
            ticket.fail(ShuttingDown("server is shutting down"))
        else:
            self._post(("request", ticket))
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """The caller hung up; it leaves the queue (a grant already taken stays taken)."""
        if ticket.withdraw():
            self._post(("cancel", ticket))

    def unload(self, models: Iterable[str] | None = None) -> list[str]:
        """Stop ``models`` (default: every running one); returns when they are dead."""
        done = AsyncResult()
        self._post(("unload", None if models is None else list(models), done))
        return done.get()

    def shutdown(self) -> None:
        """Fail every waiter and stop every upstream (graceful, then forced)."""
        if self._closed:
            return
        self._closed = True
        done = AsyncResult()
        self._post(("shutdown", done))
        done.get()

    def queue_position(self, ticket: Ticket) -> int | None:
        return self._scheduler.queue_position(ticket)

    def load(self, model: str) -> int:
        """Requests for ``model`` in flight or waiting; a snapshot (selectors spill over on it)."""
        return self._scheduler.load(model)

    # ------------------------------------------------------------------ the loop
    def _post(self, event: tuple) -> None:
        self._mailbox.put(event)

    def _run(self) -> None:
        while True:
            event = self._mailbox.get()
            try:
                if getattr(self, "_on_" + event[0])(*event[1:]) is False:
                    return
            except Exception:  # the loop must outlive any bug in one event
                log.exception("router: error handling %s", event[0])

    def _on_request(self, ticket: Ticket) -> None:
        self._scheduler.on_request(ticket)
        position = self._scheduler.queue_position(ticket)
        if position is not None:
            log.info("%s: queued at position %d (waiting for running models to finish)",
                     ticket.model, position)

    def _on_cancel(self, ticket: Ticket) -> None:
        log.info("%s: client went away while waiting (%.2fs); request dropped",
                 ticket.model, time.monotonic() - ticket.submitted_at)
        self._scheduler.on_cancel(ticket)

    def _on_tick(self) -> None:
        self._scheduler.on_tick()

    def _on_swap_done(self, model: str, error: RouteError | None) -> None:
        self._scheduler.on_swap_done(model, error)

    def _on_serve_done(self, model: str) -> None:
        self._processes[model].request_finished()
        self._scheduler.on_serve_done(model)

    def _on_unload(self, models: list[str] | None, done: AsyncResult) -> None:
        if models is None:
            # "Everything" includes a model a swap is about to start.
            models = sorted(set(self.running_models()) | set(self._swap_runs))
        models = [m for m in models if m in self._processes]
        if models:
            log.info("unloading %s", ", ".join(models))
        for model in models:
            run = self._swap_runs.get(model)
            if run is not None:
                # Its swap may still be stopping other models; it must not
                # start this one afterwards (the stop below could come first).
                run.wanted = False
        self._scheduler.on_unload(models)
        done.set(models)

    def _on_shutdown(self, done: AsyncResult) -> bool:
        gevent.killall(list(self._timers))  # nobody reads the mailbox after this
        self._scheduler.on_shutdown(ShuttingDown("server is shutting down"))
        gevent.joinall([gevent.spawn(p.shutdown) for p in self._processes.values()])
        done.set(None)
        return False

    # ------------------------------------------------------------------ Effects
    def model_state(self, model: str) -> ProcessState | None:
        process = self._processes.get(model)
        return None if process is None else process.state

    def running_models(self) -> dict[str, ProcessState]:
        return {m: p.state for m, p in self._processes.items()
                if p.state not in (ProcessState.STOPPED, ProcessState.SHUTDOWN)}

    def start_swap(self, model: str, evict: frozenset[str]) -> None:
        run = _SwapRun()
        self._swap_runs[model] = run
        gevent.spawn(self._swap, model, evict, run)

    def grant_serve(self, req: Request, model: str) -> bool:
        process = self._processes[model]
        if not req.grant(Lease(self, model, process)):  # type: ignore[attr-defined]
            return False
        process.request_started()
        return True

    def grant_error(self, req: Request, error: RouteError) -> None:
        req.fail(error)  # type: ignore[attr-defined]

    def stop_processes(self, models: Sequence[str]) -> None:
        gevent.joinall([gevent.spawn(self._processes[m].stop) for m in models])

    def wake_after(self, delay: float) -> None:
        # A tick that lands a little early (gevent's loop clock lags) is
        # harmless: the scheduler finds nobody overdue yet and asks again.
        timer = gevent.spawn_later(max(0.0, delay), self._post, ("tick",))
        self._timers.add(timer)
        timer.link(self._timers.discard)

    def report_hold(self, req: Request, waited: float, held: frozenset[str]) -> None:
        if held:
            names = ", ".join(sorted(held))
            until = "it drains" if len(held) == 1 else "they drain"
            log.info("%s: waited %.1fs (maxWait %gs); holding new requests for %s until %s",
                     req.model, waited, self._max_wait, names, until)
        else:
            log.info("%s: waited %.1fs (maxWait %gs); holding new swaps that would get in its way",
                     req.model, waited, self._max_wait)

    # ------------------------------------------------------------------ the slow part of a swap
    def _swap(self, model: str, evict: frozenset[str], run: "_SwapRun") -> None:
        began = time.monotonic()
        error: RouteError | None = None
        try:
            if evict:
                log.info("%s: swapping in, stopping %s", model, ", ".join(sorted(evict)))
                gevent.joinall([gevent.spawn(self._processes[m].stop) for m in evict], raise_error=True)
            if not run.wanted:
                raise Unloaded(f"model {model} was unloaded before it started")
            # No yield between the check and the request to start: an unload
            # handled after this point finds the start queued and stops it.
            self._processes[model].ensure_ready()
        except RouteError as exc:
            error = exc
        except Exception as exc:  # a bug must still answer the waiters
            log.exception("%s: swap failed", model)
            error = StartFailed(f"model {model} failed to start: {exc}")
        took = time.monotonic() - began
        if error is None:
            log.info("%s: swap done in %.2fs", model, took)
        else:
            log.warning("%s: swap failed after %.2fs: %s", model, took, error.message)
        if self._swap_runs.get(model) is run:
            del self._swap_runs[model]
        self._post(("swap_done", model, error))
