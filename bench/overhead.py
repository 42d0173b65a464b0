"""Proxy overhead: latency of a small non-streamed chat completion, through the proxy vs direct.

Both paths hit the *same* upstream process (the one the proxy started, on the
port fixed in its config), so the difference is what the proxy adds: one more
HTTP hop over loopback, Flask routing, the scheduler's lease, and the copy.

* ``run_overhead``: 1 client (proxy and direct measured in alternating blocks
  so that drift in machine load hits both alike), then 32 concurrent clients
  (threads, each with its own keep-alive session). Target: at most +1.5 ms at
  p50 with 1 client.
* ``run_split_writes``: 1 client against an upstream that sends headers and
  body in two writes without TCP_NODELAY. A client on Linux delays its ACK of
  the headers, Nagle holds the body until that ACK: ~40 ms per response.
  Target: the proxy no slower than direct (within noise); ideally far faster,
  as fast as a direct client that sets TCP_QUICKACK (no stall at all), which
  is measured alongside as the reference.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

from bench.harness import (CHAT_PATH, BenchResult, Check, added, chat_body, latency_summary_ms, new_session,
                           running_server, say, timed_post, format_table)

TARGET_ADDED_P50_MS = 1.5
SPLIT_NOISE_MS = 0.5  # "not worse than direct" within this much (both sit on the same ~40 ms timer)


@dataclass(frozen=True)
class OverheadScale:
    single: int  # timed requests per path, 1 client
    block: int  # requests per alternating block
    warmup: int
    clients: int
    per_client: int
    split: int  # timed requests per path against the split-writes upstream


FULL = OverheadScale(single=2000, block=250, warmup=200, clients=32, per_client=100, split=150)
QUICK = OverheadScale(single=200, block=50, warmup=20, clients=32, per_client=10, split=15)


# --------------------------------------------------------------------------- a stall-free client


class QuickAckConnection(HTTPConnection):
    """Sets TCP_QUICKACK before reading each response: the headers are ACKed at once, so a
    Nagle-bound upstream sends the body without waiting for the 40 ms delayed-ACK timer.
    (Linux clears the flag by itself, hence once per response.)"""

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        if self.sock is not None and hasattr(socket, "TCP_QUICKACK"):
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return super().getresponse(*args, **kwargs)


class QuickAckPool(HTTPConnectionPool):
    ConnectionCls = QuickAckConnection


class QuickAckAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {**self.poolmanager.pool_classes_by_scheme, "http": QuickAckPool}


def quickack_session() -> requests.Session:
    session = new_session()
    session.mount("http://", QuickAckAdapter())
    return session


# --------------------------------------------------------------------------- measuring


def sequential_latencies(session: requests.Session, url: str, body: bytes, count: int) -> list[float]:
    return [timed_post(session, url, body) for _ in range(count)]


def interleaved_latencies(targets: dict[str, tuple[requests.Session, str]], body: bytes, total: int, block: int,
                          warmup: int) -> dict[str, list[float]]:
    """1 client per path, sequential; blocks rotate over the paths so drift hits all alike. Seconds."""
    for session, url in targets.values():
        sequential_latencies(session, url, body, warmup)
    samples: dict[str, list[float]] = {name: [] for name in targets}
    names = list(targets)
    for i in range(max(1, total // block)):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            session, url = targets[name]
            samples[name] += sequential_latencies(session, url, body, block)
    return samples


def concurrent_latencies(url: str, body: bytes, clients: int, per_client: int) -> tuple[list[float], float]:
    """``clients`` threads, each its own session, ``per_client`` timed requests each.

    Each client first warms its keep-alive connection; all start together at a
    barrier. Returns every latency (seconds) and the wall time of the timed part.
    """
    barrier = threading.Barrier(clients + 1)
    results: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []

    def client(index: int) -> None:
        session = new_session()
        try:
            sequential_latencies(session, url, body, 3)
            barrier.wait()
            results[index] = sequential_latencies(session, url, body, per_client)
        except BaseException as exc:  # noqa: BLE001 - reported below, on the main thread
            errors.append(exc)
            barrier.abort()
        finally:
            session.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    began = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed, first: {errors[0]!r}") from errors[0]
    return [x for r in results for x in r], wall


# --------------------------------------------------------------------------- reporting


def print_side_by_side(title: str, proxy: dict[str, float], direct: dict[str, float]) -> None:
    rows = [(k, direct[k], proxy[k], proxy[k] - direct[k]) for k in ("p50", "p90", "p99", "mean", "min", "max")]
    say(f"  {title} (ms, n={proxy['n']} per path)")
    say("    " + format_table(["", "direct", "proxy", "added"], rows).replace("\n", "\n    "))


def latency_checks(label: str, proxy: dict[str, float], direct: dict[str, float],
                   p50_target: float | None) -> list[Check]:
    p50 = Check(f"{label} p50", "ms", direct["p50"], proxy["p50"], added(proxy["p50"], direct["p50"]))
    if p50_target is not None:
        p50.target = f"added <= +{p50_target:.2f} ms"
        p50.passed = proxy["p50"] - direct["p50"] <= p50_target
    p99 = Check(f"{label} p99", "ms", direct["p99"], proxy["p99"], added(proxy["p99"], direct["p99"]))
    return [p50, p99]


# --------------------------------------------------------------------------- benchmarks


def run_overhead(quick: bool = False) -> BenchResult:
    """Benchmark 1: added latency with 1 client and with 32 concurrent clients."""
    scale = QUICK if quick else FULL
    body = chat_body(max_tokens=1)
    say("[overhead] small non-streamed completion (max_tokens 1), proxy vs direct to the same upstream")
    with running_server("overhead", ["--tokens", "1"]) as server:
        server.warm()
        proxy_url, direct_url = server.base_url + CHAT_PATH, server.direct_url + CHAT_PATH
        cpu_before = server.cpu_seconds()
        with new_session() as proxy_session, new_session() as direct_session:
            one = interleaved_latencies({"proxy": (proxy_session, proxy_url), "direct": (direct_session, direct_url)},
                                        body, scale.single, scale.block, scale.warmup)
        cpu_after = server.cpu_seconds()
        p1, d1 = one["proxy"], one["direct"]
        one_p, one_d = latency_summary_ms(p1), latency_summary_ms(d1)
        print_side_by_side("1 client", one_p, one_d)
        # The server only works for proxied requests; the upstream serves both paths.
        proxied = len(p1) + scale.warmup
        server_us = (cpu_after[0] - cpu_before[0]) * 1e6 / proxied
        upstream_us = (cpu_after[1] - cpu_before[1]) * 1e6 / (proxied + len(d1) + scale.warmup)
        say(f"    CPU per request: proxy server {server_us:.0f} us, upstream {upstream_us:.0f} us")

        many_p, wall_p = concurrent_latencies(proxy_url, body, scale.clients, scale.per_client)
        many_d, wall_d = concurrent_latencies(direct_url, body, scale.clients, scale.per_client)
        conc_p, conc_d = latency_summary_ms(many_p), latency_summary_ms(many_d)
        print_side_by_side(f"{scale.clients} clients", conc_p, conc_d)
        rps_p, rps_d = len(many_p) / wall_p, len(many_d) / wall_d
        say(f"    throughput: direct {rps_d:,.0f} req/s, proxy {rps_p:,.0f} req/s")

    checks = latency_checks("overhead, 1 client,", one_p, one_d, TARGET_ADDED_P50_MS)
    checks.append(Check("proxy server CPU per request", "us", None, round(server_us), "-"))
    checks += latency_checks(f"overhead, {scale.clients} clients,", conc_p, conc_d, None)
    checks.append(Check(f"throughput, {scale.clients} clients", "req/s", round(rps_d), round(rps_p), f"{100 * rps_p / rps_d:.0f} %"))
    return BenchResult(
        name="overhead",
        params={"single_requests": scale.single, "block": scale.block, "warmup": scale.warmup,
                "clients": scale.clients, "per_client": scale.per_client, "max_tokens": 1},
        figures={"one_client": {"proxy_ms": one_p, "direct_ms": one_d, "server_cpu_us_per_request": server_us,
                                "upstream_cpu_us_per_request": upstream_us},
                 "concurrent": {"proxy_ms": conc_p, "direct_ms": conc_d, "proxy_rps": rps_p, "direct_rps": rps_d}},
        raw={"one_client_proxy_s": p1, "one_client_direct_s": d1,
             "concurrent_proxy_s": many_p, "concurrent_direct_s": many_d},
        checks=checks)


def run_split_writes(quick: bool = False) -> BenchResult:
    """Benchmark 2: 1 client against a ``--split-writes`` (Nagle + delayed ACK) upstream."""
    scale = QUICK if quick else FULL
    body = chat_body(max_tokens=1)
    say("[split-writes] 1 client; the upstream writes headers and body separately, without TCP_NODELAY")
    with running_server("split", ["--tokens", "1", "--split-writes"]) as server:
        server.warm()
        proxy_url, direct_url = server.base_url + CHAT_PATH, server.direct_url + CHAT_PATH
        block = max(1, scale.split // 3)
        with new_session() as proxy_s, new_session() as direct_s, quickack_session() as quick_s:
            runs = interleaved_latencies({"proxy": (proxy_s, proxy_url), "direct": (direct_s, direct_url),
                                          "quickack": (quick_s, direct_url)}, body, block * 3, block, warmup=5)
    sp, sd, sq = (latency_summary_ms(runs[k]) for k in ("proxy", "direct", "quickack"))
    print_side_by_side("plain requests client", sp, sd)
    print_side_by_side("vs a direct client that sets TCP_QUICKACK (no stall: the ideal)", sp, sq)
    plain = latency_checks("split-writes, 1 client,", sp, sd, None)
    plain[0].target = f"not worse: added <= +{SPLIT_NOISE_MS:.1f} ms"
    plain[0].passed = sp["p50"] - sd["p50"] <= SPLIT_NOISE_MS
    ideal = Check("split-writes p50 vs QUICKACK client", "ms", sq["p50"], sp["p50"], added(sp["p50"], sq["p50"]),
                  target=f"ideal: added <= +{TARGET_ADDED_P50_MS:.1f} ms", passed=sp["p50"] - sq["p50"] <= TARGET_ADDED_P50_MS)
    return BenchResult(name="split_writes", params={"requests": len(runs["proxy"]), "block": block, "max_tokens": 1},
                       figures={"proxy_ms": sp, "direct_ms": sd, "direct_quickack_ms": sq},
                       raw={"proxy_s": runs["proxy"], "direct_s": runs["direct"], "direct_quickack_s": runs["quickack"]},
                       checks=[*plain, ideal])
