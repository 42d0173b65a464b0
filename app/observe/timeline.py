"""The swap timeline: the last hour of model states, swaps (with the request that caused each) and queue depth.

What a user looks at to see why a request waited: one lane per model with
its states (``ModelStateChanged``), each swap from ``SwapBegan`` to
``SwapEnded`` with the models it evicted and its ``cause`` (the origin of the
request it was started for: which request, method, path, client; or a
preload), and above them how many requests were waiting for a grant.

The router does not announce queue changes (that would cost every request
on the hot path), so the depth is sampled: every ``SAMPLE_EVERY`` seconds
and at each swap or state change, from the router's ``occupancy()``
snapshot. A point is kept only when the depth changed, so an idle server
stores nothing (it still looks, four times a second: a few microseconds).

Swaps are numbered here (``id``), not by the router, so the history's ids
stay its own. A config reload keeps the router (``Router.apply``): a swap
running through one ends as it would have, and is told so then.

Entries older than ``RETENTION`` are dropped (at most ``MAX_ENTRIES`` of
each kind are kept whatever the hour holds); a model's last dropped state
and the last dropped depth become the window's starting values
(``initial``), so a lane is drawn from its left edge. Each entry is
republished on the bus as ``TimelineChanged`` (the live feed's ``timeline``
message) in the same JSON shape ``document()`` gives ``/api/timeline``.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import gevent

from app.observe.bus import EventBus, consume
from app.observe.events import TimelineChanged
from app.observe.timestamps import rfc3339
from scheduler.events import ModelStateChanged, Origin, Publish, SwapBegan, SwapEnded

log = logging.getLogger("llama-swap.proxy")

RETENTION = 3600.0  # seconds of history
SAMPLE_EVERY = 0.25  # seconds between looks at the queue depth
MAX_ENTRIES = 20_000  # of each kind, whatever the hour holds


@dataclass
class _State:
    at: float  # unix seconds
    model: str
    state: str
    previous: str
    pid: int | None

    def to_json(self) -> dict[str, Any]:
        return {"at": rfc3339(self.at), "model": self.model, "state": self.state, "previous": self.previous,
                "pid": self.pid}


@dataclass
class _Swap:
    id: int
    model: str
    evict: tuple[str, ...]
    cause: Origin | None
    began: float
    ended: float | None = None
    seconds: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "evict": list(self.evict),
                "cause": dict(self.cause) if self.cause is not None else None,
                "began": rfc3339(self.began), "ended": rfc3339(self.ended) if self.ended is not None else None,
                "seconds": round(self.seconds, 6) if self.seconds is not None else None, "error": self.error}


@dataclass
class _Depth:
    at: float
    models: dict[str, int]  # waiting requests per model (models with none left out)

    def to_json(self) -> dict[str, Any]:
        return {"at": rfc3339(self.at), "waiting": sum(self.models.values()), "models": dict(self.models)}


Occupancies = Callable[[], Mapping[str, Any]]  # the router's ``occupancy()``: model -> counts with ``.waiting``


class SwapTimeline:
    """Owns the hour of history; ``record`` and ``sample`` feed it, ``document`` reads it."""

    def __init__(self, publish: Publish, occupancy: Occupancies | None = None, *,
                 wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 retention: float = RETENTION, max_entries: int = MAX_ENTRIES):
        self.occupancy = occupancy or (lambda: {})  # set by the runtime
        self._publish = publish
        self._wall = wall
        self._monotonic = monotonic
        self._retention = retention
        self._max_entries = max_entries
        self._states: deque[_State] = deque()
        self._swaps: deque[_Swap] = deque()
        self._open: dict[int, _Swap] = {}  # swaps begun and not ended, by the router's swap id
        self._swap_ids = itertools.count(1)
        self._depths: deque[_Depth] = deque()
        self._initial_states: dict[str, str] = {}
        self._initial_depth: dict[str, int] = {}
        self._greenlets: list[gevent.Greenlet] = []
        self._subscription = None

    # ----------------------------------------------------------------- feeding it

    def record(self, event: object) -> None:
        """Take one event (state change, swap began or ended); anything else is ignored."""
        if isinstance(event, ModelStateChanged):
            entry = _State(self._wall_of(event.at), event.model, event.state.value, event.previous.value, event.pid)
            self._states.append(entry)
            if len(self._states) > self._max_entries:
                self._forget_state()
            self._tell("state", entry.to_json())
        elif isinstance(event, SwapBegan):
            swap = _Swap(next(self._swap_ids), event.model, tuple(sorted(event.evict)), event.cause,
                         self._wall_of(event.at))
            self._swaps.append(swap)
            self._open[event.swap_id] = swap
            if len(self._swaps) > self._max_entries:
                gone = self._swaps.popleft()
                self._open = {key: open_swap for key, open_swap in self._open.items() if open_swap is not gone}
            self._tell("swap", swap.to_json())
        elif isinstance(event, SwapEnded):
            swap = self._open.pop(event.swap_id, None)
            if swap is None:  # began before the timeline was built, or pushed out by MAX_ENTRIES
                return
            self._close(swap, self._wall_of(event.at), event.seconds, event.error)
        else:
            return
        self.sample()

    def _close(self, swap: _Swap, ended: float, seconds: float, error: str | None) -> None:
        swap.ended, swap.seconds, swap.error = ended, seconds, error
        self._tell("swap", swap.to_json())

    def sample(self) -> None:
        """Look at the queue depth now; keep (and tell) a point when it changed."""
        try:
            waiting = {model: counts.waiting for model, counts in self.occupancy().items() if counts.waiting}
        except Exception:  # never let a sample end the sampler: look again next time
            log.debug("timeline: occupancy unavailable", exc_info=True)
            return
        last = self._depths[-1].models if self._depths else self._initial_depth
        if waiting != last:
            point = _Depth(self._wall(), waiting)
            self._depths.append(point)
            if len(self._depths) > self._max_entries:
                self._forget_depth()
            self._tell("queue", point.to_json())

    # ----------------------------------------------------------------- reading it

    def document(self) -> dict[str, Any]:
        """``/api/timeline``: the window, each model's state and the depth at its start, then every entry in it."""
        now = self._wall()
        since = self._prune(now)
        return {"since": rfc3339(since), "until": rfc3339(now),
                "initial": {"states": dict(sorted(self._initial_states.items())),
                            "queue": _Depth(since, self._initial_depth).to_json()},
                "states": [s.to_json() for s in self._states],
                "swaps": [s.to_json() for s in self._swaps],
                "queue": [d.to_json() for d in self._depths]}

    # ----------------------------------------------------------------- running it

    def follow(self, bus: EventBus, sample_every: float = SAMPLE_EVERY) -> None:
        """Read ``bus`` and sample the queue in background greenlets until ``close``."""
        subscription = self._subscription = bus.subscribe(kinds=(ModelStateChanged, SwapBegan, SwapEnded))

        def poll() -> None:
            while not subscription.closed:
                gevent.sleep(sample_every)
                self.sample()
                self._prune(self._wall())

        self._greenlets = [gevent.spawn(consume, subscription, self.record, "timeline"), gevent.spawn(poll)]

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        gevent.killall(self._greenlets, block=False)

    # -----------------------------------------------------------------

    def _wall_of(self, at: float) -> float:
        """A core event's moment (the monotonic clock) in unix seconds."""
        return self._wall() - (self._monotonic() - at)

    def _tell(self, kind: str, entry: dict[str, Any]) -> None:
        self._publish(TimelineChanged(kind, entry))

    def _prune(self, now: float) -> float:
        since = now - self._retention
        while self._states and self._states[0].at < since:
            self._forget_state()
        while self._swaps and self._swaps[0].ended is not None and self._swaps[0].ended < since:
            self._swaps.popleft()
        while self._depths and self._depths[0].at < since:
            self._forget_depth()
        return since

    def _forget_state(self) -> None:
        """Drop the oldest state; it is its model's state at the window's start now."""
        gone = self._states.popleft()
        self._initial_states[gone.model] = gone.state

    def _forget_depth(self) -> None:
        self._initial_depth = self._depths.popleft().models
