"""The router: one greenlet, one mailbox, all scheduling state.

HTTP views act on the router only through ``submit``/``cancel`` (a ticket
they wait on), ``Lease.release`` (posts serve_done), ``unload``, ``drain``
and ``shutdown``. Each of those posts an event to the mailbox; the loop hands it
to the pure FIFO scheduler, which decides and acts back through the
``Effects`` methods implemented here. The loop never waits on anything slow:
a swap and an unload's stop each run in their own greenlet and come back as
events (``swap_done``, ``stopped``) tagged with the id the scheduler gave
them, so requests for other models keep flowing while a model that ignores
SIGTERM takes its ``unloadTimeout`` to die. The scheduler cannot sleep: when
it needs to look again at a moment of its choosing (a queued request reaching
``maxWait``), it asks for a wake-up and the clock posts a ``tick`` then.
A request and a lease's release, the request path's own events, are handled
in the caller's greenlet when the loop waits on an empty mailbox with nothing
being handled (``_post_or_handle``): the same handler the loop would run
next, one event at a time, so a ready model's grant costs no trip through
the hub. ``model_state``, ``load``, ``queue_position``, ``occupancy`` and ``processes`` are
snapshots for reports and choices, never gates.

Invariants kept here (the scheduler keeps the rest):
- a ticket is granted, failed or cancelled exactly once (``Ticket`` decides
  the race between a grant and a client hanging up, as Go's unbuffered
  channel does), and every ticket is answered: a bug while handling an event
  fails every waiter with ``InternalError`` instead of leaving it hanging;
- every grant the caller took is matched by exactly one ``serve_done``
  (``Lease.release`` is idempotent);
- an unloaded model stays unloaded: a swap still stopping its evict set when
  its target is unloaded does not start the target afterwards;
- after ``shutdown`` every call answers at once (the ``done`` guard): nothing
  is posted to a loop nobody reads;
- once ``drain`` is called no new request is taken (``ShuttingDown``); those
  already in (granted, queued, waiting for a load) go on as usual;
- a config reload (``apply``) never cuts a request nor refuses one for being
  a reload: a model whose spec is the same keeps its process (same child,
  its requests untouched); a changed or removed one keeps serving what it
  has, takes no new request, and is stopped once those are done (the
  scheduler's retirement), and only then does its name pass to the new
  process (or to nothing); a new one is there at once. The processes stay
  the router's alone: ``apply`` is one more event on the loop.

What happens is published as ``scheduler.events`` (swaps here, state
changes by the process owners); ``on_processed`` lets a test wait until the
loop has handled an event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Protocol, Sequence

import gevent
from gevent.event import AsyncResult
from gevent.lock import Semaphore
from gevent.queue import Queue

from scheduler.clock import Clock, GeventClock, Timer
from scheduler.errors import ClientGone, InternalError, RouteError, ShuttingDown, StartFailed, Unloaded
from scheduler.events import OriginOf, Publish, SwapBegan, SwapEnded, publish_nothing
from scheduler.fifo import FifoScheduler, Occupancy, Request
from scheduler.process import ProcessSpec
from scheduler.state import ProcessState
from scheduler.swappers import Swapper

log = logging.getLogger("llama-swap.router")

_WAITING, _GRANTED, _FAILED, _CANCELLED = range(4)


class Process(Protocol):
    """What the router needs of an upstream process (``scheduler.process.UpstreamProcess``)."""

    spec: ProcessSpec

    @property
    def assigned_spec(self) -> ProcessSpec:
        """The spec it was built with (``spec`` is the running one, perhaps moved to another port)."""
        ...

    @property
    def state(self) -> ProcessState: ...

    @property
    def last_start(self) -> tuple[float, float | None] | None: ...

    def ensure_ready(self) -> None: ...

    def stop(self) -> None: ...

    def shutdown(self) -> None: ...

    def set_busy(self, busy: bool) -> None: ...


@dataclass(eq=False)
class Ticket(Request):
    """One request waiting for a decision; the reply slot the router fills."""

    submitted_at: float = 0.0
    origin: OriginOf | None = None  # who asked, as the caller describes it; asked for at a swap, never read here
    _reply: AsyncResult = field(default_factory=AsyncResult, repr=False)
    _status: int = _WAITING

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

    def withdraw(self, why: str | None = None) -> bool:
        """The caller leaves; True when it left before any answer.

        The waiting view is woken with ClientGone (saying ``why``) so its
        greenlet (and the client's socket) are freed now, not at shutdown.
        """
        if self._status != _WAITING:
            return False
        self._status = _CANCELLED
        self._reply.set_exception(ClientGone(why or f"client went away while waiting for model {self.model}"))
        return True

    def wait(self, timeout: float | None = None) -> "Lease | None":
        """The lease (raises the RouteError); None if ``timeout`` passed first."""
        self._reply.wait(timeout)
        if not self._reply.ready():
            return None
        return self._reply.get()


class Lease:
    """The right to send one request to a ready upstream; release it exactly once.

    ``queued`` is how long the request waited for it, ``loading`` how much of
    that wait the model spent starting (seconds; 0 when it was ready).
    """

    __slots__ = ("model", "proxy_url", "queued", "loading", "_release")

    def __init__(self, model: str, proxy_url: str, release: Callable[[], None] | None,
                 queued: float = 0.0, loading: float = 0.0):
        self.model = model
        self.proxy_url = proxy_url
        self.queued = queued
        self.loading = loading
        self._release = release

    def release(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release()


@dataclass(frozen=True)
class Applied:
    """What a reload did to each model by name."""

    kept: tuple[str, ...] = ()  # same spec: the same process serves on
    restarted: tuple[str, ...] = ()  # a new spec: the new process takes over once the old one has drained
    removed: tuple[str, ...] = ()  # stopped once drained
    added: tuple[str, ...] = ()  # available at once

    @property
    def changed(self) -> bool:
        return bool(self.restarted or self.removed or self.added)


@dataclass(eq=False)
class _SwapRun:
    """One swap greenlet's standing: ``wanted`` turns False when its target is unloaded meanwhile."""

    swap_id: int
    model: str
    wanted: bool = True


class Router:
    """Owns scheduling: runs the FIFO scheduler on one loop and implements its Effects."""

    def __init__(self, processes: Mapping[str, Process], swapper: Swapper, *,
                 limits: Mapping[str, int] | None = None, priority: Mapping[str, int] | None = None,
                 max_wait: float = 0.0, clock: Clock | None = None, publish: Publish = publish_nothing,
                 on_processed: Callable[[str], None] | None = None):
        self._processes = dict(processes)
        # A reload's replacements, by model, waiting for the old process to retire (None: the model is removed).
        self._replacements: dict[str, Process | None] = {}
        self._clock = clock or GeventClock()
        self._publish = publish
        self._on_processed = on_processed
        self._mailbox: Queue = Queue()
        self._closed = False
        self._drained: AsyncResult | None = None  # set once drain() was called: True when nothing is left
        self._drain_seen = False  # the loop reached the drain: every request submitted before it is counted
        self._max_wait = max_wait  # seconds; the FIFO scheduler's starvation bound (0 = off)
        self._timers: dict[object, Timer] = {}  # wake-ups asked for, not yet fired
        self._unload_replies: dict[int, tuple[AsyncResult, list[str]]] = {}  # stop id -> (reply, models)
        self._swap_runs: dict[int, _SwapRun] = {}  # by swap id, while each runs
        self._waiting: set[Ticket] = set()  # tickets handed to the scheduler, not yet answered
        self._scheduler = FifoScheduler(swapper, self, limits=limits, priority=priority,
                                        max_wait=max_wait, now=self._clock.now)
        self._parked = False  # the loop waits on an empty mailbox (``submit`` may then handle its event itself)
        self._handling = Semaphore()  # one event at a time, should a handler ever yield
        self._loop = gevent.spawn(self._run)

    # ------------------------------------------------------------------ for the HTTP layer
    @property
    def processes(self) -> Mapping[str, Process]:
        return self._processes

    def submit(self, model: str, origin: OriginOf | None = None) -> Ticket:
        """Ask for ``model``; wait on the returned ticket for a Lease or a RouteError.

        ``origin()`` says who asks (a request, a preload); a swap started for
        this ticket carries what it answers in ``SwapBegan.cause``.
        """
        ticket = Ticket(model=model, submitted_at=self._clock.now(), origin=origin)
        if self._closed or self._drained is not None:
            ticket.fail(ShuttingDown("server is shutting down"))
        else:
            self._post_or_handle(("request", ticket))
        return ticket

    def cancel(self, ticket: Ticket, why: str | None = None) -> None:
        """The caller hung up (or was cancelled: ``why``); it leaves the queue (a grant already taken stays taken)."""
        if ticket.withdraw(why) and not self._closed:
            self._post(("cancel", ticket))

    def unload(self, models: Iterable[str] | None = None) -> list[str]:
        """Stop ``models`` (default: every running one); returns when they are dead."""
        if self._closed:
            return []
        done = AsyncResult()
        self._post(("unload", None if models is None else list(models), done))
        return done.get()

    def drain(self, timeout: float) -> bool:
        """Take no new request from now on, and wait up to ``timeout`` seconds (the router's clock) for every
        request already in (in flight, queued, waiting for a load) to be done; True when none is left.

        New requests are answered ``ShuttingDown`` at once. ``shutdown`` then
        fails what is still there. A second call waits on the same drain;
        ``cut_drain`` ends it early.
        """
        if self._closed:
            return True
        if self._drained is None:
            drained = self._drained = AsyncResult()
            deadline = self._clock.call_later(timeout, lambda: drained.ready() or drained.set(False))
            drained.rawlink(lambda _: deadline.cancel())
            self._post(("drain",))
        return self._drained.get()

    def cut_drain(self) -> None:
        """End a drain in progress now, as if its time were up (a quick shutdown asked for meanwhile)."""
        if self._drained is not None and not self._drained.ready():
            self._drained.set(False)

    def shutdown(self) -> None:
        """Fail every waiter and stop every upstream (graceful, then forced)."""
        if self._closed:
            return
        self._closed = True
        done = AsyncResult()
        self._post(("shutdown", done))
        done.get()

    def apply(self, processes: Mapping[str, Process], swapper: Swapper, *,
              limits: Mapping[str, int] | None = None, priority: Mapping[str, int] | None = None,
              max_wait: float | None = None) -> Applied:
        """Serve a reloaded config: ``processes`` (new, never started) by model, and its policy.

        A model whose ``assigned_spec`` runs as the one it has (equal, or but
        for an assigned ``${PORT}``) keeps its process (the new one is shut
        down unused); one whose spec differs is
        retired (its in-flight requests finish, new ones wait) and then
        replaced; one no longer named is retired and dropped; a new one is
        served at once. Returns when the router has taken it, not when the
        old processes are stopped.
        """
        if self._closed:
            for process in processes.values():
                gevent.spawn(process.shutdown)
            return Applied()
        done = AsyncResult()
        self._post(("apply", dict(processes), swapper, limits, priority, max_wait, done))
        return done.get()

    def model_state(self, model: str) -> ProcessState | None:
        """The model's process state, or None when there is no such model; a snapshot."""
        process = self._processes.get(model)
        return None if process is None else process.state

    def queue_position(self, ticket: Ticket) -> int | None:
        return self._scheduler.queue_position(ticket)

    def load(self, model: str) -> int:
        """Requests for ``model`` in flight or waiting; a snapshot (selectors spill over on it)."""
        return self._scheduler.load(model)

    def occupancy(self) -> dict[str, Occupancy]:
        """Per model, requests in flight and waiting (models with none left out); a snapshot for metrics."""
        return self._scheduler.occupancy()

    # ------------------------------------------------------------------ the loop
    def _post(self, event: tuple) -> None:
        self._mailbox.put(event)

    def _post_or_handle(self, event: tuple) -> None:
        """Post ``event``; or, when the loop waits on an empty mailbox and nothing is being handled, handle it
        here and now, as the loop would have next (same order, same code, one event at a time).

        For the request path's own events (a request, a lease released): a ready model's grant then costs
        no trip through the hub to the loop and back (~0.1 ms before the upstream request could go out).
        """
        if self._parked and self._mailbox.empty() and not self._handling.locked():
            self._handle(event)
        else:
            self._post(event)

    def _run(self) -> None:
        while True:
            self._parked = True
            event = self._mailbox.get()
            self._parked = False
            if self._handle(event):
                return

    def _handle(self, event: tuple) -> bool:
        """Handle one event, one at a time whoever calls (the loop, or ``submit`` while the loop is parked);
        True when the loop is to end."""
        with self._handling:
            try:
                finished = getattr(self, "_on_" + event[0])(*event[1:]) is False
            except Exception as exc:  # the loop must outlive any bug in one event, and answer its waiters
                log.exception("router: error handling %s", event[0])
                self._answer_after_fault(event, exc)
                finished = False
            if self._drain_seen and not self._drained.ready() and not self._scheduler.occupancy():
                self._drained.set(True)  # draining, and the last request in is done
            if self._on_processed is not None:
                self._on_processed(event[0])
            return finished

    def _answer_after_fault(self, event: tuple, exc: Exception) -> None:
        error = InternalError(f"internal error in the router while handling {event[0]}: {exc!r}")
        for item in event[1:]:
            if isinstance(item, AsyncResult) and not item.ready():
                item.set_exception(error)
        try:
            self._scheduler.on_fault(error)
        except Exception:
            log.exception("router: error answering waiters after a fault")
        for ticket in list(self._waiting):  # whatever the scheduler lost track of
            ticket.fail(error)
        self._waiting.clear()

    def _on_request(self, ticket: Ticket) -> None:
        self._waiting.add(ticket)
        self._scheduler.on_request(ticket)
        position = self._scheduler.queue_position(ticket)
        if position is not None:
            log.info("%s: queued at position %d (waiting for running models to finish)",
                     ticket.model, position)

    def _on_cancel(self, ticket: Ticket) -> None:
        self._waiting.discard(ticket)
        log.info("%s: client went away while waiting (%.2fs); request dropped",
                 ticket.model, self._clock.now() - ticket.submitted_at)
        self._scheduler.on_cancel(ticket)

    def _on_tick(self) -> None:
        self._scheduler.on_tick()

    def _on_swap_done(self, swap_id: int, error: RouteError | None) -> None:
        self._swap_runs.pop(swap_id, None)
        self._scheduler.on_swap_done(swap_id, error)

    def _on_serve_done(self, model: str) -> None:
        self._scheduler.on_serve_done(model)

    def _on_stopped(self, stop_id: int) -> None:
        reply = self._unload_replies.pop(stop_id, None)
        try:
            self._scheduler.on_stopped(stop_id)
        finally:  # the models are stopped whatever the re-walk does: the unload is answered
            if reply is not None:
                done, models = reply
                done.set(models)

    def _on_unload(self, models: list[str] | None, done: AsyncResult) -> None:
        if models is None:
            # "Everything" includes a model a swap is about to start.
            running = set(self.running_models()) | {run.model for run in self._swap_runs.values()}
            models = sorted(running)
        models = [m for m in models if m in self._processes]
        if not models:
            done.set([])
            return
        log.info("unloading %s", ", ".join(models))
        for run in self._swap_runs.values():
            if run.model in models:
                # Its swap may still be stopping other models; it must not
                # start this one afterwards (the stop below could come first).
                run.wanted = False
        stop_id = self._scheduler.on_unload(models)
        # Answered when the stop is done; its greenlet cannot report before
        # this line runs (no yield since it was spawned).
        self._unload_replies[stop_id] = (done, models)

    def _on_apply(self, processes: dict[str, Process], swapper: Swapper, limits: Mapping[str, int] | None,
                  priority: Mapping[str, int] | None, max_wait: float | None, done: AsyncResult) -> None:
        kept, restarted, removed, added, retire, unused = [], [], [], [], [], []
        for model, new in sorted(processes.items()):
            pending = model in self._replacements
            current = self._replacements[model] if pending else self._processes.get(model)
            if current is not None and current.assigned_spec.runs_as(new.assigned_spec):
                kept.append(model)
                unused.append(new)
            elif model in self._processes:
                restarted.append(model)
                if current is not None and pending:
                    unused.append(current)  # an earlier reload's replacement, never started
                self._replacements[model] = new
                if not pending:
                    retire.append(model)
            else:
                added.append(model)
                self._processes[model] = new
        for model in sorted(set(self._processes) - set(processes)):
            if model in self._replacements and self._replacements[model] is None:
                continue  # an earlier reload removed it already
            removed.append(model)
            replacement = self._replacements.get(model)
            if replacement is not None:
                unused.append(replacement)
            elif model not in self._replacements:
                retire.append(model)
            self._replacements[model] = None
        self._scheduler.reconfigure(swapper, limits=limits, priority=priority, max_wait=max_wait)
        if max_wait is not None:
            self._max_wait = max_wait
        if retire:
            log.info("reload: %s finish their requests, then stop", ", ".join(retire))
        self._scheduler.on_retire(retire)
        for process in unused:
            gevent.spawn(process.shutdown)  # never started: ends its owner at once
        done.set(Applied(tuple(kept), tuple(restarted), tuple(removed), tuple(added)))

    def _on_retired(self, stop_id: int, model: str) -> None:
        self._processes.pop(model, None)
        replacement = self._replacements.pop(model, None)
        if replacement is not None:
            self._processes[model] = replacement
            log.info("%s: the old process is stopped; the new config's takes its requests", model)
        else:
            log.info("%s: removed by the reload, stopped", model)
        self._scheduler.on_stopped(stop_id)

    def _on_drain(self) -> None:
        # Only from here: a request submitted before drain() may still be behind an earlier event in
        # the mailbox, where the scheduler cannot count it yet.
        self._drain_seen = True
        occupied = self._scheduler.occupancy()
        if occupied:
            log.info("draining: waiting for %s", ", ".join(
                f"{model} ({o.in_flight} in flight, {o.waiting} waiting)"
                for model, o in sorted(occupied.items())))

    def _on_shutdown(self, done: AsyncResult) -> bool:
        processes = list(self._processes.values())
        processes += [p for p in self._replacements.values() if p is not None]
        unloads, self._unload_replies = list(self._unload_replies.values()), {}

        def stop_all() -> None:
            gevent.joinall([gevent.spawn(p.shutdown) for p in processes])
            for unload_done, models in unloads:  # their "stopped" would reach a loop that has ended
                unload_done.set(models)
            if not done.ready():
                done.set(None)

        try:
            for timer in self._timers.values():  # nobody reads the mailbox after this
                timer.cancel()
            self._scheduler.on_shutdown(ShuttingDown("server is shutting down"))
        finally:  # even after a bug above, every upstream is stopped (a reload needs their ports)
            self._waiting.clear()
            gevent.spawn(stop_all)
        return False

    # ------------------------------------------------------------------ Effects
    def running_models(self) -> dict[str, ProcessState]:
        return {m: p.state for m, p in self._processes.items()
                if p.state not in (ProcessState.STOPPED, ProcessState.SHUTDOWN)}

    def start_swap(self, swap_id: int, model: str, evict: frozenset[str], cause: Request) -> None:
        run = self._swap_runs[swap_id] = _SwapRun(swap_id, model)
        origin = cause.origin() if isinstance(cause, Ticket) and cause.origin is not None else None
        self._publish(SwapBegan(swap_id, model, evict, self._clock.now(), origin))
        gevent.spawn(self._swap, run, evict)

    def grant_serve(self, req: Request, model: str) -> bool:
        ticket: Ticket = req  # type: ignore[assignment]
        self._waiting.discard(ticket)
        process = self._processes[model]
        now = self._clock.now()
        lease = Lease(model, process.spec.proxy_url, lambda: self._served(model),
                      queued=now - ticket.submitted_at,
                      loading=_overlap(process.last_start, ticket.submitted_at, now))
        return ticket.grant(lease)

    def _served(self, model: str) -> None:
        if not self._closed:  # after shutdown nobody reads the mailbox: nothing to count
            self._post_or_handle(("serve_done", model))

    def grant_error(self, req: Request, error: RouteError) -> None:
        ticket: Ticket = req  # type: ignore[assignment]
        self._waiting.discard(ticket)
        ticket.fail(error)

    def stop_processes(self, stop_id: int, models: Sequence[str]) -> None:
        targets = [(m, self._processes[m]) for m in models]

        def stop_all() -> None:
            jobs = [(m, gevent.spawn(p.stop)) for m, p in targets]
            gevent.joinall([job for _, job in jobs])
            for model, job in jobs:
                if job.exception is not None:
                    log.warning("%s: stop failed: %s", model, job.exception)
            self._post(("stopped", stop_id))

        gevent.spawn(stop_all)

    def retire_process(self, stop_id: int, model: str) -> None:
        process = self._processes[model]

        def retire() -> None:
            try:
                process.shutdown()
            except Exception as exc:
                log.warning("%s: stopping the old process failed: %s", model, exc)
            self._post(("retired", stop_id, model))

        gevent.spawn(retire)

    def model_busy(self, model: str, busy: bool) -> None:
        self._processes[model].set_busy(busy)

    def wake_after(self, delay: float) -> None:
        # A tick that lands a little early (gevent's loop clock lags) is
        # harmless: the scheduler finds nobody overdue yet and asks again.
        key = object()

        def fire() -> None:
            self._timers.pop(key, None)
            self._post(("tick",))

        self._timers[key] = self._clock.call_later(delay, fire)

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
    def _swap(self, run: _SwapRun, evict: frozenset[str]) -> None:
        model = run.model
        began = self._clock.now()
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
        took = self._clock.now() - began
        if error is None:
            log.info("%s: swap done in %.2fs", model, took)
        else:
            log.warning("%s: swap failed after %.2fs: %s", model, took, error.message)
        self._publish(SwapEnded(run.swap_id, model, None if error is None else error.message, took,
                                self._clock.now()))
        self._post(("swap_done", run.swap_id, error))


def _overlap(start: tuple[float, float | None] | None, since: float, until: float) -> float:
    """How much of [since, until] the process spent starting (its last start: began, ready)."""
    if start is None:
        return 0.0
    began, ready = start
    end = until if ready is None else min(ready, until)
    return max(0.0, end - max(began, since))
