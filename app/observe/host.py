"""Reading the host with psutil: one ``SysStat`` per call, and the per-core CPU times between calls.

``HostReader`` owns the previous per-core CPU times, so each reading's
utilisation covers the time since the one before (the first covers the time
since boot); nothing else in the process calls ``psutil.cpu_percent``, whose
memory is module-global. A source that fails gives 0 for its fields (swap,
load, network), as in llama-swap; only memory is required. All of it reads
``/proc`` (about half a millisecond); the sampler calls ``read`` from one
thread at a time, never two at once.
"""

from __future__ import annotations

import os
from datetime import datetime
from types import ModuleType
from typing import Any, Callable, Sequence

import psutil

from app.observe.perf_types import MIB, NetIO, SysStat

# Time that is not work: psutil.cpu_percent counts these as idle too.
_IDLE_FIELDS = ("idle", "iowait")
# Linux counts guest time inside user/nice as well; leaving it out avoids counting it twice.
_DOUBLE_COUNTED = ("guest", "guest_nice")


def _busy_and_total(times: Any) -> tuple[float, float]:
    fields = times._asdict()
    total = sum(fields.values()) - sum(fields.get(name, 0.0) for name in _DOUBLE_COUNTED)
    idle = sum(fields.get(name, 0.0) for name in _IDLE_FIELDS)
    return total - idle, total


def cpu_percentages(before: Sequence[Any] | None, after: Sequence[Any]) -> tuple[float, ...]:
    """Per-core busy percentage between two ``psutil.cpu_times(percpu=True)`` readings (``before`` None: since boot)."""
    result = []
    for index, now in enumerate(after):
        busy, total = _busy_and_total(now)
        if before is not None and index < len(before):
            busy_then, total_then = _busy_and_total(before[index])
            busy, total = busy - busy_then, total - total_then
        result.append(round(min(100.0, max(0.0, 100.0 * busy / total)), 2) if total > 0 else 0.0)
    return tuple(result)


class HostReader:
    """Takes ``SysStat`` readings; ``ps`` and ``loadavg`` are psutil and os.getloadavg unless a test fakes them."""

    def __init__(self, ps: ModuleType | Any = psutil,
                 loadavg: Callable[[], tuple[float, float, float]] = os.getloadavg):
        self._ps = ps
        self._loadavg = loadavg
        self._cpu_times: Sequence[Any] | None = None

    def read(self, now: datetime) -> SysStat:
        times = self._ps.cpu_times(percpu=True)
        cores = cpu_percentages(self._cpu_times, times)
        self._cpu_times = times
        memory = self._ps.virtual_memory()
        return SysStat(
            timestamp=now, cpu_util_per_core=cores,
            mem_total_mb=memory.total // MIB, mem_used_mb=memory.used // MIB, mem_free_mb=memory.free // MIB,
            **self._swap(), **self._load(), net_io=self._net_io())

    def _swap(self) -> dict[str, int]:
        try:
            swap = self._ps.swap_memory()
        except (OSError, RuntimeError):
            return {"swap_total_mb": 0, "swap_used_mb": 0}
        return {"swap_total_mb": swap.total // MIB, "swap_used_mb": swap.used // MIB}

    def _load(self) -> dict[str, float]:
        try:
            one, five, fifteen = self._loadavg()
        except OSError:
            one = five = fifteen = 0.0
        return {"load_avg_1": one, "load_avg_5": five, "load_avg_15": fifteen}

    def _net_io(self) -> tuple[NetIO, ...]:
        try:
            counters = self._ps.net_io_counters(pernic=True)
        except (OSError, RuntimeError):
            return ()
        return tuple(NetIO(name, c.bytes_recv, c.bytes_sent) for name, c in counters.items() if name != "lo")
