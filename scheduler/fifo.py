"""The FIFO scheduler: a pure state machine deciding what each request waits for.

It owns the queue, the in-flight swaps and their waiters, and two per-model
counters: requests in flight (granted, not yet served) and requests waiting
(joined to a swap or queued). It performs no I/O, spawns nothing and never
blocks except inside ``on_unload`` (whose ``stop_processes`` is synchronous by
contract); everything it does to the world goes through ``Effects``. The router
calls the ``on_*`` methods one at a time from its single loop, so no locks.

Invariants:
- Every request handed to ``on_request`` leaves exactly once: granted (its
  ``on_serve_done`` follows later), errored, or cancelled.
- ``waiting[m]`` is the number of requests for ``m`` in the queue or among swap
  waiters; ``in_flight[m]`` counts only grants the caller actually took. Both
  drop back to zero (and their keys disappear) once everything is served.
- A swap is recorded as active before it is started, so requests arriving
  meanwhile join it instead of starting another.
- The queue is sorted by model priority, highest first, arrival order within
  a priority; a re-walk keeps the relative order of what stays queued.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

    def start_swap(self, model: str, evict: frozenset[str]) -> None:
        """Fire and forget; the outcome arrives later as ``on_swap_done``."""
        ...

    def grant_serve(self, req: Request, model: str) -> bool:
        """Hand ``req`` to ``model``; False when the caller had already gone."""
        ...

    def grant_error(self, req: Request, error: RouteError) -> None: ...

    def stop_processes(self, models: Sequence[str]) -> None:
        """Stop ``models`` and return only once they are stopped."""
        ...


@dataclass(eq=False)
class _Swap:
    target: str
    evict: frozenset[str]
    waiters: list[Request] = field(default_factory=list)


class FifoScheduler:
    def __init__(
        self,
        swapper: Swapper,
        effects: Effects,
        *,
        limits: Mapping[str, int] | None = None,
        default_limit: int = DEFAULT_CONCURRENCY_LIMIT,
        priority: Mapping[str, int] | None = None,
    ) -> None:
        if default_limit <= 0:
            raise ValueError(f"default_limit must be positive, got {default_limit}")
        self._swapper = swapper
        self._effects = effects
        self._limits = dict(limits or {})
        self._default_limit = default_limit
        self._priority = dict(priority or {})
        self._active: dict[str, _Swap] = {}
        self._queue: list[Request] = []
        self._in_flight: dict[str, int] = {}
        self._waiting: dict[str, int] = {}
        # Set by on_shutdown: from then on every new request is refused with it.
        self._closed: RouteError | None = None

    # ---- events -----------------------------------------------------------

    def on_request(self, req: Request) -> None:
        if self._closed is not None:
            self._effects.grant_error(req, self._closed)
            return
        if self._effects.model_state(req.model) is None:
            self._effects.grant_error(req, _not_found(req.model))
            return
        if not self._has_room(req.model):
            limit = self._limit(req.model)
            self._effects.grant_error(
                req, ConcurrencyLimited(f"model {req.model!r} is at its concurrency limit of {limit}")
            )
            return
        _bump(self._waiting, req.model, +1)
        if not self._try_place(req):
            self._enqueue(req)

    def on_cancel(self, req: Request) -> None:
        if _remove_identical(self._queue, req) or any(
            _remove_identical(swap.waiters, req) for swap in self._active.values()
        ):
            _bump(self._waiting, req.model, -1)
        # A swap left without waiters is not cancelled: it still completes and
        # its on_swap_done simply has nobody to grant.

    def on_swap_done(self, model: str, error: RouteError | None) -> None:
        swap = self._active.pop(model, None)
        if swap is None:
            return  # unloaded or shut down meanwhile; its waiters were answered then
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
            # The model just went idle: swaps that needed to evict it may go.
            self._rewalk()

    def on_unload(self, models: Sequence[str]) -> None:
        targets = frozenset(models)
        for model in sorted(targets):
            swap = self._active.pop(model, None)
            if swap is not None:
                # The swap itself keeps running; its later on_swap_done is ignored.
                for waiter in swap.waiters:
                    self._fail(waiter, _unloaded(model))
        kept: list[Request] = []
        for req in self._queue:
            if req.model in targets:
                self._fail(req, _unloaded(req.model))
            else:
                kept.append(req)
        self._queue = kept
        # In-flight counts are left alone: those handlers end and report
        # on_serve_done themselves once their upstream dies.
        self._effects.stop_processes(list(models))
        self._rewalk()

    def on_shutdown(self, error: RouteError) -> None:
        self._closed = error
        holders = [w for swap in self._active.values() for w in swap.waiters] + self._queue
        self._active.clear()
        self._queue = []
        for req in holders:
            self._fail(req, error)

    # ---- read-only views --------------------------------------------------

    def queue_position(self, req: Request) -> int | None:
        """1-based place of ``req`` in the queue; None when it is not queued."""
        for position, queued in enumerate(self._queue, start=1):
            if queued is req:
                return position
        return None

    def snapshot(self) -> dict:
        return {
            "queued": [req.model for req in self._queue],
            "swaps": {
                target: {"evict": sorted(swap.evict), "waiters": len(swap.waiters)}
                for target, swap in self._active.items()
            },
            "in_flight": dict(self._in_flight),
            "waiting": dict(self._waiting),
        }

    # ---- the decision tree ------------------------------------------------

    def _try_place(self, req: Request) -> bool:
        """Take the request as far as it can go now; False means it must queue.

        Shared by on_request and the queue re-walk; admission is not re-checked
        because a queued request already holds its slot in ``waiting``.
        """
        model = req.model
        state = self._effects.model_state(model)
        if state is None:
            self._fail(req, _not_found(model))
            return True
        swap = self._active.get(model)
        if swap is not None:
            swap.waiters.append(req)
            return True
        running = self._running_set(exclude=model)
        evict = self._swapper.eviction_for(model, running)
        if state is ProcessState.READY and not evict and not self._being_evicted(model):
            self._grant(req, model)
            return True
        if self._collides(model, evict) or self._any_busy(evict):
            return False
        self._start_swap(req, evict, running)
        return True

    def _running_set(self, *, exclude: str) -> frozenset[str]:
        # Swap targets count as running even before their process reports it,
        # so the swapper never contradicts a swap already in motion.
        targets = (t for t in self._active if t != exclude)
        return frozenset(self._effects.running_models()).union(targets)

    def _being_evicted(self, model: str) -> bool:
        return any(model in swap.evict for swap in self._active.values())

    def _collides(self, model: str, evict: frozenset[str]) -> bool:
        """Whether a swap to ``model`` evicting ``evict`` would fight an active swap."""
        for target, swap in self._active.items():
            if target == model:
                continue
            if target in evict or model in swap.evict or evict & swap.evict:
                return True
        return False

    def _any_busy(self, evict: frozenset[str]) -> bool:
        # Stopping a model mid-request would cut its callers off; wait for it to drain.
        return any(self._in_flight.get(m, 0) > 0 for m in evict)

    def _start_swap(self, req: Request, evict: frozenset[str], running: frozenset[str]) -> None:
        self._active[req.model] = _Swap(req.model, evict, [req])
        self._swapper.on_swap_start(req.model, running)
        self._effects.start_swap(req.model, evict)

    def _rewalk(self) -> None:
        pending, self._queue = self._queue, []
        for req in pending:
            if not self._try_place(req):
                self._queue.append(req)

    # ---- leaving the scheduler --------------------------------------------

    def _grant(self, req: Request, model: str) -> None:
        _bump(self._waiting, req.model, -1)
        # Only a caller that took the grant will ever report on_serve_done;
        # counting a departed one would pin the model as busy forever.
        if self._effects.grant_serve(req, model):
            _bump(self._in_flight, model, +1)

    def _fail(self, req: Request, error: RouteError) -> None:
        _bump(self._waiting, req.model, -1)
        self._effects.grant_error(req, error)

    # ---- queue and admission ----------------------------------------------

    def _enqueue(self, req: Request) -> None:
        rank = self._priority.get(req.model, 0)
        at = next(
            (i for i, queued in enumerate(self._queue) if self._priority.get(queued.model, 0) < rank),
            len(self._queue),
        )
        self._queue.insert(at, req)

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


def _not_found(model: str) -> ModelNotFound:
    return ModelNotFound(f"model {model!r} not found")


def _unloaded(model: str) -> Unloaded:
    return Unloaded(f"model {model!r} was unloaded while the request waited for it")
