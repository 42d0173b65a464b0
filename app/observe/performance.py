"""The performance monitor: a sampler greenlet and the last hour of host and GPU readings.

``PerformanceMonitor`` owns two rings of ``3600 / every`` entries: host
readings (``SysStat``) and GPU snapshots (one tuple of ``GpuStat`` per tick,
flattened when read). Only the sampler greenlet appends; readers take
``history`` / ``latest``, which copy, so a view never sees a ring change
under it (there are no locks: everything here runs on the one hub).

The first sample is taken as soon as ``start`` runs, then one every
``every`` seconds. The readings themselves run through ``offload`` (gevent's
threadpool by default): the host's take about half a millisecond (up to
several on a busy machine), NVML's usually less, but a driver in trouble can
hold a call for seconds, and neither may stall every request meanwhile. The
rings are only touched on the hub, by the sampler greenlet. A
tick that fails is logged and the next one comes as usual. The monitor is
built once per app and outlives config reloads; ``stop`` ends the sampler.
NVML itself belongs to whoever built the ``Nvml`` (the app's ``Observatory``,
which the hardware snapshot shares).
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import datetime, timezone
from typing import Callable, TypeVar

import gevent
from gevent.event import Event

from app.observe.host import HostReader
from app.observe.nvml import Nvml
from app.observe.perf_types import GpuStat, SysStat
from app.offload import in_threadpool

log = logging.getLogger("llama-swap")

T = TypeVar("T")
HISTORY_SECONDS = 3600
STOP_TIMEOUT = 5.0  # a GPU read stuck in the driver is abandoned after this long


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def ring_capacity(every: float) -> int:
    return max(1, int(HISTORY_SECONDS // every))


class PerformanceMonitor:
    """Samples every ``every`` seconds into rings of one hour; ``start`` / ``stop`` the sampler."""

    def __init__(self, every: float, nvml: Nvml, *, host: HostReader | None = None,
                 now: Callable[[], datetime] = utc_now,
                 offload: Callable[[Callable[[], T]], T] = in_threadpool):
        self.every = every
        self._host = host or HostReader()
        self._nvml = nvml
        self._now = now
        self._offload = offload
        self._sys: deque[SysStat] = deque(maxlen=ring_capacity(every))
        self._gpu: deque[tuple[GpuStat, ...]] = deque(maxlen=ring_capacity(every))
        self._stopping = Event()
        self._sampler: gevent.Greenlet | None = None

    def start(self) -> None:
        """Take the first sample now and then one every ``every`` seconds, in a greenlet; idempotent."""
        if self._sampler is None and not self._stopping.is_set():
            self._sampler = gevent.spawn(self._run)

    def stop(self) -> bool:
        """End the sampler, waiting for a tick in progress up to a bound; False if a GPU read is still stuck."""
        self._stopping.set()
        sampler, self._sampler = self._sampler, None
        if sampler is None:
            return True
        sampler.join(STOP_TIMEOUT)
        if not sampler.dead:
            log.warning("performance sampler still reading after %gs; leaving it", STOP_TIMEOUT)
            sampler.kill(block=False)
            return False
        return True

    @property
    def running(self) -> bool:
        return self._sampler is not None and not self._sampler.dead

    def sample(self) -> None:
        """Take one host and one GPU reading into the rings (the sampler's tick; tests call it directly)."""
        now = self._now()
        sys_stat, gpus = self._offload(lambda: (self._host.read(now), self._nvml.read(now)))
        self._sys.append(sys_stat)
        if gpus:
            self._gpu.append(gpus)

    def history(self, after: datetime | None = None) -> tuple[list[SysStat], list[GpuStat]]:
        """Every reading held (``after``: only those stamped strictly later), GPU snapshots flattened."""
        sys_stats = [s for s in self._sys if after is None or s.timestamp > after]
        gpu_stats = [g for snapshot in self._gpu for g in snapshot if after is None or g.timestamp > after]
        return sys_stats, gpu_stats

    def latest(self) -> tuple[SysStat | None, tuple[GpuStat, ...]]:
        """The newest host reading and the newest GPU snapshot (sorted by GPU id), for ``/metrics``."""
        sys_stat = self._sys[-1] if self._sys else None
        gpus = tuple(sorted(self._gpu[-1], key=lambda g: g.id)) if self._gpu else ()
        return sys_stat, gpus

    def _run(self) -> None:
        self._offload(self._nvml.start)  # nvmlInit can take seconds on a host without persistence mode
        while not self._stopping.is_set():
            try:
                self.sample()
            except Exception:
                log.exception("performance sample failed; the next one comes in %gs", self.every)
            self._stopping.wait(self.every)
