"""NVIDIA GPUs through NVML (the ``pynvml`` bindings): initialised once, read each tick, described once.

``Nvml`` owns the library's lifetime: ``start`` calls ``nvmlInit`` at most
once (a machine without the driver, or without the package, simply has no
GPUs: ``available`` is False and nothing is retried), ``close`` calls
``nvmlShutdown``. Every NVML call is made on its own: one that fails
(``NOT_SUPPORTED`` fan speed on a data-centre board, a GPU that stopped
answering) leaves its field 0 and the rest of the reading stands. A reading
takes a few NVML calls per GPU; they are usually microseconds, but a driver
in trouble can hold one for seconds, so the sampler runs ``read`` off the
hub (``app.observe.performance``).
"""

from __future__ import annotations

import importlib
import logging
from datetime import datetime
from types import ModuleType
from typing import Any, Callable, TypeVar

from app.observe.perf_types import MIB, GpuStat

log = logging.getLogger("llama-swap")

T = TypeVar("T")

# nvmlDeviceGetArchitecture's answers, by the names llama-swap's /api/hardware uses.
_ARCHITECTURES = {2: "Kepler", 3: "Maxwell", 4: "Pascal", 5: "Volta", 6: "Turing", 7: "Ampere",
                  8: "Ada Lovelace", 9: "Hopper", 10: "Blackwell", 13: "Rubin"}
_FI_DEV_MEMORY_TEMP = 82  # NVML_FI_DEV_MEMORY_TEMP, HBM boards only
_VALUE_FIELDS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


def _import_pynvml() -> ModuleType:
    return importlib.import_module("pynvml")


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class Nvml:
    """The NVML library for this process; ``load`` returns the pynvml module (a test hands a fake)."""

    def __init__(self, load: Callable[[], ModuleType | Any] = _import_pynvml):
        self._load = load
        self._nvml: Any = None
        self._started = False
        self._failed_calls: set[str] = set()  # each failing call is logged once, not every tick

    @property
    def available(self) -> bool:
        return self._nvml is not None

    def start(self) -> bool:
        """Initialise NVML once; False (and no GPUs from then on) when there is no driver or no bindings."""
        if self._started:
            return self.available
        self._started = True
        try:
            nvml = self._load()
            nvml.nvmlInit()
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, _DriverNotLoaded, ...
            log.info("no NVIDIA GPUs seen (NVML: %s)", exc or type(exc).__name__)
            return False
        self._nvml = nvml
        return True

    def close(self) -> None:
        nvml, self._nvml = self._nvml, None
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except Exception as exc:
                log.warning("NVML shutdown failed: %s", exc)

    def read(self, now: datetime) -> tuple[GpuStat, ...]:
        """One reading of every GPU, stamped ``now``; () without NVML."""
        return tuple(self._read_one(index, handle, now) for index, handle in self._handles())

    def describe(self) -> list[dict[str, Any]]:
        """The GPUs as ``/api/hardware`` accelerators (index, vendor, model, memory, driver, power limit)."""
        nvml = self._nvml
        driver = self._call("nvmlSystemGetDriverVersion", None) if nvml else None
        accelerators = []
        for index, handle in self._handles():
            memory = self._call("nvmlDeviceGetMemoryInfo", None, handle)
            limit_mw = self._call("nvmlDeviceGetEnforcedPowerLimit", 0, handle)
            name = self._call("nvmlDeviceGetName", "", handle)
            accelerators.append({
                "index": index, "kind": "gpu", "vendor": "NVIDIA", "model": _text(name) or None,
                "architecture": _ARCHITECTURES.get(self._call("nvmlDeviceGetArchitecture", -1, handle)),
                "memory": {"kind": "dedicated", "capacity_bytes": memory.total if memory and memory.total else None},
                "driver": {"name": "NVIDIA", "version": _text(driver)} if driver else None,
                "power_limit_watts": limit_mw / 1000 if limit_mw else None,
            })
        return accelerators

    def _handles(self) -> list[tuple[int, Any]]:
        if self._nvml is None:
            return []
        handles = []
        for index in range(self._call("nvmlDeviceGetCount", 0)):
            handle = self._call("nvmlDeviceGetHandleByIndex", None, index)
            if handle is not None:
                handles.append((index, handle))
        return handles

    def _read_one(self, index: int, handle: Any, now: datetime) -> GpuStat:
        memory = self._call("nvmlDeviceGetMemoryInfo", None, handle)
        used_mb, total_mb = (memory.used // MIB, memory.total // MIB) if memory is not None else (0, 0)
        utilization = self._call("nvmlDeviceGetUtilizationRates", None, handle)
        return GpuStat(
            timestamp=now, id=index,
            name=_text(self._call("nvmlDeviceGetName", "", handle)),
            uuid=_text(self._call("nvmlDeviceGetUUID", "", handle)),
            temp_c=int(self._call("nvmlDeviceGetTemperature", 0, handle, 0)),  # NVML_TEMPERATURE_GPU
            vram_temp_c=self._memory_temperature(handle),
            gpu_util_pct=float(utilization.gpu) if utilization is not None else 0.0,
            mem_util_pct=round(100.0 * memory.used / memory.total, 2) if memory is not None and memory.total else 0.0,
            mem_used_mb=used_mb, mem_total_mb=total_mb,
            fan_speed_pct=float(self._call("nvmlDeviceGetFanSpeed", 0, handle)),
            power_draw_w=self._call("nvmlDeviceGetPowerUsage", 0, handle) / 1000.0,  # milliwatts
        )

    def _memory_temperature(self, handle: Any) -> int:
        values = self._call("nvmlDeviceGetFieldValues", None, handle, [_FI_DEV_MEMORY_TEMP])
        if not values or values[0].nvmlReturn != 0:  # NVML_SUCCESS
            return 0
        field = _VALUE_FIELDS.get(values[0].valueType, "uiVal")
        return int(getattr(values[0].value, field))

    def _call(self, name: str, default: T, *args: Any) -> T:
        """``pynvml.<name>(*args)``, or ``default`` when that call fails (logged once per call)."""
        try:
            return getattr(self._nvml, name)(*args)
        except Exception as exc:  # NVMLError_*, or a binding too old to have the call
            if name not in self._failed_calls:
                self._failed_calls.add(name)
                log.info("NVML %s failed, reporting it as unknown: %s", name, exc or type(exc).__name__)
            return default
