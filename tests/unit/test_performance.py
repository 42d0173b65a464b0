"""The performance monitor without a server: NVML through a fake pynvml, the host through a fake psutil, a hand-set clock."""

from __future__ import annotations

from collections import namedtuple
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.observe import hardware
from app.observe.hardware import HardwareUnknown, detect_hardware
from app.observe.host import HostReader, cpu_percentages
from app.observe.host_metrics import HostCollector
from app.observe.nvml import Nvml
from app.observe.perf_types import GpuStat, NetIO, SysStat
from app.observe.performance import PerformanceMonitor, ring_capacity
from app.routes.system import parse_rfc3339
from tests.helpers.fakes import wait_until

GIB = 1024 ** 3
T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- fakes


class NVMLError(Exception):
    pass


class FakePynvml:
    """pynvml's calls the monitor makes, over GPUs given as dicts; ``broken`` names calls that raise."""

    NVMLError = NVMLError

    def __init__(self, gpus: list[dict], broken: set[str] = frozenset(), init_error: Exception | None = None):
        self.gpus = gpus
        self.broken = set(broken)
        self.init_error = init_error
        self.calls: list[str] = []

    def _gpu(self, name: str, handle: int) -> dict:
        self.calls.append(name)
        if name in self.broken:
            raise NVMLError(f"{name}: Not Supported")
        return self.gpus[handle]

    def nvmlInit(self):
        self.calls.append("nvmlInit")
        if self.init_error:
            raise self.init_error

    def nvmlShutdown(self):
        self.calls.append("nvmlShutdown")

    def nvmlSystemGetDriverVersion(self):
        return "560.35.03"

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetName(self, h):
        return self._gpu("nvmlDeviceGetName", h)["name"]

    def nvmlDeviceGetUUID(self, h):
        return self._gpu("nvmlDeviceGetUUID", h)["uuid"]

    def nvmlDeviceGetTemperature(self, h, sensor):
        assert sensor == 0  # NVML_TEMPERATURE_GPU
        return self._gpu("nvmlDeviceGetTemperature", h)["temp"]

    def nvmlDeviceGetFieldValues(self, h, fields):
        assert fields == [82]  # NVML_FI_DEV_MEMORY_TEMP
        gpu = self._gpu("nvmlDeviceGetFieldValues", h)
        ok = gpu.get("vram_temp") is not None
        return [SimpleNamespace(nvmlReturn=0 if ok else 3, valueType=1,
                                value=SimpleNamespace(uiVal=gpu.get("vram_temp") or 0))]

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=self._gpu("nvmlDeviceGetUtilizationRates", h)["util"], memory=3)

    def nvmlDeviceGetMemoryInfo(self, h):
        gpu = self._gpu("nvmlDeviceGetMemoryInfo", h)
        return SimpleNamespace(used=gpu["used"], total=gpu["total"], free=gpu["total"] - gpu["used"])

    def nvmlDeviceGetFanSpeed(self, h):
        return self._gpu("nvmlDeviceGetFanSpeed", h)["fan"]

    def nvmlDeviceGetPowerUsage(self, h):
        return self._gpu("nvmlDeviceGetPowerUsage", h)["milliwatts"]

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return self._gpu("nvmlDeviceGetEnforcedPowerLimit", h)["limit_mw"]

    def nvmlDeviceGetArchitecture(self, h):
        return self._gpu("nvmlDeviceGetArchitecture", h)["arch"]


def h200(**overrides) -> dict:
    gpu = {"name": b"NVIDIA H200", "uuid": "GPU-1234", "temp": 65, "vram_temp": 80, "util": 97,
           "used": 8 * GIB, "total": 24 * GIB, "fan": 40, "milliwatts": 250_500, "limit_mw": 700_000, "arch": 9}
    return {**gpu, **overrides}


def started(fake: FakePynvml) -> Nvml:
    nvml = Nvml(load=lambda: fake)
    nvml.start()
    return nvml


class FakeHost:
    """A HostReader stand-in: a fixed reading at whatever time the monitor asks; ``fail`` raises once."""

    def __init__(self, fail: int = 0):
        self.fail = fail

    def read(self, now: datetime) -> SysStat:
        if self.fail:
            self.fail -= 1
            raise OSError("/proc went away")
        return sys_stat(now)


def sys_stat(when: datetime) -> SysStat:
    return SysStat(timestamp=when, cpu_util_per_core=(12.5, 50.0), mem_total_mb=32000, mem_used_mb=8000,
                   mem_free_mb=20000, swap_total_mb=2048, swap_used_mb=0, load_avg_1=0.5, load_avg_5=0.25,
                   load_avg_15=0.125, net_io=(NetIO("eth0", 1000, 2000),))


class Clock:
    def __init__(self, start: datetime = T0):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def monitor_for(fake: FakePynvml, every: float = 5, clock: Clock | None = None, host=None) -> PerformanceMonitor:
    return PerformanceMonitor(every, started(fake), host=host or FakeHost(), now=clock or Clock(),
                              offload=lambda work: work())


# --------------------------------------------------------------------------- NVML


def test_a_gpu_reading_maps_nvml_units_to_llama_swaps_fields():
    nvml = started(FakePynvml([h200(), h200(name="NVIDIA L4", uuid="GPU-5678", vram_temp=None, fan=0)]))
    first, second = nvml.read(T0)
    assert first == GpuStat(timestamp=T0, id=0, name="NVIDIA H200", uuid="GPU-1234", temp_c=65, vram_temp_c=80,
                            gpu_util_pct=97.0, mem_util_pct=33.33, mem_used_mb=8192, mem_total_mb=24576,
                            fan_speed_pct=40.0, power_draw_w=250.5)
    assert (second.id, second.name, second.uuid, second.vram_temp_c) == (1, "NVIDIA L4", "GPU-5678", 0)
    assert first.to_json() == {
        "timestamp": "2026-05-01T12:00:00.000000Z", "id": 0, "name": "NVIDIA H200", "uuid": "GPU-1234",
        "temp_c": 65, "vram_temp_c": 80, "gpu_util_pct": 97.0, "mem_util_pct": 33.33, "mem_used_mb": 8192,
        "mem_total_mb": 24576, "fan_speed_pct": 40.0, "power_draw_w": 250.5}


def test_a_failing_nvml_call_zeroes_its_field_and_keeps_the_rest():
    fake = FakePynvml([h200()], broken={"nvmlDeviceGetFanSpeed", "nvmlDeviceGetMemoryInfo"})
    (gpu,) = started(fake).read(T0)
    assert (gpu.fan_speed_pct, gpu.mem_used_mb, gpu.mem_total_mb, gpu.mem_util_pct) == (0, 0, 0, 0)
    assert (gpu.temp_c, gpu.gpu_util_pct, gpu.power_draw_w, gpu.name) == (65, 97.0, 250.5, "NVIDIA H200")


@pytest.mark.parametrize("load", [
    pytest.param(lambda: (_ for _ in ()).throw(ImportError("No module named 'pynvml'")), id="no bindings"),
    pytest.param(lambda: FakePynvml([h200()], init_error=NVMLError("NVML Shared Library Not Found")),
                 id="no driver"),
])
def test_without_nvml_there_are_no_gpus(load):
    nvml = Nvml(load=load)
    assert nvml.start() is False and not nvml.available
    assert nvml.read(T0) == () and nvml.describe() == []
    nvml.close()


def test_nvml_is_initialised_once_and_shut_down_once():
    fake = FakePynvml([h200()])
    nvml = Nvml(load=lambda: fake)
    assert nvml.start() and nvml.start()
    nvml.read(T0)
    nvml.close()
    nvml.close()
    assert fake.calls.count("nvmlInit") == 1 and fake.calls.count("nvmlShutdown") == 1
    assert nvml.read(T0) == ()  # closed: no call reaches a library that was shut down


def test_the_real_pynvml_on_a_machine_without_a_driver_gives_no_gpus():
    nvml = Nvml()
    if nvml.start():
        nvml.close()
        pytest.skip("this machine has an NVIDIA driver")
    assert nvml.read(T0) == ()


# --------------------------------------------------------------------------- the monitor


def test_after_keeps_only_readings_stamped_strictly_later():
    clock = Clock()
    monitor = monitor_for(FakePynvml([h200(), h200(uuid="GPU-2")]), clock=clock)
    for _ in range(3):
        monitor.sample()
        clock.advance(5)
    sys_stats, gpu_stats = monitor.history(T0 + timedelta(seconds=5))
    assert [s.timestamp for s in sys_stats] == [T0 + timedelta(seconds=10)]
    assert [(g.timestamp, g.id) for g in gpu_stats] == [(T0 + timedelta(seconds=10), 0),
                                                        (T0 + timedelta(seconds=10), 1)]
    all_sys, all_gpu = monitor.history()
    assert len(all_sys) == 3 and len(all_gpu) == 6
    assert monitor.history(T0 + timedelta(seconds=10)) == ([], [])


def test_the_rings_hold_one_hour_of_samples():
    assert ring_capacity(5) == 720 and ring_capacity(7) == 514
    clock = Clock()
    monitor = monitor_for(FakePynvml([h200()]), every=600, clock=clock)
    for _ in range(8):
        monitor.sample()
        clock.advance(600)
    sys_stats, gpu_stats = monitor.history()
    assert len(sys_stats) == 6 and len(gpu_stats) == 6
    assert sys_stats[0].timestamp == T0 + timedelta(seconds=2 * 600)  # the two oldest are gone


def test_without_gpus_the_gpu_ring_stays_empty():
    monitor = monitor_for(FakePynvml([], init_error=NVMLError("no driver")))
    monitor.sample()
    assert len(monitor.history()[0]) == 1 and monitor.history()[1] == []


def test_the_sampler_takes_its_first_sample_at_start_and_ends_on_stop():
    monitor = monitor_for(FakePynvml([h200()]), every=3600)
    monitor.start()
    try:
        wait_until(lambda: monitor.history()[0], "the first sample")
        assert monitor.running
    finally:
        assert monitor.stop() is True
    assert not monitor.running
    monitor.start()  # a stopped monitor stays stopped
    assert not monitor.running


def test_a_failing_tick_does_not_end_the_sampler():
    monitor = monitor_for(FakePynvml([h200()]), every=0.01, host=FakeHost(fail=2))
    monitor.start()
    try:
        wait_until(lambda: monitor.history()[0], "a sample after two failed ones")
        assert monitor.running
    finally:
        monitor.stop()


# --------------------------------------------------------------------------- the host


CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")


def cpu(user: float, idle: float, guest: float = 0.0) -> CpuTimes:
    return CpuTimes(user, 0.0, 0.0, idle, 0.0, 0.0, 0.0, 0.0, guest, 0.0)


def test_cpu_percentages_cover_the_time_since_the_previous_reading():
    before = [cpu(100, 100), cpu(0, 200)]
    after = [cpu(175, 125), cpu(0, 300)]
    assert cpu_percentages(before, after) == (75.0, 0.0)
    assert cpu_percentages(None, before) == (50.0, 0.0)  # the first reading: since boot
    assert cpu_percentages(None, [cpu(50, 50, guest=50)]) == (50.0,)  # guest time is inside user already


def test_a_host_reading_is_in_mib_without_loopback_and_survives_a_missing_swap():
    Counters = namedtuple("Counters", "bytes_recv bytes_sent")
    ps = SimpleNamespace(
        cpu_times=lambda percpu: [cpu(10, 30)],
        virtual_memory=lambda: SimpleNamespace(total=32 * GIB, used=8 * GIB + 5, free=20 * GIB),
        swap_memory=lambda: (_ for _ in ()).throw(OSError("no /proc/swaps")),
        net_io_counters=lambda pernic: {"lo": Counters(5, 5), "eth0": Counters(1000, 2000)},
    )
    stat = HostReader(ps, loadavg=lambda: (1.5, 1.0, 0.5)).read(T0)
    assert stat.to_json() == {
        "timestamp": "2026-05-01T12:00:00.000000Z", "cpu_util_per_core": [25.0],
        "mem_total_mb": 32768, "mem_used_mb": 8192, "mem_free_mb": 20480, "swap_total_mb": 0, "swap_used_mb": 0,
        "load_avg_1": 1.5, "load_avg_5": 1.0, "load_avg_15": 0.5,
        "net_io": [{"name": "eth0", "bytes_recv": 1000, "bytes_sent": 2000}]}


def test_the_real_host_reads():
    stat = HostReader().read(T0)
    assert stat.mem_total_mb > 0 and stat.cpu_util_per_core
    assert all(0 <= p <= 100 for p in stat.cpu_util_per_core)
    assert "lo" not in {n.name for n in stat.net_io}


# --------------------------------------------------------------------------- Prometheus


def scrape(monitor: PerformanceMonitor) -> dict[str, tuple[str, list]]:
    registry = CollectorRegistry()
    registry.register(HostCollector(monitor))
    text = generate_latest(registry).decode()
    return {f.name: (f.type, [(s.name, s.labels, s.value) for s in f.samples])
            for f in text_string_to_metric_families(text)}


def test_the_collector_exports_the_latest_sample_with_llama_swaps_names_and_labels():
    clock = Clock()
    monitor = monitor_for(FakePynvml([h200(), h200(name="NVIDIA L4", uuid="")]), clock=clock)
    monitor.sample()
    metrics = scrape(monitor)
    assert metrics["llamaswap_cpu_util_percent"] == ("gauge", [
        ("llamaswap_cpu_util_percent", {"core": "0"}, 12.5),
        ("llamaswap_cpu_util_percent", {"core": "1"}, 50.0)])
    for name, mib in (("memory_total", 32000), ("memory_used", 8000), ("memory_free", 20000),
                      ("swap_total", 2048), ("swap_used", 0)):
        assert metrics[f"llamaswap_{name}_bytes"] == ("gauge", [(f"llamaswap_{name}_bytes", {}, mib * 1024 ** 2)])
    assert metrics["llamaswap_load_average"] == ("gauge", [
        ("llamaswap_load_average", {"interval": "1m"}, 0.5),
        ("llamaswap_load_average", {"interval": "5m"}, 0.25),
        ("llamaswap_load_average", {"interval": "15m"}, 0.125)])
    # The text format names a counter family without "_total"; its samples keep it.
    assert metrics["llamaswap_network_bytes"] == ("counter", [
        ("llamaswap_network_bytes_total", {"interface": "eth0", "direction": "recv"}, 1000),
        ("llamaswap_network_bytes_total", {"interface": "eth0", "direction": "sent"}, 2000)])
    h200_labels = {"id": "0", "name": "NVIDIA H200", "uuid": "GPU-1234"}
    l4_labels = {"id": "1", "name": "NVIDIA L4"}  # no uuid known: no uuid label
    for name, value in (("temperature_celsius", 65), ("vram_temperature_celsius", 80), ("util_percent", 97),
                        ("memory_util_percent", 33.33), ("memory_used_bytes", 8 * GIB),
                        ("memory_total_bytes", 24 * GIB), ("fan_speed_percent", 40), ("power_draw_watts", 250.5)):
        metric = f"llamaswap_gpu_{name}"
        assert metrics[metric] == ("gauge", [(metric, h200_labels, value), (metric, l4_labels, value)])
    assert len(metrics) == 8 + 8


def test_the_collector_exports_nothing_before_the_first_sample_and_only_the_newest_after():
    clock = Clock()
    monitor = monitor_for(FakePynvml([h200()]), clock=clock)
    assert scrape(monitor) == {}
    monitor.sample()
    monitor._nvml._nvml.gpus[0]["temp"] = 70  # the next reading differs
    clock.advance(5)
    monitor.sample()
    assert scrape(monitor)["llamaswap_gpu_temperature_celsius"][1][0][2] == 70


def test_label_values_with_quotes_and_backslashes_survive_the_text_format():
    monitor = monitor_for(FakePynvml([h200(name='Quadro "RTX"\\8000')]))
    monitor.sample()
    (sample,) = scrape(monitor)["llamaswap_gpu_util_percent"][1]
    assert sample[1]["name"] == 'Quadro "RTX"\\8000'


# --------------------------------------------------------------------------- hardware and times


def test_hardware_without_an_nvidia_driver_has_no_accelerators():
    nvml = Nvml(load=lambda: FakePynvml([], init_error=NVMLError("Driver Not Loaded")))
    snapshot = detect_hardware(nvml, "1.2.3", T0)
    assert snapshot["accelerators"] == [] and snapshot["schema_version"] == 1
    assert snapshot["captured_at"] == "2026-05-01T12:00:00.000000Z"
    assert snapshot["capture"] == {"scope": "inference_host", "method": "detected",
                                   "detector": {"name": "llama-swap", "version": "1.2.3"}}
    assert snapshot["memory"]["capacity_bytes"] > 0
    assert snapshot["operating_system"]["family"] == "linux"
    assert snapshot["environment"]["kind"] in {"native", "container", "virtual_machine", "wsl", "other", "unknown"}
    assert set(snapshot["cpu"]) == {"vendor", "model", "socket_count", "physical_core_count",
                                    "logical_thread_count"}


def test_hardware_describes_each_nvidia_gpu():
    nvml = started(FakePynvml([h200()]))
    (gpu,) = detect_hardware(nvml, "1.2.3", T0)["accelerators"]
    assert gpu == {"index": 0, "kind": "gpu", "vendor": "NVIDIA", "model": "NVIDIA H200",
                   "architecture": "Hopper", "memory": {"kind": "dedicated", "capacity_bytes": 24 * GIB},
                   "driver": {"name": "NVIDIA", "version": "560.35.03"}, "power_limit_watts": 700.0}


def test_hardware_detection_fails_without_the_machines_memory(monkeypatch):
    monkeypatch.setattr(hardware.psutil, "virtual_memory", lambda: SimpleNamespace(total=0))
    with pytest.raises(HardwareUnknown):
        detect_hardware(started(FakePynvml([])), "1.2.3", T0)


@pytest.mark.parametrize("text, expected", [
    ("2026-05-01T12:00:00Z", T0),
    ("2026-05-01T14:00:00.000000+02:00", T0),
    ("2026-05-01T14:00:00 02:00", T0),  # an unescaped "+" arrives as a space
    ("2026-05-01t12:00:00.000000123z", T0),
])
def test_rfc3339_times_parse(text, expected):
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize("text", ["2026-05-01T12:00:00", "2026-05-01", "yesterday", "2026-13-01T12:00:00Z", ""])
def test_what_is_not_rfc3339_is_refused(text):
    with pytest.raises(ValueError):
        parse_rfc3339(text)
