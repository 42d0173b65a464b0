"""Swap overhead: the proxy's cold-start time to first byte minus the upstream's own start time.

* Direct: the bench spawns the upstream itself (same flags, e.g.
  ``--load-time 0.3``) and polls its ``/health`` every 1 ms until it answers
  200. Spawn to 200 is the upstream's own time to healthy, interpreter start
  included.
* Proxy: with the model unloaded (``POST /api/models/unload``, then wait
  until its port is closed), one non-streamed request goes over a raw,
  already-connected socket; the clock runs from ``sendall`` to the first
  response byte (``recv(1)``). That includes starting the process, the
  proxy's health polling, and forwarding the request.

Samples alternate direct and proxy. The difference of the p50s is what a swap
costs on top of the model's own load time. Target: at most 30 ms.
"""

from __future__ import annotations

import socket
import time

from bench.harness import (CHAT_PATH, HOST, BenchResult, Check, ProxyServer, Workdir, added, chat_body,
                           format_table, free_port, http_status, latency_summary_ms, running_server, say,
                           spawn_upstream, stop_process)

TARGET_ADDED_P50_MS = 30.0
LOAD_TIME_S = 0.3
FLAGS = ["--tokens", "1", "--load-time", str(LOAD_TIME_S)]
POLL_INTERVAL_S = 0.001
SETTLE_S = 0.1  # let the previous process finish dying before the next sample


def direct_time_to_healthy(workdir: Workdir, timeout: float = 15.0) -> float:
    """Spawn the upstream and poll /health every 1 ms; seconds from spawn to the first 200."""
    port = free_port()
    began = time.perf_counter()
    proc = spawn_upstream(port, FLAGS, workdir)
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


def run_swap(quick: bool = False) -> BenchResult:
    """Benchmark 4: p50 of cold TTFB through the proxy minus p50 of the upstream's own time to healthy."""
    repeats = 3 if quick else 15
    body = chat_body(max_tokens=1)
    say(f"[swap] cold start, upstream --load-time {LOAD_TIME_S}, {repeats} samples each, alternating")
    direct: list[float] = []
    proxy: list[float] = []
    with running_server("swap", FLAGS) as server:
        server.warm()  # first start pays one-off costs (imports, page cache) outside the samples
        direct_time_to_healthy(server.workdir)
        for i in range(repeats):
            if i % 2 == 0:
                direct.append(direct_time_to_healthy(server.workdir))
                proxy.append(proxy_cold_ttfb(server, body))
            else:
                proxy.append(proxy_cold_ttfb(server, body))
                direct.append(direct_time_to_healthy(server.workdir))
            time.sleep(SETTLE_S)
    sd, sp = latency_summary_ms(direct), latency_summary_ms(proxy)
    rows = [(k, sd[k], sp[k], sp[k] - sd[k]) for k in ("p50", "p90", "min", "max", "mean")]
    say(f"    (ms, n={repeats}; direct = spawn to /health 200, proxy = cold request to first byte)")
    say("    " + format_table(["", "direct healthy", "proxy TTFB", "added"], rows).replace("\n", "\n    "))
    check = Check("swap, cold TTFB - own start, p50", "ms", sd["p50"], sp["p50"], added(sp["p50"], sd["p50"]),
                  target=f"added <= +{TARGET_ADDED_P50_MS:.0f} ms",
                  passed=sp["p50"] - sd["p50"] <= TARGET_ADDED_P50_MS)
    return BenchResult(name="swap", params={"repeats": repeats, "load_time_s": LOAD_TIME_S,
                                            "poll_interval_s": POLL_INTERVAL_S, "flags": FLAGS},
                       figures={"direct_healthy_ms": sd, "proxy_cold_ttfb_ms": sp,
                                "added_p50_ms": sp["p50"] - sd["p50"]},
                       raw={"direct_healthy_s": direct, "proxy_cold_ttfb_s": proxy}, checks=[check])
