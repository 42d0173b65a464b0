"""The host and GPU gauges of llama-swap's ``/metrics``, as a prometheus_client collector.

``HostCollector(monitor)`` yields, from the monitor's newest readings only,
exactly llama-swap's names, types and labels: CPU per core, memory and swap
in bytes, load averages, network counters per interface, and one family per
GPU reading labelled ``id``, ``name`` and (when known) ``uuid``, sorted by
id. Before the first sample it yields nothing. Whoever serves ``/metrics``
registers it; this module only describes the metrics.
"""

from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from app.observe.perf_types import MIB, GpuStat, SysStat
from app.observe.performance import PerformanceMonitor

# (metric, help, the value of one GPU reading)
_GPU_GAUGES: tuple[tuple[str, str, Callable[[GpuStat], float]], ...] = (
    ("llamaswap_gpu_temperature_celsius", "GPU temperature in Celsius", lambda g: g.temp_c),
    ("llamaswap_gpu_vram_temperature_celsius", "GPU VRAM temperature in Celsius", lambda g: g.vram_temp_c),
    ("llamaswap_gpu_util_percent", "GPU utilization percent (0-100)", lambda g: g.gpu_util_pct),
    ("llamaswap_gpu_memory_util_percent", "GPU memory utilization percent (0-100)", lambda g: g.mem_util_pct),
    ("llamaswap_gpu_memory_used_bytes", "GPU memory used in bytes", lambda g: g.mem_used_mb * MIB),
    ("llamaswap_gpu_memory_total_bytes", "GPU memory total in bytes", lambda g: g.mem_total_mb * MIB),
    ("llamaswap_gpu_fan_speed_percent", "GPU fan speed percent (0-100)", lambda g: g.fan_speed_pct),
    ("llamaswap_gpu_power_draw_watts", "GPU power draw in watts", lambda g: g.power_draw_w),
)


def sys_metrics(stat: SysStat) -> Iterator[Metric]:
    cpu = GaugeMetricFamily("llamaswap_cpu_util_percent", "CPU utilization per core (0-100)", labels=["core"])
    for core, percent in enumerate(stat.cpu_util_per_core):
        cpu.add_metric([str(core)], percent)
    yield cpu
    for name, help_text, mib in (
            ("llamaswap_memory_total_bytes", "Total memory in bytes", stat.mem_total_mb),
            ("llamaswap_memory_used_bytes", "Used memory in bytes", stat.mem_used_mb),
            ("llamaswap_memory_free_bytes", "Free memory in bytes", stat.mem_free_mb),
            ("llamaswap_swap_total_bytes", "Total swap in bytes", stat.swap_total_mb),
            ("llamaswap_swap_used_bytes", "Used swap in bytes", stat.swap_used_mb)):
        yield GaugeMetricFamily(name, help_text, value=mib * MIB)
    load = GaugeMetricFamily("llamaswap_load_average", "Load average", labels=["interval"])
    for interval, value in (("1m", stat.load_avg_1), ("5m", stat.load_avg_5), ("15m", stat.load_avg_15)):
        load.add_metric([interval], value)
    yield load
    if stat.net_io:
        network = CounterMetricFamily("llamaswap_network_bytes_total", "Total network bytes transferred",
                                      labels=["interface", "direction"])
        for io in stat.net_io:
            network.add_metric([io.name, "recv"], io.bytes_recv)
            network.add_metric([io.name, "sent"], io.bytes_sent)
        yield network


def gpu_metrics(gpus: tuple[GpuStat, ...]) -> Iterator[Metric]:
    for name, help_text, value in _GPU_GAUGES:
        family = GaugeMetricFamily(name, help_text)
        for gpu in gpus:
            # The uuid label only where the GPU has one (llama-swap's rows differ the same way).
            labels = {"id": str(gpu.id), "name": gpu.name, **({"uuid": gpu.uuid} if gpu.uuid else {})}
            family.samples.append(Sample(name, labels, float(value(gpu))))
        yield family


class HostCollector:
    """The host/GPU gauges from ``monitor``'s newest sample (nothing before the first one)."""

    def __init__(self, monitor: PerformanceMonitor):
        self._monitor = monitor

    def collect(self) -> Iterator[Metric]:
        sys_stat, gpus = self._monitor.latest()
        if sys_stat is not None:
            yield from sys_metrics(sys_stat)
        if gpus:
            yield from gpu_metrics(gpus)
