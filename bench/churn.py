"""Churn: three models, 300 requests in interleaved bursts; swaps and waits, collated vs arrival order.

The real server (no groups: one model at a time) gets 300 requests for
models A, B and C in bursts of 10, each burst interleaving the three models
(`A B C A B C ...` rotated per burst), 5 ms apart, bursts 150 ms apart.
Each request is measured from its send to the end of its answer ("wait").
Swaps are counted as process starts (the simulated upstream appends its pid
to a file on each start).

The baseline is what the same arrival trace costs when served strictly in
arrival order, as a scheduler without collation would: consecutive arrivals
for the same model share one load, every change of model is a swap, and a
swap waits for the previous model's requests to finish. It is computed from
the recorded arrival times with the swap and service times measured on this
run, so both columns share one harness and one machine.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import requests

from bench.harness import (CHAT_PATH, JSON_HEADERS, PYTHON, BenchResult, Check, Workdir, chat_body,
                           format_table, latency_summary_ms, median, percentile, running_server, say)

MODELS = ("A", "B", "C")
LOAD_TIME = 0.1  # seconds each upstream reports 503 before it is healthy
UPSTREAM_FLAGS = f"--load-time {LOAD_TIME} --tokens 2 --token-delay 0.01"


@dataclass(frozen=True)
class Arrival:
    model: str
    at: float  # seconds after the start of the workload


def workload(bursts: int, per_burst: int = 10, spacing: float = 0.005, gap: float = 0.15) -> list[Arrival]:
    arrivals = []
    for b in range(bursts):
        start = b * (per_burst * spacing + gap)
        for i in range(per_burst):
            arrivals.append(Arrival(MODELS[(b + i) % len(MODELS)], start + i * spacing))
    return arrivals


def churn_config(workdir: Workdir) -> str:
    lines = ["healthCheckTimeout: 15", "logLevel: warn", "models:"]
    for model in MODELS:
        lines += [f"  {model}:", f"    cmd: {PYTHON} -m simulator --port ${{PORT}} --model {model} "
                                 f"--starts-file {workdir.path}/starts-{model} {UPSTREAM_FLAGS}",
                  "    concurrencyLimit: 300"]
    return "\n".join(lines) + "\n"


def replay(base_url: str, arrivals: list[Arrival]) -> list[float]:
    """Send each request at its arrival time (own thread); the seconds each took, in arrival order."""
    waits = [0.0] * len(arrivals)
    failures: list[str] = []
    began = time.monotonic()

    def send(index: int, arrival: Arrival) -> None:
        body = chat_body(2).replace(b'"model": "bench"', f'"model": "{arrival.model}"'.encode())
        sent = time.monotonic()
        try:
            resp = requests.post(base_url + CHAT_PATH, data=body, headers=JSON_HEADERS, timeout=120)
            if resp.status_code != 200:
                failures.append(f"{arrival.model}: {resp.status_code} {resp.text[:200]}")
        except requests.RequestException as exc:
            failures.append(f"{arrival.model}: {exc}")
        waits[index] = time.monotonic() - sent

    threads = []
    for index, arrival in enumerate(arrivals):
        delay = arrival.at - (time.monotonic() - began)
        if delay > 0:
            time.sleep(delay)  # pacing of the load generator, not synchronisation
        thread = threading.Thread(target=send, args=(index, arrival), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(timeout=180)
    if failures:
        raise RuntimeError(f"{len(failures)} churn requests failed, e.g. {failures[0]}")
    return waits


def arrival_order(arrivals: list[Arrival], swap: float, service: float) -> tuple[int, list[float]]:
    """Swaps and waits when the trace is served strictly in arrival order (no collation)."""
    swaps, waits = 0, []
    loaded, run_done = None, 0.0  # model loaded, and when its last request finishes
    for arrival in arrivals:
        if arrival.model != loaded:
            swaps += 1
            loaded = arrival.model
            ready = max(run_done, arrival.at) + swap  # the previous model drains first
        finish = max(ready, arrival.at) + service
        run_done = max(run_done, finish)
        waits.append(finish - arrival.at)
    return swaps, waits


def measured_service(base_url: str, model: str, samples: int = 20) -> float:
    body = chat_body(2).replace(b'"model": "bench"', f'"model": "{model}"'.encode())
    times = []
    with requests.Session() as session:
        for _ in range(samples):
            began = time.monotonic()
            session.post(base_url + CHAT_PATH, data=body, headers=JSON_HEADERS, timeout=30).raise_for_status()
            times.append(time.monotonic() - began)
    return median(times)


def measured_swap(base_url: str, samples: int = 6) -> float:
    """Median time of a cold request alternating A and B (stop one, start the other) minus service."""
    times = []
    with requests.Session() as session:
        for i in range(samples):
            body = chat_body(2).replace(b'"model": "bench"', f'"model": "{MODELS[i % 2]}"'.encode())
            began = time.monotonic()
            session.post(base_url + CHAT_PATH, data=body, headers=JSON_HEADERS, timeout=30).raise_for_status()
            times.append(time.monotonic() - began)
    return median(times[1:])


def run_churn(quick: bool = False) -> BenchResult:
    """Benchmark 5: swaps and waits of a 300-request churn workload, collated vs arrival order."""
    arrivals = workload(bursts=10 if quick else 30)
    say(f"[churn] {len(arrivals)} requests for {', '.join(MODELS)} in bursts of 10 (interleaved), "
        f"upstream load {LOAD_TIME:g}s; no groups (one model at a time)")
    with running_server("churn", [], config_text=churn_config) as server:
        workdir = server.workdir.path
        swap = measured_swap(server.base_url)
        service = measured_service(server.base_url, MODELS[1])
        starts_before = sum(_starts(workdir, m) for m in MODELS)
        waits = replay(server.base_url, arrivals)
        swaps = sum(_starts(workdir, m) for m in MODELS) - starts_before
    order_swaps, order_waits = arrival_order(arrivals, swap, service)

    ours, theirs = latency_summary_ms(waits), latency_summary_ms(order_waits)
    rows = [("swaps", order_swaps, swaps)] + [(f"wait {k} (ms)", theirs[k], ours[k]) for k in ("p50", "p99", "max")]
    say(f"    measured: swap {swap * 1000:.0f} ms, service {service * 1000:.0f} ms per request")
    say("    " + format_table(["", "arrival order", "this server"], rows).replace("\n", "\n    "))
    checks = [
        Check("churn, swaps", "swaps", order_swaps, swaps, f"{swaps / order_swaps:.0%}",
              target="fewer than arrival order", passed=swaps < order_swaps),
        Check("churn, wait p50", "ms", theirs["p50"], ours["p50"], f"{ours['p50'] - theirs['p50']:+.0f}", "-"),
        Check("churn, wait p99", "ms", theirs["p99"], ours["p99"], f"{ours['p99'] - theirs['p99']:+.0f}", "-"),
    ]
    return BenchResult(
        name="churn",
        params={"requests": len(arrivals), "models": list(MODELS), "load_time": LOAD_TIME,
                "upstream_flags": UPSTREAM_FLAGS},
        figures={"swaps": swaps, "arrival_order_swaps": order_swaps, "swap_s": swap, "service_s": service,
                 "wait_ms": ours, "arrival_order_wait_ms": theirs,
                 "wait_p99_ms": percentile([w * 1000 for w in waits], 99)},
        raw={"waits_s": waits, "arrival_order_waits_s": order_waits,
             "arrivals": [(a.model, a.at) for a in arrivals]},
        checks=checks)


def _starts(workdir, model: str) -> int:
    path = workdir / f"starts-{model}"
    return len(path.read_text().split()) if path.exists() else 0
