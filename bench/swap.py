"""Swap overhead: the proxy's cold-start time to first byte minus the upstream's own start time.

* Direct: the bench spawns the upstream itself (same flags, e.g.
  ``--load-time 2.5``) and polls its ``/health`` every 1 ms until it answers
  200. Spawn to 200 is the upstream's own time to healthy, interpreter start
  included.
* Proxy: with the model unloaded (``POST /api/models/unload``, then wait
  until its port is closed), one non-streamed request goes over a raw,
  already-connected socket; the clock runs from ``sendall`` to the first
  response byte (``recv(1)``). That includes starting the process, the
  proxy's health polling, and forwarding the request.

Samples alternate direct and proxy. The difference of the p50s is what a swap
costs on top of the model's own load time. It is measured at three upstream
load times, 0.5, 2.5 and 10 s (one server each, as the load time is an
upstream flag in its config), because the proxy's health polling slows down
the longer a model loads. Target, at each: at most 40 ms.
"""

from __future__ import annotations

import socket
import time
from typing import Sequence

from bench.harness import (CHAT_PATH, HOST, BenchResult, Check, ProxyServer, Workdir, added, chat_body,
                           format_table, free_port, http_status, latency_summary_ms, running_server, say,
                           spawn_upstream, stop_process)

TARGET_ADDED_P50_MS = 40.0
# (upstream --load-time in seconds, samples per path); --quick skips the 10 s one (40 s for 1 sample).
LOAD_TIMES: tuple[tuple[float, int], ...] = ((0.5, 15), (2.5, 7), (10.0, 5))
QUICK_LOAD_TIMES: tuple[tuple[float, int], ...] = ((0.5, 3), (2.5, 2))
POLL_INTERVAL_S = 0.001
SETTLE_S = 0.1  # let the previous process finish dying before the next sample


def upstream_flags(load_time: float) -> list[str]:
    return ["--tokens", "1", "--load-time", str(load_time)]


def direct_time_to_healthy(workdir: Workdir, flags: Sequence[str], timeout: float) -> float:
    """Spawn the upstream and poll /health every 1 ms; seconds from spawn to the first 200."""
    port = free_port()
    began = time.perf_counter()
    proc = spawn_upstream(port, flags, workdir)
    try:
        while True:
            if http_status(port, "/health", timeout=1.0) == 200:
                return time.perf_counter() - began
            if proc.poll() is not None:
                raise RuntimeError(f"direct upstream exited with {proc.returncode} before becoming healthy")
            if time.perf_counter() - began > timeout:
                raise TimeoutError(f"direct upstream not healthy within {timeout}s")
            time.sleep(POLL_INTERVAL_S)
    finally:
        stop_process(proc)


def raw_request(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def proxy_cold_ttfb(server: ProxyServer, body: bytes, timeout: float = 30.0) -> float:
    """Unload, then time one request from send to the first response byte; checks it was a 200."""
    server.unload()
    time.sleep(SETTLE_S)
    request = raw_request(CHAT_PATH, body)
    with socket.create_connection((HOST, server.port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        began = time.perf_counter()
        sock.sendall(request)
        first = sock.recv(1)
        ttfb = time.perf_counter() - began
        answer = first + _read_to_eof(sock)
    status_line = answer.split(b"\r\n", 1)[0]
    if b" 200 " not in status_line + b" ":
        raise RuntimeError(f"cold request answered {status_line!r}: {answer[:300]!r}\n{server.log_tail()}")
    return ttfb


def _read_to_eof(sock: socket.socket) -> bytes:
    parts = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(parts)
        parts.append(data)


def measure_load_time(load_time: float, repeats: int, body: bytes) -> tuple[list[float], list[float]]:
    """``repeats`` alternating samples at one upstream load time: (direct time to healthy, proxy cold TTFB)."""
    flags = upstream_flags(load_time)
    timeout = load_time + 15.0
    direct: list[float] = []
    proxy: list[float] = []
    with running_server("swap", flags) as server:
        server.warm(timeout=timeout + 15.0)  # first start pays one-off costs (imports, page cache) outside the samples
        direct_time_to_healthy(server.workdir, flags, timeout)
        for i in range(repeats):
            if i % 2 == 0:
                direct.append(direct_time_to_healthy(server.workdir, flags, timeout))
                proxy.append(proxy_cold_ttfb(server, body))
            else:
                proxy.append(proxy_cold_ttfb(server, body))
                direct.append(direct_time_to_healthy(server.workdir, flags, timeout))
            time.sleep(SETTLE_S)
    return direct, proxy


def run_swap(quick: bool = False) -> BenchResult:
    """Benchmark 4: p50 of cold TTFB through the proxy minus p50 of the upstream's own time to healthy,
    at each upstream load time."""
    plan = QUICK_LOAD_TIMES if quick else LOAD_TIMES
    body = chat_body(max_tokens=1)
    say("[swap] cold start at upstream --load-time " + ", ".join(f"{t:g} s ({n} samples)" for t, n in plan)
        + ", direct and proxy alternating")
    skipped = [t for t, _ in LOAD_TIMES if t not in dict(plan)]
    if skipped:
        say("    (quick: skipping load time " + ", ".join(f"{t:g} s" for t in skipped) + ")")
    figures: dict[str, dict] = {}
    raw: dict[str, dict] = {}
    checks: list[Check] = []
    for load_time, repeats in plan:
        direct, proxy = measure_load_time(load_time, repeats, body)
        sd, sp = latency_summary_ms(direct), latency_summary_ms(proxy)
        rows = [(k, sd[k], sp[k], sp[k] - sd[k]) for k in ("p50", "p90", "min", "max", "mean")]
        say(f"  load time {load_time:g} s (ms, n={repeats}; direct = spawn to /health 200,"
            " proxy = cold request to first byte)")
        say("    " + format_table(["", "direct healthy", "proxy TTFB", "added"], rows).replace("\n", "\n    "))
        checks.append(Check(f"swap, load {load_time:g} s, cold TTFB - own start, p50", "ms", sd["p50"], sp["p50"],
                            added(sp["p50"], sd["p50"]), target=f"added <= +{TARGET_ADDED_P50_MS:.0f} ms",
                            passed=sp["p50"] - sd["p50"] <= TARGET_ADDED_P50_MS))
        key = f"{load_time:g}s"
        figures[key] = {"direct_healthy_ms": sd, "proxy_cold_ttfb_ms": sp, "added_p50_ms": sp["p50"] - sd["p50"]}
        raw[key] = {"direct_healthy_s": direct, "proxy_cold_ttfb_s": proxy}
    return BenchResult(name="swap", params={"load_times": {f"{t:g}s": {"repeats": n, "flags": upstream_flags(t)}
                                                           for t, n in plan},
                                            "skipped_load_times_s": skipped,
                                            "poll_interval_s": POLL_INTERVAL_S, "settle_s": SETTLE_S},
                       figures=figures, raw=raw, checks=checks)
