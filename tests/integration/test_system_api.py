"""``/api/performance``, ``/api/hardware`` and ``/api/version`` against the real server (gunicorn, one gevent worker).

``every`` is set to an hour, so the one sample these tests see is the one the
sampler takes at startup: if the first sample waited for ``every``, they
would time out.
"""

from __future__ import annotations

import subprocess
from datetime import datetime

import pytest
import requests

from tests.helpers.server import fake_cmd, wait_for
from tests.helpers.upstream import REPO_ROOT


def config_text(tmp_path, performance: str) -> str:
    return f"""
performance:
{performance}
models:
  llama:
    cmd: {fake_cmd("llama", tmp_path)}
"""


@pytest.fixture
def sampled(llama_swap, tmp_path):
    return llama_swap(config_text(tmp_path, "  every: 1h"))


def performance(server, **params) -> requests.Response:
    return requests.get(server.url("/api/performance"), params=params, timeout=5)


def first_sample(server) -> dict:
    return wait_for(lambda: (lambda body: body if body["sys_stats"] else None)(performance(server).json()),
                    timeout=10, what="the sample taken at startup")


def test_performance_answers_the_sample_taken_at_startup(sampled):
    body = first_sample(sampled)
    assert body["enabled"] is True and body["gpu_stats"] == []  # no NVIDIA driver here
    (stat,) = body["sys_stats"]
    assert set(stat) == {"timestamp", "cpu_util_per_core", "mem_total_mb", "mem_used_mb", "mem_free_mb",
                         "swap_total_mb", "swap_used_mb", "load_avg_1", "load_avg_5", "load_avg_15", "net_io"}
    assert stat["mem_total_mb"] > 0 and stat["cpu_util_per_core"]
    assert "lo" not in {io["name"] for io in stat["net_io"]}
    stamped = datetime.fromisoformat(stat["timestamp"])
    assert stamped.tzinfo is not None


def test_after_keeps_only_later_samples(sampled):
    stamp = first_sample(sampled)["sys_stats"][0]["timestamp"]
    assert performance(sampled, after=stamp).json()["sys_stats"] == []
    assert len(performance(sampled, after="2000-01-01T00:00:00Z").json()["sys_stats"]) == 1


@pytest.mark.parametrize("after", ["yesterday", "2026-05-01T12:00:00"])
def test_a_malformed_after_is_a_bad_request(sampled, after):
    response = performance(sampled, after=after)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert "RFC 3339" in response.json()["error"]["message"]


def test_performance_disabled_answers_503_enabled_false(llama_swap, tmp_path):
    server = llama_swap(config_text(tmp_path, "  disabled: true"))
    response = performance(server)
    assert response.status_code == 503 and response.json() == {"enabled": False}


def test_hardware_is_a_snapshot_of_this_machine(sampled):
    response = requests.get(sampled.url("/api/hardware"), timeout=5)
    assert response.status_code == 200
    snapshot = response.json()
    assert set(snapshot) == {"schema_version", "captured_at", "capture", "architecture", "operating_system",
                             "environment", "cpu", "memory", "accelerators"}
    assert snapshot["schema_version"] == 1 and snapshot["accelerators"] == []  # no NVIDIA driver here
    assert snapshot["memory"]["capacity_bytes"] > 0
    assert snapshot["capture"]["detector"]["name"] == "llama-swap"
    assert requests.get(sampled.url("/api/hardware"), timeout=5).json() == snapshot  # taken once


def test_version_names_the_package_and_the_commit(sampled):
    body = requests.get(sampled.url("/api/version"), timeout=5).json()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    from app.version import __version__

    assert body == {"version": __version__, "commit": head, "build_date": body["build_date"]}
    datetime.fromisoformat(body["build_date"])
