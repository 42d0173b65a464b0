"""The FIFO scheduler: a pure state machine deciding what each request waits for.

It owns the queue, the in-flight swaps and their waiters, the stops that
unloads asked for, and two per-model counters: requests in flight (granted,
not yet served; the one count of them, told to the world as a model turning
busy or idle) and requests waiting (joined to a swap or queued). It performs
no I/O, spawns nothing, never blocks and reads the time only through the
injected ``now``; everything it does to the world goes through ``Effects``,
and slow work (a swap, a stop) is only asked for there: its outcome comes back
later as ``on_swap_done`` / ``on_stopped``, tagged with the id the scheduler
gave it, so a late answer never settles newer work. The router calls the
``on_*`` methods one at a time from its single loop, so no locks.

The starvation bound (``max_wait``, ours; llama-swap issue #612). Without it
the fast path lets a model with steady traffic keep a queued request for
another model waiting forever: the busy model is never idle, so the swap that
must evict it never starts. With ``max_wait > 0``, a queued request that has
waited ``max_wait`` seconds or more is *overdue*, and an overdue request holds
back everything decided after it that would stand in its way:

- no new request is granted to, or joins a swap of, a model it must evict;
- no new swap starts that it would collide with (a swap that would evict its
  target, load a model it would then have to evict, or evict the same models).

So the models in its way only drain (their in-flight requests finish, their
swaps in flight complete) and on the next re-walk it goes. Overdue requests
are re-walked first, longest-waiting first, each bound only by those that
waited longer, so priority orders requests below the bound and never
overrides it. Requests already joined to a swap when the bound struck are
still granted when that swap completes: they have waited for it already.
Every decision reads the clock, and time passing alone never frees a request
(it only adds holds), so the bound needs no timer to be correct. The
scheduler still asks for a wake-up (``Effects.wake_after``) at the moment the
next queued request turns overdue: ``on_tick`` re-walks and the hold is
reported (``Effects.report_hold``, once per request) when it begins, not at
whatever event comes next. ``max_wait == 0`` is llama-swap's unbounded
behaviour exactly: no holds, no wake-ups.

Invariants:
- Every request handed to ``on_request`` leaves exactly once: granted (its
  ``on_serve_done`` follows later), errored, or cancelled.
- ``waiting[m]`` is the number of requests for ``m`` in the queue or among swap
  waiters; ``in_flight[m]`` counts only grants the caller actually took. Both
  drop back to zero (and their keys disappear) once everything is served.
- A swap is recorded as active before it is started, so requests arriving
  meanwhile join it instead of starting another. A swap's result settles
  only the swap of that id: one dropped by an unload and overtaken by a newer
  swap of the same target is ignored when it reports.
- A model an unload is stopping is neither granted nor swapped in, and no
  swap that would evict it starts, until its stop is reported
  (``on_stopped``): requests for it queue meanwhile.
- The queue is sorted by model priority, highest first, arrival order within
  a priority; a re-walk keeps the relative order of what stays queued.
- While a request is overdue and queued, nothing decided for a request that
  arrived after it puts anything in its way. The longest-waiting overdue
  request is bound by nothing decided since it turned overdue, so it waits at
  most ``max_wait``, plus the swaps then in flight and the drain of their
  waiters, plus the drain of the models it evicts, plus its own load.
- After every event the queue is settled: a re-walk at the same moment would
  place nothing (so an ignored late ``on_swap_done`` and the cancel of an
  overdue request re-walk too: either may have freed someone).
- A model a config reload retires (``on_retire``: its spec changed, or it was
  removed) takes no new request from then on: those queue. Once nothing is
  in flight for it, no swap is loading or evicting it and no stop is under
  way, it is stopped for good (``Effects.retire_process``); when that is
  reported (``on_stopped``) the queued requests go on to whatever now has its
  name (the new process, or nothing: not found). Nothing is failed for it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from scheduler.errors import ConcurrencyLimited, ModelNotFound, RouteError, Unloaded
from scheduler.state import ProcessState
from scheduler.swappers import Swapper

DEFAULT_CONCURRENCY_LIMIT = 10


@dataclass(eq=False)
class Request:
    """One request awaiting a decision. Compared by identity; the router may
    subclass it to carry its reply slot. The scheduler reads only ``model``."""

    model: str


class Effects(Protocol):
    """The scheduler's whole window onto the world, implemented by the router."""

    def model_state(self, model: str) -> ProcessState | None:
        """The model's process state, or None when this router has no such model."""
        ...

    def running_models(self) -> Mapping[str, ProcessState]:
        """Every process that is neither stopped nor shut down."""
        ...

    def start_swap(self, swap_id: int, model: str, evict: frozenset[str], cause: Request) -> None:
        """Fire and forget (``cause``: the request it is for); the outcome arrives later as ``on_swap_done(swap_id, error)``."""
        ...

    def grant_serve(self, req: Request, model: str) -> bool:
        """Hand ``req`` to ``model``; False when the caller had already gone."""
        ...

    def grant_error(self, req: Request, error: RouteError) -> None: ...

    def stop_processes(self, stop_id: int, models: Sequence[str]) -> None:
        """Fire and forget; ``on_stopped(stop_id)`` follows once every one of ``models`` is stopped."""
        ...

    def model_busy(self, model: str, busy: bool) -> None:
        """``model``'s in-flight count just left zero (True) or returned to it (False)."""
        ...

    def wake_after(self, delay: float) -> None:
        """Call ``on_tick`` once, ``delay`` seconds (of the scheduler's clock) from now."""
        ...

    def retire_process(self, stop_id: int, model: str) -> None:
        """Fire and forget: stop ``model``'s process for good; ``on_stopped(stop_id)`` follows, by which
        time ``model`` names its replacement (or nothing)."""
        ...

    def report_hold(self, req: Request, waited: float, held: frozenset[str]) -> None:
        """``req`` just turned overdue: new requests for ``held`` queue behind it.

        Called once per overdue request, when the scheduler first sees it; the
        place to log. ``held`` may be empty when only swaps in flight stand in
        its way.
        """
        ...


@dataclass(frozen=True)
class Occupancy:
    """One model's requests at a moment: granted and not yet done, and still waiting for a grant."""

    in_flight: int
    waiting: int  # queued, or joined to a swap that is loading the model
    queued: int  # of those waiting, the ones in the FIFO queue (behind busy models)


@dataclass(eq=False)
class _Swap:
    id: int
    target: str
    evict: frozenset[str]
    waiters: list[Request] = field(default_factory=list)


@dataclass(eq=False)
class _Queued:
    """A queued request and when it arrived; ``reported``: its hold was announced."""

    req: Request
    since: float
    reported: bool = False


class FifoScheduler:
    def __init__(
        self,
        swapper: Swapper,
        effects: Effects,
        *,
        limits: Mapping[str, int] | None = None,
        default_limit: int = DEFAULT_CONCURRENCY_LIMIT,
        priority: Mapping[str, int] | None = None,
        max_wait: float = 0.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if default_limit <= 0:
            raise ValueError(f"default_limit must be positive, got {default_limit}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait}")
        self._swapper = swapper
        self._effects = effects
        self._limits = dict(limits or {})
        self._default_limit = default_limit
        self._priority = dict(priority or {})
        self._max_wait = max_wait  # seconds; 0 = unbounded (llama-swap)
        self._now = now
        self._ids = itertools.count(1)  # swap and stop ids
        self._active: dict[str, _Swap] = {}
        # Swaps an unload dropped that still run, by id -> what they are stopping, until they report.
        self._dropped: dict[int, frozenset[str]] = {}
        self._stopping: dict[int, frozenset[str]] = {}  # stop id -> the models an unload or retire is stopping
        self._retiring: set[str] = set()  # models a reload replaces, waiting for their requests to finish
        self._queue: list[_Queued] = []
        self._in_flight: dict[str, int] = {}
        self._waiting: dict[str, int] = {}
        # The deadline of the wake-up asked for and not yet delivered as on_tick.
        self._wake_deadline: float | None = None
        # Set by on_shutdown: from then on every new request is refused with it.
        self._closed: RouteError | None = None

    # ---- events -----------------------------------------------------------

    def on_request(self, req: Request) -> None:
        if self._closed is not None:
            self._effects.grant_error(req, self._closed)
            return
        # The steps are numbered as docs/ROUTING.md numbers them.
        # (1) Unknown model.
        if self._effects.model_state(req.model) is None:
            self._effects.grant_error(req, _not_found(req.model))
            return
        # (2) Over its concurrency limit, in flight or waiting.
        if not self._has_room(req.model):
            limit = self._limit(req.model)
            self._effects.grant_error(
                req, ConcurrencyLimited(f"model {req.model!r} is at its concurrency limit of {limit}")
            )
            return
        _bump(self._waiting, req.model, +1)
        if not self._try_place(req, self._overdue()):
            self._enqueue(req)
            self._arm_wakeup()

    def on_cancel(self, req: Request) -> None:
        queued = self._dequeue(req)
        if queued is not None or any(
            _remove_identical(swap.waiters, req) for swap in self._active.values()
        ):
            _bump(self._waiting, req.model, -1)
        # A swap left without waiters is not cancelled: it still completes and
        # its on_swap_done simply has nobody to grant.
        if queued is not None and self._is_overdue(queued):
            # It may have been holding others back, and no other event need
            # come along to let them go.
            self._rewalk()

    def on_swap_done(self, swap_id: int, error: RouteError | None) -> None:
        swap = next((s for s in self._active.values() if s.id == swap_id), None)
        self._dropped.pop(swap_id, None)
        if swap is None:
            # Unloaded or shut down meanwhile; its waiters were answered then
            # (and a newer swap of the same target, if any, is not this one).
            # The swap still ran (it stopped its evict set, perhaps started
            # its target), so what is queued may be able to go now.
            self._rewalk()
            return
        del self._active[swap.target]
        model = swap.target
        for waiter in swap.waiters:
            if error is None:
                self._grant(waiter, model)
            else:
                self._fail(waiter, error)
        self._rewalk()

    def on_serve_done(self, model: str) -> None:
        count = self._in_flight.get(model, 0)
        if count <= 0:
            return  # a stray report must not drive the counter negative
        _bump(self._in_flight, model, -1)
        if count == 1:
            self._effects.model_busy(model, False)
            # The model just went idle: swaps that needed to evict it may go.
            self._rewalk()

    def on_tick(self) -> None:
        """The wake-up asked for through ``wake_after`` is due."""
        self._wake_deadline = None
        self._rewalk()
        self._arm_wakeup()

    def on_unload(self, models: Sequence[str]) -> int | None:
        """Fail what waits for ``models`` and ask for them to be stopped; the stop's id (None: nothing to stop)."""
        targets = frozenset(models)
        for model in sorted(targets):
            swap = self._active.pop(model, None)
            if swap is not None:
                # The swap itself keeps running, still stopping its evict set:
                # those stay off limits until it reports (its result is ignored).
                self._dropped[swap.id] = swap.evict
                for waiter in swap.waiters:
                    self._fail(waiter, _unloaded(model))
        kept: list[_Queued] = []
        for entry in self._queue:
            if entry.req.model in targets:
                self._fail(entry.req, _unloaded(entry.req.model))
            else:
                kept.append(entry)
        self._queue = kept
        # In-flight counts are left alone: those handlers end and report
        # on_serve_done themselves once their upstream dies.
        stop_id = None
        if targets:
            stop_id = next(self._ids)
            self._stopping[stop_id] = targets
            self._effects.stop_processes(stop_id, sorted(targets))
        self._rewalk()
        return stop_id

    def on_stopped(self, stop_id: int) -> None:
        """The stop ``on_unload`` asked for is done: its models may be swapped in (or out) again."""
        if self._stopping.pop(stop_id, None) is not None:
            self._rewalk()

    def on_retire(self, models: Sequence[str]) -> None:
        """A reload replaces (or removes) ``models``: hold their new requests, retire each once it drains."""
        self._retiring.update(models)
        self._rewalk()

    def reconfigure(self, swapper: Swapper, *, limits: Mapping[str, int] | None = None,
                    priority: Mapping[str, int] | None = None, max_wait: float | None = None) -> None:
        """A reload's policy: the swapper, limits and priorities decide from the next decision on."""
        if max_wait is not None and max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait}")
        self._swapper = swapper
        self._limits = dict(limits or {})
        self._priority = dict(priority or {})
        if max_wait is not None:
            self._max_wait = max_wait
        self._queue.sort(key=lambda entry: -self._priority.get(entry.req.model, 0))  # stable: arrival order kept
        self._rewalk()
        self._arm_wakeup()

    def on_fault(self, error: RouteError) -> None:
        """The router hit a bug handling an event: answer every waiter with ``error``.

        After a bug the queue and the swap waiters may no longer be what the
        scheduler believes, and a waiter nobody answers hangs its client
        forever; so all of them get ``error`` (their clients may retry).
        Swaps keep running and report as usual; grants taken stay counted.
        """
        holders = [w for swap in self._active.values() for w in swap.waiters]
        holders += [entry.req for entry in self._queue]
        for swap in self._active.values():
            swap.waiters = []
        self._queue = []
        for req in holders:
            self._fail(req, error)
        # Nobody waits now; a request the bug caught between counting and
        # placing must not hold its slot for good.
        self._waiting = {}

    def on_shutdown(self, error: RouteError) -> None:
        self._closed = error
        self._retiring.clear()
        holders = [w for swap in self._active.values() for w in swap.waiters]
        holders += [entry.req for entry in self._queue]
        self._active.clear()
        self._queue = []
        for req in holders:
            self._fail(req, error)

    # ---- read-only views --------------------------------------------------

    def queue_position(self, req: Request) -> int | None:
        """1-based place of ``req`` in the queue; None when it is not queued."""
        for position, entry in enumerate(self._queue, start=1):
            if entry.req is req:
                return position
        return None

    def load(self, model: str) -> int:
        """Requests for ``model`` in flight or waiting (queued, or joined to a swap)."""
        return self._in_flight.get(model, 0) + self._waiting.get(model, 0)

    def occupancy(self) -> dict[str, Occupancy]:
        """Every model with a request in flight or waiting, and how many; models with none are left out."""
        queued: dict[str, int] = {}
        for entry in list(self._queue):
            queued[entry.req.model] = queued.get(entry.req.model, 0) + 1
        in_flight, waiting = dict(self._in_flight), dict(self._waiting)
        return {model: Occupancy(in_flight.get(model, 0), waiting.get(model, 0), queued.get(model, 0))
                for model in in_flight.keys() | waiting.keys() | queued.keys()}

    def snapshot(self) -> dict:
        return {
            "queued": [entry.req.model for entry in self._queue],
            "swaps": {
                target: {"evict": sorted(swap.evict), "waiters": len(swap.waiters)}
                for target, swap in self._active.items()
            },
            "stopping": sorted(sorted(models) for models in self._stops_in_progress() if models),
            "in_flight": dict(self._in_flight),
            "waiting": dict(self._waiting),
        }

    # ---- the decision tree ------------------------------------------------

    def _try_place(self, req: Request, overdue: Sequence[Request]) -> bool:
        """Take the request as far as it can go now; False means it must queue.

        ``overdue``: the queued requests that waited longer than ``max_wait``
        and longer than ``req``; nothing may be done for ``req`` that stands
        in their way. Shared by on_request and the queue re-walk; admission is
        not re-checked because a queued request already holds its slot in
        ``waiting``.
        """
        model = req.model
        state = self._effects.model_state(model)
        if state is None:
            self._fail(req, _not_found(model))
            return True
        # A reload is replacing it: wait for the new one (its old one is draining).
        if model in self._retiring:
            return False
        # (3) A swap to it is in flight: join it.
        swap = self._active.get(model)
        if swap is not None:
            if self._in_the_way(overdue, model, frozenset()):
                return False
            swap.waiters.append(req)
            return True
        running = self._running_set(exclude=model)
        evict = self._swapper.eviction_for(model, running)
        # (4) Fast path: ready, nothing to evict, nobody evicting or stopping it.
        if state is ProcessState.READY and not evict and not self._being_evicted(model):
            if self._in_the_way(overdue, model, frozenset()):
                return False
            self._grant(req, model)
            return True
        # (5) It would collide with a swap in flight or an unload's stop; (6) or
        # evict a model still serving.
        if self._collides(model, evict) or self._any_busy(evict):
            return False
        # maxWait: nothing for it that stands in an overdue request's way.
        if self._in_the_way(overdue, model, evict):
            return False
        # (7) Start a swap.
        self._start_swap(req, evict, running)
        return True

    def _running_set(self, *, exclude: str) -> frozenset[str]:
        # Swap targets count as running even before their process reports it,
        # so the swapper never contradicts a swap already in motion.
        targets = (t for t in self._active if t != exclude)
        return frozenset(self._effects.running_models()).union(targets)

    def _stops_in_progress(self) -> list[frozenset[str]]:
        """What unloads are stopping, and what swaps an unload dropped are still evicting."""
        return [*self._stopping.values(), *self._dropped.values()]

    def _being_evicted(self, model: str) -> bool:
        return any(model in swap.evict for swap in self._active.values()) or \
            any(model in stopping for stopping in self._stops_in_progress())

    def _collides(self, model: str, evict: frozenset[str]) -> bool:
        """Whether a swap to ``model`` evicting ``evict`` would fight an active swap or an unload's stop."""
        for target, swap in self._active.items():
            if target == model:
                continue
            if target in evict or model in swap.evict or evict & swap.evict:
                return True
        if evict & self._retiring:  # its retirement stops it: no second stop racing it
            return True
        return any(model in stopping or evict & stopping for stopping in self._stops_in_progress())

    def _any_busy(self, evict: frozenset[str]) -> bool:
        # Stopping a model mid-request would cut its callers off; wait for it to drain.
        return any(self._in_flight.get(m, 0) > 0 for m in evict)

    def _start_swap(self, req: Request, evict: frozenset[str], running: frozenset[str]) -> None:
        swap = self._active[req.model] = _Swap(next(self._ids), req.model, evict, [req])
        self._swapper.on_swap_start(req.model, running)
        self._effects.start_swap(swap.id, req.model, evict, req)

    def _rewalk(self) -> None:
        """Re-examine the queue: overdue requests first, then in queue order."""
        overdue = self._overdue()
        placed: list[Request] = []
        still_overdue: list[Request] = []
        for req in overdue:
            # Each overdue request is bound only by those that waited longer.
            if self._try_place(req, still_overdue):
                placed.append(req)
            else:
                still_overdue.append(req)
        kept: list[_Queued] = []
        for entry in self._queue:
            if _contains_identical(placed, entry.req):
                continue
            if _contains_identical(still_overdue, entry.req) or not self._try_place(entry.req, still_overdue):
                kept.append(entry)
        self._queue = kept
        self._retire_drained()

    def _retire_drained(self) -> None:
        """Stop for good each retiring model nothing uses or touches any more."""
        for model in sorted(self._retiring):
            touched = model in self._active or any(model in swap.evict for swap in self._active.values()) \
                or any(model in stopping for stopping in self._stops_in_progress())
            if touched or self._in_flight.get(model, 0) > 0:
                continue
            self._retiring.discard(model)
            stop_id = next(self._ids)
            self._stopping[stop_id] = frozenset({model})
            self._effects.retire_process(stop_id, model)

    # ---- the starvation bound ---------------------------------------------

    def _overdue(self) -> list[Request]:
        """Queued requests that have waited ``max_wait`` or more, longest first.

        Reports each one's hold the first time it is seen overdue.
        """
        if self._max_wait <= 0:
            return []
        now = self._now()
        entries = sorted((e for e in self._queue if self._is_overdue(e, now)), key=lambda e: e.since)
        for entry in entries:
            if not entry.reported:
                entry.reported = True
                held = self._needs_evicted(entry.req.model)
                self._effects.report_hold(entry.req, now - entry.since, held)
        return [entry.req for entry in entries]

    def _is_overdue(self, entry: _Queued, now: float | None = None) -> bool:
        if self._max_wait <= 0:
            return False
        return (self._now() if now is None else now) >= entry.since + self._max_wait

    def _needs_evicted(self, target: str, *, also_running: str | None = None) -> frozenset[str]:
        running = self._running_set(exclude=target)
        if also_running is not None and also_running != target:
            running = running | {also_running}
        return self._swapper.eviction_for(target, running)

    def _in_the_way(self, overdue: Sequence[Request], model: str, evict: frozenset[str]) -> bool:
        """Whether serving ``model`` (after a swap evicting ``evict``) would hold up an overdue request.

        A request for the overdue one's own model never stands in its way.
        Otherwise it would if the overdue one must then evict ``model`` (so
        ``model`` gets busier instead of draining), if ``evict`` takes its
        target away, or if both swaps would stop the same models (the second
        collides with the first and waits for it).
        """
        for held_for in overdue:
            target = held_for.model
            if target == model:
                continue
            needs = self._needs_evicted(target, also_running=model)
            if model in needs or target in evict or evict & needs:
                return True
        return False

    def _arm_wakeup(self) -> None:
        """Ask for one on_tick at the next moment a queued request turns overdue."""
        if self._max_wait <= 0:
            return
        now = self._now()
        upcoming = [e.since + self._max_wait for e in self._queue if not self._is_overdue(e, now)]
        if not upcoming:
            return
        deadline = min(upcoming)
        # One wake-up outstanding is enough: arrivals only get later, so the
        # earliest deadline stays the earliest until its tick re-arms the next.
        if self._wake_deadline is not None and self._wake_deadline <= deadline:
            return
        self._wake_deadline = deadline
        self._effects.wake_after(deadline - now)

    # ---- leaving the scheduler --------------------------------------------

    def _grant(self, req: Request, model: str) -> None:
        _bump(self._waiting, req.model, -1)
        # Only a caller that took the grant will ever report on_serve_done;
        # counting a departed one would pin the model as busy forever.
        if self._effects.grant_serve(req, model):
            _bump(self._in_flight, model, +1)
            if self._in_flight[model] == 1:
                self._effects.model_busy(model, True)

    def _fail(self, req: Request, error: RouteError) -> None:
        _bump(self._waiting, req.model, -1)
        self._effects.grant_error(req, error)

    # ---- queue and admission ----------------------------------------------

    def _enqueue(self, req: Request) -> None:
        rank = self._priority.get(req.model, 0)
        at = next(
            (i for i, e in enumerate(self._queue) if self._priority.get(e.req.model, 0) < rank),
            len(self._queue),
        )
        self._queue.insert(at, _Queued(req, self._now()))

    def _dequeue(self, req: Request) -> _Queued | None:
        for i, entry in enumerate(self._queue):
            if entry.req is req:
                return self._queue.pop(i)
        return None

    def _limit(self, model: str) -> int:
        limit = self._limits.get(model, self._default_limit)
        return limit if limit > 0 else self._default_limit

    def _has_room(self, model: str) -> bool:
        held = self._in_flight.get(model, 0) + self._waiting.get(model, 0)
        return held < self._limit(model)


def _bump(counts: dict[str, int], model: str, delta: int) -> None:
    """Add ``delta`` to a counter, dropping the key at zero so idle models vanish."""
    value = counts.get(model, 0) + delta
    if value > 0:
        counts[model] = value
    else:
        counts.pop(model, None)


def _remove_identical(items: list[Request], req: Request) -> bool:
    for i, item in enumerate(items):
        if item is req:
            del items[i]
            return True
    return False


def _contains_identical(items: Sequence[Request], req: Request) -> bool:
    return any(item is req for item in items)


def _not_found(model: str) -> ModelNotFound:
    return ModelNotFound(f"model {model!r} not found")


def _unloaded(model: str) -> Unloaded:
    return Unloaded(f"model {model!r} was unloaded while the request waited for it")
