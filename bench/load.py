"""Many clients at once: 500 concurrent streaming clients through the one worker, a reload under load, a soak.

Every client streams chat completions back to back (40 tokens, 50 ms apart:
about 2 s each, as a chat UI reads them) for a bounded time; the clients run
as threads spread over a few client processes, so the bench's own GIL does
not set the pace. What is measured, through the proxy and, as the baseline,
straight at the same upstream:

- **errors**: any status but 200, a stream that ends without ``[DONE]``, a
  connection refused or cut (target: 0 through the proxy);
- **time to first token** (first ``data:`` event), p50 and p99;
- **peak memory** of the proxy's worker, sampled every 100 ms.

*Reload under load* (proxy only, ``--watch-config``): halfway through the
run a second model is added to the config file; the requests to the first
must all succeed (target: 0 failed). *Soak* (``python -m bench soak``, never
part of a plain ``make bench``): the proxy part for 10 minutes instead of
30 s, with the worker's memory at the start, at its peak and at the end.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import threading
import time
from dataclasses import dataclass, field

import psutil
import requests

from bench.harness import (CHAT_PATH, HOST, JSON_HEADERS, BenchResult, Check, Workdir, chat_body, format_table,
                           free_port, latency_summary_ms, running_server, say, upstream_argv)

CLIENTS = 500
DURATION_S = 30.0
SOAK_S = 600.0
TOKENS = 40
TOKEN_DELAY_S = 0.05
CLIENT_PROCESSES = 4
UPSTREAM_FLAGS = ["--token-delay", str(TOKEN_DELAY_S)]
DONE = b"data: [DONE]"
EVENT = b"data: "


@dataclass
class LoadRun:
    """What a set of clients saw: each completed stream's time to first event, and each failure."""

    first_event_s: list[float] = field(default_factory=list)
    completed: int = 0
    errors: list[str] = field(default_factory=list)

    def merge(self, other: "LoadRun") -> None:
        self.first_event_s += other.first_event_s
        self.completed += other.completed
        self.errors += other.errors


def one_stream(session: requests.Session, url: str, body: bytes, run: LoadRun) -> None:
    began = time.perf_counter()
    try:
        with session.post(url, data=body, headers=JSON_HEADERS, stream=True, timeout=60) as resp:
            if resp.status_code != 200:
                run.errors.append(f"status {resp.status_code}: {resp.text[:120]}")
                return
            first = None
            tail = b""
            for piece in resp.iter_content(None):
                if first is None and EVENT in piece:
                    first = time.perf_counter() - began
                tail = (tail + piece)[-64:]
            if DONE not in tail:
                run.errors.append("stream ended without [DONE]")
                return
    except requests.RequestException as exc:
        run.errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
        return
    run.completed += 1
    run.first_event_s.append(first if first is not None else time.perf_counter() - began)


def client_batch(url: str, clients: int, start_at: float, stop_at: float) -> LoadRun:
    """``clients`` threads in this process, each streaming back to back from ``start_at`` until ``stop_at``."""
    body = chat_body(TOKENS, stream=True)
    runs = [LoadRun() for _ in range(clients)]

    def client(run: LoadRun) -> None:
        session = requests.Session()
        time.sleep(max(0.0, start_at - time.time()))
        while time.time() < stop_at:
            one_stream(session, url, body, run)
        session.close()

    threads = [threading.Thread(target=client, args=(run,), daemon=True) for run in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = LoadRun()
    for run in runs:
        total.merge(run)
    return total


def drive(url: str, clients: int, seconds: float, during=None) -> LoadRun:
    """``clients`` streaming clients on ``url`` for ``seconds``; ``during()`` runs in this process meanwhile."""
    per_process = [clients // CLIENT_PROCESSES + (i < clients % CLIENT_PROCESSES) for i in range(CLIENT_PROCESSES)]
    start_at = time.time() + 2.0  # every thread started and waiting before the clock starts
    stop_at = start_at + seconds
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(CLIENT_PROCESSES, mp_context=context) as pool:
        jobs = [pool.submit(client_batch, url, n, start_at, stop_at) for n in per_process if n]
        if during is not None:
            during(start_at, stop_at)
        total = LoadRun()
        for job in jobs:
            total.merge(job.result())
    return total


class MemoryWatch:
    """The peak RSS of a process (the proxy's worker), sampled every 100 ms while it runs."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self.first = self.last = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.last = self._proc.memory_info().rss
            except psutil.NoSuchProcess:
                return
            self.peak = max(self.peak, self.last)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def worker_pid(server) -> int:
    children = [p for p in psutil.Process(server.proc.pid).children() if "-m simulator" not in " ".join(p.cmdline())]
    return max(children, key=lambda p: p.memory_info().rss).pid


def load_config(workdir: Workdir, upstream_port: int, second_model: bool = False) -> str:
    cmd = " ".join(upstream_argv(upstream_port, UPSTREAM_FLAGS, workdir))
    text = (f"healthCheckTimeout: 15\nlogLevel: warn\nmodels:\n  bench:\n    cmd: {cmd}\n"
            f"    proxy: http://{HOST}:{upstream_port}\n    concurrencyLimit: {CLIENTS * 2}\n")
    if second_model:  # never asked for: its port only has to differ
        other = " ".join(upstream_argv(upstream_port + 1, UPSTREAM_FLAGS, workdir, model="other"))
        text += f"  other:\n    cmd: {other}\n    proxy: http://{HOST}:{upstream_port + 1}\n"
    return text


def summary(label: str, run: LoadRun, seconds: float) -> dict:
    figures = {"completed": run.completed, "errors": len(run.errors), "streams_per_s": run.completed / seconds}
    if run.first_event_s:
        ttft = latency_summary_ms(run.first_event_s)
        figures.update(ttft_p50_ms=ttft["p50"], ttft_p99_ms=ttft["p99"])
    say(f"  {label}: {run.completed} streams ({figures['streams_per_s']:.0f}/s), {len(run.errors)} errors"
        + (f", first token p50 {figures['ttft_p50_ms']:.0f} ms, p99 {figures['ttft_p99_ms']:.0f} ms"
           if run.first_event_s else ""))
    for error in sorted(set(run.errors))[:5]:
        say(f"    e.g. {error}")
    return figures


def run_load(quick: bool = False, soak: bool = False) -> BenchResult:
    clients = 50 if quick else CLIENTS
    seconds = 5.0 if quick else (SOAK_S if soak else DURATION_S)
    say(f"load: {clients} concurrent streaming clients for {seconds:.0f} s ({TOKENS} tokens, "
        f"{TOKEN_DELAY_S * 1000:.0f} ms apart), proxy and direct")
    result = BenchResult("load", {"clients": clients, "seconds": seconds, "tokens": TOKENS,
                                  "token_delay_s": TOKEN_DELAY_S, "soak": soak}, {})

    port = free_port()  # the upstream's, fixed in the config, so the baseline can reach it directly
    with running_server("load", UPSTREAM_FLAGS, config_text=lambda w: load_config(w, port)) as server:
        server.warm()
        watch = MemoryWatch(worker_pid(server))
        proxy = drive(server.base_url + CHAT_PATH, clients, seconds)
        watch.stop()
        proxy_figures = summary("proxy", proxy, seconds)
        proxy_figures.update(worker_rss_start_mib=watch.first / 2**20, worker_rss_peak_mib=watch.peak / 2**20,
                             worker_rss_end_mib=watch.last / 2**20)
        say(f"  proxy worker memory: {watch.first / 2**20:.0f} MiB at the start, peak {watch.peak / 2**20:.0f},"
            f" end {watch.last / 2**20:.0f}")
        direct = LoadRun() if soak else drive(f"http://{HOST}:{port}{CHAT_PATH}", clients, seconds)
        direct_figures = {} if soak else summary("direct", direct, seconds)
    result.figures.update(proxy=proxy_figures, direct=direct_figures)
    result.checks += [
        Check(f"load, {clients} streaming clients, errors", "count", len(direct.errors) if not soak else None,
              len(proxy.errors), f"{len(proxy.errors) - len(direct.errors):+d}" if not soak else "-",
              "proxy errors = 0", not proxy.errors),
        Check(f"load, {clients} clients, first token p99", "ms", direct_figures.get("ttft_p99_ms"),
              proxy_figures.get("ttft_p99_ms"), "-"),
        Check(f"load, {clients} clients, worker memory peak", "MiB", None, proxy_figures["worker_rss_peak_mib"], "-"),
    ]
    if not soak:
        result.checks.append(reload_under_load(clients, 10.0 if quick else DURATION_S, result))
    say(format_table(["run", "completed", "errors", "first token p50 ms", "p99 ms"],
                     [[name, f.get("completed", "-"), f.get("errors", "-"), f.get("ttft_p50_ms", "-"),
                       f.get("ttft_p99_ms", "-")] for name, f in (("proxy", proxy_figures),
                                                                 ("direct", direct_figures)) if f]))
    return result


def reload_under_load(clients: int, seconds: float, result: BenchResult) -> Check:
    """The proxy with --watch-config; halfway through, a second model is added to its config file."""
    port = free_port()
    with running_server("reload", UPSTREAM_FLAGS, config_text=lambda w: load_config(w, port),
                        extra_args=["--watch-config"]) as server:
        server.warm()

        def edit(start_at: float, stop_at: float) -> None:
            time.sleep(max(0.0, start_at + (stop_at - start_at) / 2 - time.time()))
            server.config_path.write_text(load_config(server.workdir, port, second_model=True))

        run = drive(server.base_url + CHAT_PATH, clients, seconds, during=edit)
        listed = requests.get(server.base_url + "/v1/models", timeout=30).json()
    reloaded = any(m.get("id") == "other" for m in listed.get("data", []))
    figures = summary("proxy, reload halfway", run, seconds)
    figures["reload_applied"] = reloaded
    result.figures["reload"] = figures
    if not reloaded:
        say("  note: the edit was not applied (no 'other' in /v1/models)")
    return Check(f"reload under load, {clients} clients, failed", "count", None, len(run.errors), "-",
                 "0 failed, reload applied", not run.errors and reloaded)
