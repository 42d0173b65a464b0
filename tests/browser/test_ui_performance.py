"""The Performance and Hardware pages in a real browser, against the real server."""

from __future__ import annotations

import json
import re

import requests
from playwright.sync_api import expect

from tests.browser.conftest import TIMEOUT, config, shot
from tests.helpers.server import wait_for

SAMPLE_EVERY = 5  # s: the server's shortest performance.every, and the page's polling period


def gib(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB"


def first_sample(server) -> dict:
    """The server's first host reading (taken as it starts, in the background)."""
    return wait_for(lambda: requests.get(server.url("/api/performance"), timeout=5).json()["sys_stats"],
                    timeout=10, interval=0.1, what="the first performance sample")[0]


def shots(page, name: str) -> None:
    """A screenshot as it is, then one in the other theme at a phone's width (where nothing may overflow)."""
    shot(page, name)
    page.locator("#theme").click()
    page.set_viewport_size({"width": 390, "height": 800})
    # Only the page's own part: the header's nav is shared by every page.
    assert page.evaluate("(m => m.scrollWidth <= m.clientWidth)(document.getElementById('page'))"), \
        "the page overflows sideways"
    shot(page, f"{name}-phone-dark")


def test_the_performance_page_charts_cpu_and_memory_and_adds_each_new_sample(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    first = first_sample(server)
    page.goto(server.url("/ui/#/performance"))

    cpu = page.locator('figure[data-chart="cpu"]')
    # The average over the cores, and one thin line per core.
    expect(cpu.locator("svg path.line")).to_have_count(len(first["cpu_util_per_core"]) + 1, timeout=TIMEOUT)
    expect(cpu.locator("svg")).to_have_attribute("aria-label", re.compile(r"^CPU .*: average [\d.]+ % \(peak"))
    expect(cpu.locator(".legend")).to_contain_text(re.compile(r"average [\d.]+ %"))
    memory = page.locator('figure[data-chart="memory"]')
    expect(memory).to_contain_text(f"Memory ({gib(first['mem_total_mb'])})")
    expect(memory.locator("svg path.line")).to_have_count(1)
    expect(memory.locator(".legend")).to_contain_text(re.compile(r"used [\d.]+ [KMG]iB"))
    expect(page.locator('figure[data-chart="network"]')).to_contain_text("needs two samples")
    expect(page.locator("main")).to_contain_text("No GPU found.")

    # The next sample comes by polling ?after=<newest>: it is added once, and the network rate appears.
    expect(page.get_by_role("status").filter(has_text="samples over")).to_contain_text(
        "2 samples", timeout=3 * SAMPLE_EVERY * 1000)
    expect(page.locator('figure[data-chart="network"] svg path.line')).to_have_count(2)
    shots(page, "performance")


def test_with_the_monitor_disabled_the_link_goes_and_the_page_says_it_is_off(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path, "performance:\n  disabled: true\n"))
    page.goto(server.url("/ui/"))
    expect(page.locator('nav a[data-page="models"]')).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#nav-performance")).to_be_hidden(timeout=TIMEOUT)

    page.goto(server.url("/ui/#/performance"))  # a bookmark still opens the page
    expect(page.locator("main")).to_contain_text("The performance monitor is off", timeout=TIMEOUT)
    expect(page.locator("#nav-performance")).to_be_hidden()
    expect(page.locator("main figure")).to_have_count(0)
    shot(page, "performance-off")


def test_the_performance_page_charts_each_gpu(llama_swap, tmp_path, page):
    """This machine has no GPU: the server's answer is replaced by one from a host with one."""
    server = llama_swap(config(tmp_path))
    host = first_sample(server)

    def gpu(second: int, util: float, used: int) -> dict:
        return {"timestamp": f"2026-01-02T15:04:{second:02}Z", "id": 0, "name": "NVIDIA H200", "uuid": "GPU-1",
                "temp_c": 41 + second // 5, "vram_temp_c": 0, "gpu_util_pct": util, "mem_util_pct": used / 1434,
                "mem_used_mb": used, "mem_total_mb": 143360, "fan_speed_pct": 0, "power_draw_w": 120 + util}

    history = {"enabled": True,
               "sys_stats": [{**host, "timestamp": f"2026-01-02T15:04:{s:02}Z"} for s in (0, 5, 10)],
               "gpu_stats": [gpu(0, 0, 500), gpu(5, 80, 70000), gpu(10, 97, 71000)]}
    nothing_new = {"enabled": True, "sys_stats": [], "gpu_stats": []}
    page.route(re.compile(r".*/api/performance(\?.*)?$"), lambda route: route.fulfill(
        content_type="application/json",
        body=json.dumps(nothing_new if "after=" in route.request.url else history)))
    page.goto(server.url("/ui/#/performance"))

    card = page.locator('section.gpu[data-gpu="0"]')
    expect(card.locator("h3")).to_have_text("GPU 0 · NVIDIA H200", timeout=TIMEOUT)
    expect(card.locator("figure")).to_have_count(4)
    expect(card.locator('[data-chart="gpu0-util"] .legend')).to_contain_text("compute 97 %")
    expect(card.locator('[data-chart="gpu0-memory"]')).to_contain_text(f"Memory ({gib(143360)})")
    expect(card.locator('[data-chart="gpu0-memory"] .legend')).to_contain_text(f"used {gib(71000)}")
    expect(card.locator('[data-chart="gpu0-temperature"] .legend')).to_contain_text("GPU 43 °C")
    expect(card.locator('[data-chart="gpu0-power"] svg')).to_have_attribute(
        "aria-label", "Power, last 10 s: draw 217 W (peak 217 W)")
    expect(page.locator("main")).not_to_contain_text("No GPU found.")
    shots(page, "performance-gpu")


def test_the_hardware_page_shows_what_the_server_detected(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    hardware = requests.get(server.url("/api/hardware"), timeout=5).json()
    page.goto(server.url("/ui/#/hardware"))

    expect(page.locator('[data-card="cpu"]')).to_contain_text(hardware["cpu"]["model"] or "unknown", timeout=TIMEOUT)
    expect(page.locator('[data-card="memory"]')).to_contain_text(
        gib(hardware["memory"]["capacity_bytes"] / 1024 / 1024))
    expect(page.locator('[data-card="machine"]')).to_contain_text(hardware["architecture"]["name"])
    if not hardware["accelerators"]:
        expect(page.locator("main")).to_contain_text("No accelerator found.")
    shots(page, "hardware")


def test_the_hardware_page_lists_each_accelerator_and_says_when_detection_failed(llama_swap, tmp_path, page):
    """This machine has no GPU: the server's answer is replaced by one from a host with one, then by a 503."""
    server = llama_swap(config(tmp_path))
    hardware = requests.get(server.url("/api/hardware"), timeout=5).json()
    hardware["accelerators"] = [{
        "index": 0, "kind": "gpu", "vendor": "NVIDIA", "model": "NVIDIA H200", "architecture": "Hopper",
        "memory": {"kind": "dedicated", "capacity_bytes": 150_754_820_096},
        "driver": {"name": "nvidia", "version": "570.86.15"}, "power_limit_watts": 700.0}]
    answer = {"status": 200, "body": json.dumps(hardware)}
    page.route(re.compile(r".*/api/hardware$"),
               lambda route: route.fulfill(content_type="application/json", **answer))
    page.goto(server.url("/ui/#/hardware"))
    row = page.locator("main tbody tr")
    expect(row).to_have_count(1, timeout=TIMEOUT)
    for text in ("NVIDIA H200", "Hopper", "140.4 GiB dedicated", "nvidia 570.86.15", "700 W"):
        expect(row).to_contain_text(text)
    shot(page, "hardware-accelerator")

    answer.update(status=503, body=json.dumps({"src": "llama-swap", "error": {
        "message": "hardware detection failed", "type": "server_error", "param": None,
        "code": "service_unavailable"}}))
    page.reload()
    expect(page.get_by_role("alert")).to_have_text("Hardware detection failed when llama-swap started.",
                                                   timeout=TIMEOUT)
    shot(page, "hardware-failed")
