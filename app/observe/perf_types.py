"""The performance samples: one host reading (``SysStat``) and one GPU reading (``GpuStat``), as llama-swap's JSON.

Both are frozen and carry their own timestamp (an aware UTC datetime); their
``to_json`` gives the field names and units of llama-swap's ``/api/performance``
(MiB as whole numbers, percentages 0–100, RFC 3339 timestamps). A reading a
source could not give is 0, as in llama-swap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.observe.timestamps import rfc3339

MIB = 1024 * 1024


@dataclass(frozen=True)
class NetIO:
    name: str
    bytes_recv: int
    bytes_sent: int


@dataclass(frozen=True)
class SysStat:
    timestamp: datetime
    cpu_util_per_core: tuple[float, ...]
    mem_total_mb: int
    mem_used_mb: int
    mem_free_mb: int
    swap_total_mb: int
    swap_used_mb: int
    load_avg_1: float
    load_avg_5: float
    load_avg_15: float
    net_io: tuple[NetIO, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "timestamp": rfc3339(self.timestamp),
            "cpu_util_per_core": list(self.cpu_util_per_core),
            "mem_total_mb": self.mem_total_mb, "mem_used_mb": self.mem_used_mb, "mem_free_mb": self.mem_free_mb,
            "swap_total_mb": self.swap_total_mb, "swap_used_mb": self.swap_used_mb,
            "load_avg_1": self.load_avg_1, "load_avg_5": self.load_avg_5, "load_avg_15": self.load_avg_15,
            "net_io": [{"name": n.name, "bytes_recv": n.bytes_recv, "bytes_sent": n.bytes_sent}
                       for n in self.net_io],
        }


@dataclass(frozen=True)
class GpuStat:
    timestamp: datetime
    id: int
    name: str
    uuid: str
    temp_c: int = 0
    vram_temp_c: int = 0
    gpu_util_pct: float = 0.0
    mem_util_pct: float = 0.0
    mem_used_mb: int = 0
    mem_total_mb: int = 0
    fan_speed_pct: float = 0.0
    power_draw_w: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "timestamp": rfc3339(self.timestamp), "id": self.id, "name": self.name, "uuid": self.uuid,
            "temp_c": self.temp_c, "vram_temp_c": self.vram_temp_c,
            "gpu_util_pct": self.gpu_util_pct, "mem_util_pct": self.mem_util_pct,
            "mem_used_mb": self.mem_used_mb, "mem_total_mb": self.mem_total_mb,
            "fan_speed_pct": self.fan_speed_pct, "power_draw_w": self.power_draw_w,
        }
