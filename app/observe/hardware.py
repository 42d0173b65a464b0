"""The hardware snapshot of ``/api/hardware``: taken once at startup from platform, psutil, /proc and NVML.

``detect_hardware`` answers llama-swap's schema (version 1): architecture,
operating system, execution environment, CPU, memory and the accelerators
NVML sees (none without an NVIDIA driver). Fields it cannot tell are null.
It raises ``HardwareUnknown`` only when the machine's memory cannot be read,
which ``/api/hardware`` answers with 503, as llama-swap does when its
detection fails.
"""

from __future__ import annotations

import os
import platform
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import psutil

from app.observe.nvml import Nvml
from app.observe.timestamps import rfc3339

SCHEMA_VERSION = 1
_ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64",
                  "armv7l": "armv7", "ppc64le": "ppc64le", "riscv64": "riscv64", "s390x": "s390x"}
_OS_FAMILIES = {"linux": "linux", "darwin": "macos", "windows": "windows", "freebsd": "freebsd"}


class HardwareUnknown(Exception):
    """Detection failed: there is no snapshot to answer with."""


def _architecture(machine: str) -> dict[str, Any]:
    name = _ARCHITECTURES.get(machine.lower(), "other")
    return {"name": name, "raw_name": None if name == machine else machine}


def _operating_system(os_release: Callable[[], dict[str, str]]) -> dict[str, Any]:
    raw = platform.system().lower()
    family = _OS_FAMILIES.get(raw, "other")
    name = version = None
    if family == "linux":
        try:
            release = os_release()
            name, version = release.get("ID"), release.get("VERSION_ID")
        except OSError:
            pass
    result = {"family": family, "name": name, "version": version, "kernel": platform.release() or None}
    if family == "other":
        result["raw_family"] = raw
    return result


def _environment(kernel: str, root: Path) -> dict[str, Any]:
    kernel = kernel.lower()
    if "microsoft" in kernel or "wsl" in kernel:
        return {"kind": "wsl", "name": "WSL", "version": None}
    if (root / ".dockerenv").exists():
        return {"kind": "container", "name": "Docker", "version": None}
    if (root / "run/.containerenv").exists():
        return {"kind": "container", "name": "podman", "version": None}
    if " hypervisor" in _read(root / "proc/cpuinfo"):  # the CPU flag a guest kernel sees
        return {"kind": "virtual_machine", "name": None, "version": None}
    return {"kind": "unknown", "name": None, "version": None}


def _cpu(root: Path) -> dict[str, Any]:
    vendor = model = None
    sockets: set[str] = set()
    for line in _read(root / "proc/cpuinfo").splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "vendor_id" and vendor is None:
            vendor = value or None
        elif key == "model name" and model is None:
            model = value or None
        elif key == "physical id":
            sockets.add(value)
    logical = psutil.cpu_count(logical=True)
    physical = psutil.cpu_count(logical=False)
    return {"vendor": vendor, "model": model, "socket_count": len(sockets) or None,
            "physical_core_count": physical if physical and (not logical or physical <= logical) else None,
            "logical_thread_count": logical or None}


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def detect_hardware(nvml: Nvml, version: str, now: datetime, *, root: Path = Path("/"),
                    os_release: Callable[[], dict[str, str]] = platform.freedesktop_os_release) -> dict[str, Any]:
    """The snapshot, as ``/api/hardware`` answers it; ``nvml`` is started here if it was not."""
    try:
        capacity = psutil.virtual_memory().total
    except (OSError, RuntimeError) as exc:
        raise HardwareUnknown(f"detecting system memory: {exc}") from exc
    if not capacity:
        raise HardwareUnknown("detecting system memory: reported zero capacity")
    nvml.start()
    operating_system = _operating_system(os_release)
    return {
        "schema_version": SCHEMA_VERSION,
        "captured_at": rfc3339(now),
        "capture": {"scope": "inference_host", "method": "detected",
                    "detector": {"name": "llama-swap", "version": version}},
        "architecture": _architecture(platform.machine() or os.uname().machine),
        "operating_system": operating_system,
        "environment": _environment(operating_system["kernel"] or "", root),
        "cpu": _cpu(root),
        "memory": {"capacity_bytes": capacity},
        "accelerators": nvml.describe(),
    }
